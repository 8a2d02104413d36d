// window.savesyncMetrics: when the page got its config and showed saves,
// for the browser tests and for measuring the page against the service.

/** The shape of window.savesyncMetrics. */
export interface SavesyncMetrics {
  /** performance.now() when config.json was loaded. */
  configLoadedAt: number | null;
  /** performance.now() when the first save was shown. */
  firstSaveShownAt: number | null;
  /** Per save version: ms since the epoch when a save of that version was first shown. */
  shown: Record<string, number>;
}

declare global {
  interface Window {
    savesyncMetrics: SavesyncMetrics;
  }
}

window.savesyncMetrics = { configLoadedAt: null, firstSaveShownAt: null, shown: {} };

/** Records page milestones in window.savesyncMetrics. */
export const metrics = {
  configLoaded(): void {
    window.savesyncMetrics.configLoadedAt = performance.now();
  },
  saveShown(version: number): void {
    const m = window.savesyncMetrics;
    const now = performance.now();
    m.firstSaveShownAt ??= now;
    m.shown[String(version)] ??= performance.timeOrigin + now;
  },
};

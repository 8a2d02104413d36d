// The companion page: sign-in, the link flow, the save, the shop, settings,
// collections, history and live updates. State lives here; render() writes
// it to the DOM, attributes first (see WEB-CONTRACT.md for the names).
import {
  ApiError,
  newIdempotencyKey,
  SavesyncClient,
  type CatalogSKU,
  type EventStream,
  type LedgerEntry,
  type LinkCode,
  type Outcome,
  type Player,
  type SettingValue,
  type StreamState,
  type Written,
} from "@savesync/client";
import { createUserWithEmailAndPassword, onAuthStateChanged, signInWithEmailAndPassword, signOut, type Auth, type User } from "firebase/auth";
import type { Config } from "@savesync/page";
import { byId, formatNumber, formatTime, h, setAttr, setText, syncChildren } from "@savesync/page";
import { choiceLabel, game, label, settingSpec, type SettingSpec } from "./game";
import { actorLabel, changeChips, describeEntry } from "./history";
import { authFailure, failure, formatPrice, purchaseRefusal, startFailure } from "./messages";
import { metrics } from "./metrics";

/** What the page shows: body[data-view]. */
export type View = "loading" | "signed-out" | "pending-link" | "linked" | "error";

/**
 * A write the page shows before the service confirms it. It stays until a
 * save of at least its committed version is shown, so a confirmed change
 * does not flicker back while that save is on its way; a refused one is
 * dropped at once, which rolls the display back.
 */
type Overlay = { committed?: number } & (
  | { kind: "purchase"; sku: string; price: Record<string, number> }
  | { kind: "setting"; key: string; value: SettingValue }
  | { kind: "add"; collection: string; element: string }
  | { kind: "remove"; collection: string; element: string }
);

/** How much history one page of GET /v1/me/ledger brings. */
const historyPage = 20;

/** How long to wait for the stream to bring the save of an own write before asking for it. */
const streamGraceMs = 1500;

export class CompanionApp {
  private readonly config: Config;
  private readonly auth: Auth;

  private view: View = "loading";
  private user: User | null = null;
  private client: SavesyncClient | null = null;
  /** Bumped on every sign-in and sign-out; answers that arrive for an earlier sign-in are dropped. */
  private epoch = 0;
  private stream: EventStream | null = null;
  private live: StreamState = "closed";

  private link: "unknown" | "pending" | "linked" = "unknown";
  private linkCode: LinkCode | null = null;
  private linkCodeLoading = false;
  private linkTimer: ReturnType<typeof setInterval> | undefined;

  private player: Player | null = null;
  private catalog: CatalogSKU[] | null = null;
  private catalogById = new Map<string, CatalogSKU>();
  private overlays: Overlay[] = [];
  /**
   * The balances as they were when the oldest purchase still in flight was
   * sent. While purchases are in flight the wallet is shown from these: a
   * live save may already include a purchase whose answer has not arrived,
   * and its price must not be taken off twice.
   */
  private walletBase: { version: number; currencies: Record<string, number> } | null = null;
  private writes = 0;
  private buying = new Set<string>();
  /** Idempotency keys of intents whose outcome is unknown, reused when the player tries again. */
  private retryKeys = new Map<string, string>();

  private history: LedgerEntry[] = [];
  private historyCursor: string | undefined;
  private historyLoading = false;
  private historyDirty = false;
  /** Whether the player opened older pages of history, which a refresh then keeps. */
  private historyExpanded = false;

  constructor(config: Config, auth: Auth) {
    this.config = config;
    this.auth = auth;
  }

  /** Wires the page's controls and follows the signed-in user. */
  start(): void {
    document.title = `${game.game} · Companion`;
    setText(byId("game-name"), game.game);
    this.wireControls();
    onAuthStateChanged(this.auth, (user) => void this.onUser(user));
    window.addEventListener("online", () => this.stream?.reconnect());
  }

  // ---- sign-in ----------------------------------------------------------

  private async onUser(user: User | null): Promise<void> {
    const epoch = ++this.epoch;
    this.stream?.close();
    this.stream = null;
    this.resetAccount();
    this.user = user;
    if (!user) {
      this.client = null;
      this.setView("signed-out");
      return;
    }
    this.client = new SavesyncClient({ baseUrl: this.config.apiBase, getIdToken: (force) => user.getIdToken(force) });
    this.setView("loading");
    try {
      const status = await this.client.getLink();
      if (epoch !== this.epoch) return;
      this.openStream();
      if (status.linked) await this.enterLinked(epoch);
      else this.enterPending();
    } catch (err) {
      if (epoch === this.epoch) this.fail(err);
    }
  }

  private resetAccount(): void {
    this.link = "unknown";
    this.linkCode = null;
    clearInterval(this.linkTimer);
    this.player = null;
    this.catalog = null;
    this.catalogById.clear();
    this.overlays = [];
    this.walletBase = null;
    this.buying.clear();
    this.retryKeys.clear();
    this.history = [];
    this.historyCursor = undefined;
    this.historyExpanded = false;
    this.writes = 0;
    this.live = "closed";
  }

  /** The page cannot go on: show why, with a way to try again. */
  private fail(err: unknown): void {
    const e = asApiError(err);
    this.stream?.close();
    this.stream = null;
    this.live = "closed";
    this.say("error", e.code, startFailure(e, this.config.apiBase));
    this.setView("error");
  }

  private openStream(): void {
    const client = this.client;
    if (!client) return;
    const epoch = this.epoch;
    this.stream = client.openEvents({
      state: (s) => {
        if (epoch !== this.epoch) return;
        this.live = s;
        this.render();
      },
      save: (p) => {
        if (epoch === this.epoch) this.onSave(p);
      },
      pending: () => {
        if (epoch === this.epoch) this.enterPending();
      },
      linked: (d) => {
        if (epoch !== this.epoch) return;
        this.say("info", "LINKED", `Linked to Roblox player ${d.userId}. Your save is on its way.`);
        void this.enterLinked(epoch);
      },
      unlinked: () => {
        if (epoch !== this.epoch) return;
        this.say("info", "UNLINKED", "This account is no longer linked to a Roblox player.");
        this.enterPending();
      },
      error: (e) => {
        if (epoch === this.epoch) this.say("error", e.code, `Live updates stopped: ${e.message}. Reconnecting…`);
      },
    });
  }

  // ---- link ---------------------------------------------------------------

  private enterPending(): void {
    if (this.link === "pending") return;
    this.link = "pending";
    this.player = null;
    this.overlays = [];
    this.walletBase = null;
    this.history = [];
    this.historyCursor = undefined;
    this.historyExpanded = false;
    this.setView("pending-link");
    void this.requestLinkCode();
  }

  private async requestLinkCode(): Promise<void> {
    const client = this.client;
    if (!client || this.linkCodeLoading) return;
    const epoch = this.epoch;
    this.linkCodeLoading = true;
    this.render();
    try {
      const code = await client.createLinkCode();
      if (epoch !== this.epoch || this.link !== "pending") return;
      this.linkCode = code;
      clearInterval(this.linkTimer);
      this.linkTimer = setInterval(() => this.tickLinkCode(), 1000);
    } catch (err) {
      if (epoch !== this.epoch) return;
      const e = asApiError(err);
      if (!this.linkCode && e.code === "NETWORK_ERROR") {
        this.fail(e);
        return;
      }
      this.say("error", e.code, failure(e, "get a link code"));
    } finally {
      if (epoch === this.epoch) {
        this.linkCodeLoading = false;
        this.render();
      }
    }
  }

  private tickLinkCode(): void {
    if (this.link !== "pending" || !this.linkCode?.expiresAt) return;
    if (Date.parse(this.linkCode.expiresAt) <= Date.now()) {
      this.linkCode = null;
      clearInterval(this.linkTimer);
      void this.requestLinkCode();
    }
    this.renderLink();
  }

  private async unlink(): Promise<void> {
    const client = this.client;
    if (!client) return;
    const epoch = this.epoch;
    this.setWrites(1);
    try {
      const res = await client.unlink();
      if (epoch !== this.epoch) return;
      this.say("info", "UNLINKED", res.unlinked ? `Unlinked from Roblox player ${res.userId}.` : "This account was not linked.");
      // The stream of the old link ends; a new one waits for the next link.
      this.stream?.reconnect();
      this.enterPending();
    } catch (err) {
      if (epoch !== this.epoch) return;
      const e = asApiError(err);
      this.say("error", e.code, failure(e, "unlink your account", "unlinking twice is harmless"));
    } finally {
      if (epoch === this.epoch) this.setWrites(-1);
    }
  }

  // ---- save ---------------------------------------------------------------

  /** Loads what the linked view needs; shows it once the save and the catalog are there. */
  private async enterLinked(epoch: number): Promise<void> {
    const client = this.client;
    if (!client) return;
    const first = this.link !== "linked";
    this.link = "linked";
    this.linkCode = null;
    clearInterval(this.linkTimer);
    if (!first && this.player && this.catalog) return;
    try {
      const [player, catalog] = await Promise.all([client.getSave(), this.catalog ? Promise.resolve(null) : client.getCatalog()]);
      if (epoch !== this.epoch || this.link !== "linked") return;
      if (catalog) {
        this.catalog = catalog.skus;
        this.catalogById = new Map(catalog.skus.map((s) => [s.sku, s]));
      }
      this.acceptPlayer(player);
      this.setView("linked");
      void this.refreshHistory();
    } catch (err) {
      if (epoch !== this.epoch) return;
      const e = asApiError(err);
      if (e.code === "PERMISSION_DENIED" && e.details.reason !== undefined) {
        // Unlinked in the meantime.
        this.link = "unknown";
        this.enterPending();
        return;
      }
      this.fail(e);
    }
  }

  private onSave(p: Player): void {
    if (this.link === "pending") return; // a `linked` event comes first on a pending stream
    const before = this.player?.version;
    const wasShown = before !== undefined;
    this.acceptPlayer(p);
    if (wasShown && (p.version ?? 0) > (before ?? 0) && this.writes === 0) {
      // A change nobody on this page made: say so to screen readers.
      setText(byId("announcer"), `Your save changed: it is now at version ${p.version}.`);
    }
    if (this.link !== "linked") void this.enterLinked(this.epoch);
    else if (this.catalog && this.view !== "linked") this.setView("linked");
    if (wasShown) void this.refreshHistory();
  }

  /** Takes a save from any source, ignoring one older than the save shown. */
  private acceptPlayer(p: Player): void {
    if (this.player && (p.version ?? 0) < (this.player.version ?? 0)) return;
    this.player = p;
    this.pruneOverlays();
    this.render();
  }

  private pruneOverlays(): void {
    const v = this.player?.version ?? 0;
    this.overlays = this.overlays.filter((o) => o.committed === undefined || v < o.committed);
  }

  private async refreshSave(version: number): Promise<void> {
    const client = this.client;
    if (!client || this.link !== "linked" || !this.player || (this.player.version ?? 0) >= version) return;
    const epoch = this.epoch;
    try {
      const p = await client.getSave();
      if (epoch === this.epoch && this.link === "linked") this.acceptPlayer(p);
    } catch {
      // The stream or the next write brings it.
    }
  }

  // ---- writes -------------------------------------------------------------

  /**
   * Runs one write of the player: shows overlay at once, sends under the
   * intent's idempotency key (kept after an unknown outcome, so trying
   * again cannot apply it twice), then keeps or rolls back the overlay.
   */
  private async runWrite(intent: string, overlay: Overlay | null, send: (key: string) => Promise<Written<Outcome>>): Promise<Written<Outcome>> {
    const epoch = this.epoch;
    if (overlay?.kind === "purchase" && !this.overlays.some((o) => o.kind === "purchase" && o.committed === undefined)) {
      this.walletBase = { version: this.player?.version ?? 0, currencies: { ...(this.player?.save?.currencies ?? {}) } };
    }
    if (overlay) this.overlays.push(overlay);
    this.writes++;
    this.render();
    const key = this.retryKeys.get(intent) ?? newIdempotencyKey();
    try {
      const w = await send(key);
      if (epoch !== this.epoch) return w;
      this.retryKeys.delete(intent);
      const version = w.body.version ?? 0;
      if (overlay) overlay.committed = version;
      this.pruneOverlays();
      setTimeout(() => void this.refreshSave(version), this.live === "open" ? streamGraceMs : 0);
      void this.refreshHistory();
      return w;
    } catch (err) {
      const e = asApiError(err);
      if (epoch === this.epoch) {
        if (outcomeUnknown(e)) this.retryKeys.set(intent, key);
        else this.retryKeys.delete(intent);
        if (overlay) this.overlays = this.overlays.filter((o) => o !== overlay);
      }
      throw e;
    } finally {
      if (epoch === this.epoch) {
        if (!this.overlays.some((o) => o.kind === "purchase" && o.committed === undefined)) this.walletBase = null;
        this.writes--;
        this.render();
      }
    }
  }

  private async buy(sku: string): Promise<void> {
    const client = this.client;
    const item = this.catalogById.get(sku);
    if (!client || !item || this.buying.has(sku)) {
      this.render();
      return;
    }
    this.buying.add(sku);
    const epoch = this.epoch;
    const price = numbers(item.price);
    const intent = `purchase:${sku}`;
    // A key kept from a try whose answer never came: this click finishes that purchase.
    const resumed = this.retryKeys.has(intent);
    try {
      const w = await this.runWrite(intent, { kind: "purchase", sku, price }, (key) => client.purchase(sku, { idempotencyKey: key }));
      if (epoch !== this.epoch) return;
      const name = item.name ?? sku;
      this.say(
        "info",
        "PURCHASED",
        w.replayed && resumed
          ? `${name} was bought already: your earlier try went through, and you were charged once.`
          : `Bought ${name} for ${formatPrice(price)}.`,
      );
    } catch (err) {
      if (epoch === this.epoch) {
        const e = asApiError(err);
        this.say("error", e.code, purchaseRefusal(e, item));
      }
    } finally {
      if (epoch === this.epoch) {
        this.buying.delete(sku);
        this.render();
      }
    }
  }

  private async changeSetting(key: string, value: SettingValue): Promise<void> {
    const client = this.client;
    if (!client) return;
    const epoch = this.epoch;
    const what = label(key);
    try {
      await this.runWrite(`setting:${key}=${JSON.stringify(value)}`, { kind: "setting", key, value }, (k) =>
        client.setSetting(key, value, { idempotencyKey: k }),
      );
      if (epoch === this.epoch) this.say("info", "SAVED", `${what} is now ${showSetting(key, value)}.`);
    } catch (err) {
      if (epoch === this.epoch) {
        const e = asApiError(err);
        this.say("error", e.code, failure(e, `change ${what.toLowerCase()}`));
        this.render();
      }
    }
  }

  private async addElement(collection: string, element: string, input: HTMLInputElement): Promise<void> {
    const client = this.client;
    if (!client) return;
    const epoch = this.epoch;
    const name = label(collection).toLowerCase();
    if (element === "") {
      this.say("error", "INVALID_ARGUMENT", `Type what to add to your ${name} first.`);
      input.focus();
      return;
    }
    if (this.shownCollection(collection).includes(element)) {
      this.say("info", "UNCHANGED", `“${element}” is on your ${name} already.`);
      return;
    }
    input.value = "";
    try {
      await this.runWrite(`add:${collection}:${element}`, { kind: "add", collection, element }, (k) =>
        client.addToCollection(collection, element, { idempotencyKey: k }),
      );
      if (epoch === this.epoch) this.say("info", "SAVED", `Added “${element}” to your ${name}.`);
    } catch (err) {
      if (epoch !== this.epoch) return;
      const e = asApiError(err);
      if (input.value === "") input.value = element;
      this.say("error", e.code, failure(e, `add “${element}” to your ${name}`));
      this.render();
    }
  }

  private async removeElement(collection: string, element: string): Promise<void> {
    const client = this.client;
    const seen = this.player?.version ?? 0;
    if (!client || seen < 1) {
      this.render();
      return;
    }
    const epoch = this.epoch;
    const name = label(collection).toLowerCase();
    try {
      await this.runWrite(`remove:${collection}:${element}`, { kind: "remove", collection, element }, (k) =>
        client.removeFromCollection(collection, element, seen, { idempotencyKey: k }),
      );
      if (epoch === this.epoch) this.say("info", "SAVED", `Removed “${element}” from your ${name}.`);
    } catch (err) {
      if (epoch !== this.epoch) return;
      const e = asApiError(err);
      this.say("error", e.code, failure(e, `remove “${element}” from your ${name}`));
      this.render();
    }
  }

  private setWrites(delta: number): void {
    this.writes = Math.max(0, this.writes + delta);
    setAttr(document.body, "data-pending-writes", String(this.writes));
  }

  // ---- history ------------------------------------------------------------

  /** Reloads the newest page of history; calls made while one runs are folded into one more run. */
  private async refreshHistory(): Promise<void> {
    const client = this.client;
    if (!client || this.link !== "linked") return;
    if (this.historyLoading) {
      this.historyDirty = true;
      return;
    }
    const epoch = this.epoch;
    this.historyLoading = true;
    try {
      do {
        this.historyDirty = false;
        const page = await client.getLedger({ limit: historyPage });
        if (epoch !== this.epoch || this.link !== "linked") return;
        if (this.historyExpanded) {
          // Keep the older pages the player opened below the newest one.
          const oldest = page.entries.at(-1)?.version ?? 0;
          this.history = [...page.entries, ...this.history.filter((e) => e.version < oldest)];
        } else {
          this.history = page.entries;
          this.historyCursor = page.nextCursor;
        }
        this.renderHistory();
      } while (this.historyDirty);
    } catch {
      // History is a convenience; the next write or live change reloads it.
    } finally {
      if (epoch === this.epoch) this.historyLoading = false;
    }
  }

  private async loadOlderHistory(): Promise<void> {
    const client = this.client;
    const cursor = this.historyCursor;
    if (!client || !cursor) return;
    const epoch = this.epoch;
    try {
      const page = await client.getLedger({ limit: historyPage, cursor });
      if (epoch !== this.epoch) return;
      const known = new Set(this.history.map((e) => e.entryId));
      this.history.push(...page.entries.filter((e) => !known.has(e.entryId)));
      this.historyCursor = page.nextCursor;
      this.historyExpanded = true;
      this.renderHistory();
    } catch (err) {
      if (epoch === this.epoch) {
        const e = asApiError(err);
        this.say("error", e.code, failure(e, "load older history"));
      }
    }
  }

  // ---- what is shown --------------------------------------------------------

  private pendingOverlays(): Overlay[] {
    const v = this.player?.version ?? 0;
    return this.overlays.filter((o) => o.committed === undefined || v < o.committed);
  }

  private shownCurrencies(): Map<string, number> {
    const base = this.walletBase ?? { version: this.player?.version ?? 0, currencies: this.player?.save?.currencies ?? {} };
    const out = new Map<string, number>();
    for (const c of game.currencies) out.set(c, 0);
    for (const [c, n] of Object.entries(base.currencies)) out.set(c, n);
    for (const o of this.overlays) {
      if (o.kind !== "purchase" || (o.committed !== undefined && o.committed <= base.version)) continue;
      for (const [c, n] of Object.entries(o.price)) out.set(c, (out.get(c) ?? 0) - n);
    }
    return out;
  }

  private shownSetting(key: string): unknown {
    let v: unknown = this.player?.save?.settings?.[key];
    for (const o of this.pendingOverlays()) if (o.kind === "setting" && o.key === key) v = o.value;
    return v;
  }

  private shownCollection(name: string): string[] {
    const els = [...(this.player?.save?.collections?.[name] ?? [])];
    for (const o of this.pendingOverlays()) {
      if ((o.kind !== "add" && o.kind !== "remove") || o.collection !== name) continue;
      const i = els.indexOf(o.element);
      if (o.kind === "add" && i < 0) els.push(o.element);
      if (o.kind === "remove" && i >= 0) els.splice(i, 1);
    }
    return els;
  }

  // ---- rendering ------------------------------------------------------------

  private setView(v: View): void {
    this.view = v;
    this.render();
  }

  /** Shows a message: kind info or error, the API's code (or the page's), and a sentence. */
  private say(kind: "info" | "error", code: string, text: string): void {
    const m = byId("message");
    setAttr(m, "data-kind", kind);
    setAttr(m, "data-code", code);
    setAttr(m, "role", kind === "error" ? "alert" : "status");
    setText(m, text);
    m.hidden = false;
  }

  private clearMessage(): void {
    const m = byId("message");
    setAttr(m, "data-kind", "info");
    setAttr(m, "data-code", "");
    setText(m, "");
    m.hidden = true;
  }

  private render(): void {
    const body = document.body;
    setAttr(body, "data-view", this.view);
    setAttr(body, "data-live", this.live);
    setAttr(body, "data-pending-writes", String(this.writes));
    for (const v of ["loading", "error", "signed-out", "pending-link", "linked"] as const) {
      byId(`view-${v}`).hidden = this.view !== v;
    }
    byId("session").hidden = this.user === null;
    setText(byId("account"), this.user?.email ?? "");
    setText(byId("live-label"), liveLabels[this.live]);
    byId("live").hidden = this.view !== "linked" && this.view !== "pending-link";
    this.renderLink();
    if (this.view === "linked" || this.player) this.renderSave();
  }

  private renderLink(): void {
    const code = byId("link-code");
    setText(code, this.linkCode?.code ?? "");
    setAttr(code, "data-state", this.linkCode ? "ready" : "loading");
    (byId("new-link-code") as HTMLButtonElement).disabled = this.linkCodeLoading;
    let expiry = this.linkCodeLoading ? "Getting a code…" : "";
    if (this.linkCode?.expiresAt && !this.linkCodeLoading) {
      const s = Math.max(0, Math.round((Date.parse(this.linkCode.expiresAt) - Date.now()) / 1000));
      expiry = `Expires in ${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
    }
    setText(byId("link-expiry"), expiry);
  }

  private renderSave(): void {
    const p = this.player;
    if (!p) return;
    const version = p.version ?? 0;
    setText(byId("player-id"), String(p.userId ?? ""));
    setText(byId("version"), String(version));
    setText(byId("updated-at"), p.updatedAt ? `updated ${formatTime(p.updatedAt)}` : "");
    this.renderCurrencies();
    this.renderStats();
    this.renderInventory();
    this.renderCatalog();
    this.renderCollections();
    this.renderSettings();
    if (this.view === "linked") metrics.saveShown(version);
  }

  private renderCurrencies(): void {
    const shown = this.shownCurrencies();
    const pending = new Set(this.pendingOverlays().flatMap((o) => (o.kind === "purchase" ? Object.keys(o.price) : [])));
    syncChildren(
      byId("currencies"),
      [...shown.keys()],
      (c) => c,
      (c) => h("div", { class: "currency", "data-currency": c }, h("span", { class: "currency-name" }, label(c)), h("span", { class: "currency-value" })),
      (el, c) => {
        const v = shown.get(c) ?? 0;
        setAttr(el, "data-value", String(v));
        el.classList.toggle("pending", pending.has(c));
        setText(el.querySelector(".currency-value")!, formatNumber(v));
      },
    );
  }

  private renderStats(): void {
    const stats = this.player?.save?.stats ?? {};
    const keys = union(game.stats, Object.keys(stats));
    syncChildren(
      byId("stats"),
      keys,
      (k) => k,
      (k) => h("div", { class: "stat", "data-stat": k }, h("dt", {}, k === "xp" ? "XP" : label(k)), h("dd", {})),
      (el, k) => {
        const v = stats[k] ?? 0;
        setAttr(el, "data-value", String(v));
        setText(el.querySelector("dd")!, formatNumber(v));
      },
    );
  }

  private renderInventory(): void {
    const items = this.player?.save?.items ?? {};
    const equipped = new Set(Object.values(this.player?.save?.loadout ?? {}).filter((i) => i !== ""));
    const keys = Object.keys(items)
      .filter((k) => (items[k] ?? 0) > 0)
      .sort();
    syncChildren(
      byId("inventory"),
      keys,
      (k) => k,
      (k) =>
        h(
          "li",
          { class: "item", "data-item": k },
          h("span", { class: "item-icon", "aria-hidden": "true" }, label(k).charAt(0)),
          h("span", { class: "item-name" }, label(k)),
          h("span", { class: "item-count" }),
        ),
      (el, k) => {
        const n = items[k] ?? 0;
        setAttr(el, "data-value", String(n));
        el.classList.toggle("equipped", equipped.has(k));
        const stackable = game.items[k]?.stackable ?? n > 1;
        setText(el.querySelector(".item-count")!, equipped.has(k) ? "Equipped" : stackable ? `× ${formatNumber(n)}` : "");
      },
    );
    byId("inventory-empty").hidden = keys.length > 0;
  }

  private renderCatalog(): void {
    const shown = this.shownCurrencies();
    syncChildren(
      byId("catalog"),
      this.catalog ?? [],
      (s) => s.sku,
      (s) => {
        const button = h("button", { type: "button", class: "button primary buy", "data-buy": s.sku }, `${s.name ?? label(s.sku)} · ${formatPrice(s.price)}`);
        button.addEventListener("click", (ev) => {
          // The second click of a double click is the same intent, even
          // when the first purchase has been answered already.
          if (ev.detail > 1) return;
          // Disabled at once, so nothing else reaches it while it is in flight.
          button.disabled = true;
          void this.buy(s.sku);
        });
        return h(
          "li",
          { class: "sku" },
          h("div", { class: "sku-info" }, h("strong", { class: "sku-name" }, s.name ?? label(s.sku)), h("span", { class: "sku-grants" }, describeGrants(s)), h("span", { class: "sku-short" })),
          button,
        );
      },
      (el, s) => {
        const button = el.querySelector("button")!;
        const busy = this.buying.has(s.sku);
        button.disabled = busy;
        setAttr(button, "aria-busy", String(busy));
        const short = Object.entries(numbers(s.price)).find(([c, n]) => (shown.get(c) ?? 0) < n);
        const note = busy ? "Buying…" : short ? `Needs ${formatNumber(short[1] - Math.max(0, shown.get(short[0]) ?? 0))} more ${short[0]}` : "";
        el.classList.toggle("short", short !== undefined && !busy);
        setText(el.querySelector(".sku-short")!, note);
      },
    );
  }

  private renderCollections(): void {
    const names = union(Object.keys(game.collections), Object.keys(this.player?.save?.collections ?? {}));
    syncChildren(
      byId("collections"),
      names,
      (n) => n,
      (n) => this.createCollection(n),
      (el, n) => {
        const editable = game.collections[n]?.companionEditable === true;
        const els = this.shownCollection(n);
        const max = game.collections[n]?.maxElements;
        setText(el.querySelector(".collection-count")!, max ? `${els.length} / ${max}` : String(els.length));
        const list = el.querySelector<HTMLElement>("ul")!;
        syncChildren(
          list,
          els,
          (e) => e,
          (e) => {
            const li = h("li", { class: "element", "data-element": e }, h("span", { class: "element-name" }, e));
            if (editable) {
              const remove = h("button", { type: "button", class: "remove", "data-remove": e, "aria-label": `Remove ${e} from ${label(n).toLowerCase()}`, title: "Remove" }, "×");
              remove.addEventListener("click", () => {
                remove.disabled = true;
                void this.removeElement(n, e);
              });
              li.append(remove);
            }
            return li;
          },
          (li, e) => {
            const confirmed = (this.player?.save?.collections?.[n] ?? []).includes(e);
            li.classList.toggle("pending", !confirmed);
            const remove = li.querySelector("button");
            if (remove) remove.disabled = !confirmed;
          },
        );
        setText(el.querySelector(".collection-empty")!, els.length === 0 ? (editable ? "Empty. Add something below." : "None yet.") : "");
      },
    );
  }

  private createCollection(n: string): HTMLElement {
    const spec = game.collections[n];
    const editable = spec?.companionEditable === true;
    const title = label(n);
    const box = h(
      "div",
      { class: `collection${editable ? " editable" : ""}`, "data-collection": n },
      h("h3", {}, title, " ", h("span", { class: "collection-count muted small" })),
      h("ul", { class: "elements" }),
      h("p", { class: "collection-empty muted small" }),
    );
    if (editable) {
      const input = h("input", {
        type: "text",
        name: "element",
        placeholder: n === "wishlist" ? "Something you want" : `Add to ${title.toLowerCase()}`,
        "aria-label": `Add to ${title.toLowerCase()}`,
        maxlength: spec?.maxElementLength,
        autocomplete: "off",
      });
      const form = h("form", { class: "add-form", "data-add-collection": n }, input, h("button", { type: "submit", class: "button small" }, "Add"));
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        void this.addElement(n, input.value.trim(), input);
      });
      box.append(form);
    }
    return box;
  }

  private renderSettings(): void {
    const settings = this.player?.save?.settings ?? {};
    const keys = union(Object.keys(game.settings), Object.keys(settings));
    syncChildren(
      byId("settings"),
      keys,
      (k) => k,
      (k) => this.createSetting(k, settingSpec(k, settings[k])),
      (el, k) => {
        const control = el.querySelector<HTMLInputElement | HTMLSelectElement>("[data-setting]")!;
        const v = this.shownSetting(k);
        const pending = this.pendingOverlays().some((o) => o.kind === "setting" && o.key === k && o.committed === undefined);
        el.classList.toggle("pending", pending);
        if (control instanceof HTMLInputElement && control.type === "checkbox") {
          control.checked = v === true;
        } else if (document.activeElement !== control && v !== undefined) {
          const s = String(v);
          if (control.value !== s) control.value = s;
        }
      },
    );
  }

  private createSetting(key: string, spec: SettingSpec): HTMLElement {
    const id = `setting-${key}`;
    const row = h("div", { class: `setting setting-${spec.type}` }, h("label", { for: id }, label(key)));
    if (spec.type === "bool") {
      const input = h("input", { type: "checkbox", id, class: "switch", role: "switch", "data-setting": key });
      input.addEventListener("change", () => void this.changeSetting(key, input.checked));
      row.append(input);
    } else if (spec.enum && spec.enum.length > 0) {
      const select = h("select", { id, "data-setting": key }, ...spec.enum.map((v) => h("option", { value: String(v) }, choiceLabel(key, v))));
      select.addEventListener("change", () => {
        const v = spec.enum?.find((e) => String(e) === select.value);
        if (v !== undefined) void this.changeSetting(key, v);
      });
      row.append(select);
    } else if (spec.type === "int" || spec.type === "number") {
      const input = h("input", { type: "number", id, "data-setting": key, min: spec.min, max: spec.max, step: spec.type === "int" ? 1 : "any", inputmode: "numeric" });
      input.addEventListener("change", () => {
        const n = Number(input.value);
        const bad =
          input.value.trim() === "" ||
          !Number.isFinite(n) ||
          (spec.type === "int" && !Number.isInteger(n)) ||
          (spec.min !== undefined && n < spec.min) ||
          (spec.max !== undefined && n > spec.max);
        if (bad) {
          const range = spec.min !== undefined && spec.max !== undefined ? ` from ${spec.min} to ${spec.max}` : "";
          this.say("error", "INVALID_ARGUMENT", `${label(key)} must be ${spec.type === "int" ? "a whole number" : "a number"}${range}.`);
          input.value = String(this.shownSetting(key) ?? "");
          return;
        }
        void this.changeSetting(key, n);
      });
      row.append(input);
    } else {
      const input = h("input", { type: "text", id, "data-setting": key });
      input.addEventListener("change", () => void this.changeSetting(key, input.value));
      row.append(input);
    }
    return row;
  }

  private renderHistory(): void {
    syncChildren(
      byId("history"),
      this.history,
      (e) => e.entryId,
      (e) => {
        const chips = changeChips(e);
        return h(
          "li",
          { class: `entry actor-${e.actor.kind}`, "data-entry-id": e.entryId },
          h(
            "div",
            { class: "entry-main" },
            h("span", { class: "entry-what" }, describeEntry(e, this.catalogById)),
            chips.length > 0 && h("span", { class: "chips" }, ...chips.map((c) => h("span", { class: `chip${c.includes("−") ? " down" : ""}` }, c))),
          ),
          h(
            "div",
            { class: "entry-meta muted small" },
            `${actorLabel(e)} · `,
            h("time", { datetime: e.committedAt }, formatTime(e.committedAt)),
            ` · version ${e.version}`,
            e.reason && e.kind === "mutation" ? ` · ${e.reason}` : "",
          ),
        );
      },
    );
    byId("history-empty").hidden = this.history.length > 0;
    byId("history-more").hidden = this.historyCursor === undefined;
  }

  // ---- controls ---------------------------------------------------------------

  private wireControls(): void {
    const form = byId<HTMLFormElement>("auth-form");
    const email = byId<HTMLInputElement>("email");
    const password = byId<HTMLInputElement>("password");
    const signin = byId<HTMLButtonElement>("signin");
    const signup = byId<HTMLButtonElement>("signup");
    const submit = async (create: boolean) => {
      if (signin.disabled) return;
      signin.disabled = signup.disabled = true;
      this.clearMessage();
      try {
        const e = email.value.trim();
        if (create) await createUserWithEmailAndPassword(this.auth, e, password.value);
        else await signInWithEmailAndPassword(this.auth, e, password.value);
        password.value = "";
      } catch (err) {
        const code = typeof err === "object" && err !== null && "code" in err ? String(err.code) : "auth/unknown";
        this.say("error", code, authFailure(code, err instanceof Error ? err.message : String(err)));
      } finally {
        signin.disabled = signup.disabled = false;
      }
    };
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      void submit(false);
    });
    signup.addEventListener("click", () => void submit(true));
    byId("signout").addEventListener("click", () => {
      this.clearMessage();
      void signOut(this.auth);
    });
    byId("new-link-code").addEventListener("click", () => void this.requestLinkCode());
    byId("unlink").addEventListener("click", () => void this.unlink());
    byId("retry").addEventListener("click", () => {
      this.clearMessage();
      void this.onUser(this.user);
    });
    byId("history-more").addEventListener("click", () => void this.loadOlderHistory());
  }
}

const liveLabels: Record<StreamState, string> = {
  connecting: "Connecting…",
  open: "Live",
  reconnecting: "Reconnecting…",
  closed: "Offline",
};

/** Any failure as an ApiError. */
function asApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  return new ApiError({ status: 0, code: "INTERNAL", message: err instanceof Error ? err.message : String(err), cause: err });
}

/** Whether a write may have been applied although it failed: then its key is kept for the next try. */
function outcomeUnknown(e: ApiError): boolean {
  return e.code === "NETWORK_ERROR" || e.status === 408 || e.status >= 500;
}

function numbers(r: Record<string, number | undefined>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(r)) if (typeof v === "number") out[k] = v;
  return out;
}

function union(a: readonly string[], b: readonly string[]): string[] {
  return [...new Set([...a, ...b])];
}

function showSetting(key: string, v: SettingValue): string {
  if (v === true) return "on";
  if (v === false) return "off";
  return choiceLabel(key, v);
}

function describeGrants(s: CatalogSKU): string {
  return s.grants
    .map((g) => {
      switch (g.op) {
        case "currency.add":
          return `+${formatNumber(g.amount ?? 0)} ${g.currency ?? ""}`;
        case "xp.add":
          return `+${formatNumber(g.amount ?? 0)} XP`;
        case "item.grant":
          return (g.count ?? 1) > 1 ? `${formatNumber(g.count ?? 0)} × ${label(g.item ?? "").toLowerCase()}` : label(g.item ?? "");
        case "collection.add":
          return `${label(g.element ?? "")} (${label(g.collection ?? "").toLowerCase()})`;
        default:
          return label(g.op);
      }
    })
    .join(" · ");
}

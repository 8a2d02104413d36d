// What the page knows of the game beyond the API: the setting types and
// choices, and which collections the companion may edit. The API serves
// the save and the catalog but not the game config, so build.mjs embeds
// these parts of the game config (config/sample-game.json, or the file
// SAVESYNC_GAME_CONFIG names) as SAVESYNC_GAME. Anything the save holds
// that is not described here is still shown, typed from its value.

/** A setting as the game config declares it. */
export interface SettingSpec {
  type: "bool" | "int" | "number" | "string";
  default?: boolean | number | string;
  min?: number;
  max?: number;
  enum?: Array<boolean | number | string>;
}

/** A collection as the game config declares it. */
export interface CollectionSpec {
  maxElements?: number;
  maxElementLength?: number;
  companionEditable?: boolean;
}

/** The parts of the game config the page uses. */
export interface GameSpec {
  game: string;
  currencies: string[];
  stats: string[];
  items: Record<string, { stackable?: boolean }>;
  settings: Record<string, SettingSpec>;
  collections: Record<string, CollectionSpec>;
}

declare const SAVESYNC_GAME: GameSpec;

/** The game the page was built for. */
export const game: GameSpec = SAVESYNC_GAME;

/** The spec of a setting: the game config's, or one read off its value. */
export function settingSpec(key: string, value: unknown): SettingSpec {
  const s = game.settings[key];
  if (s) return s;
  if (typeof value === "boolean") return { type: "bool" };
  if (typeof value === "number") return { type: Number.isInteger(value) ? "int" : "number" };
  return { type: "string" };
}

/** "plotsUnlocked" → "Plots unlocked". */
export function label(id: string): string {
  const words = id
    .replace(/[_-]+/g, " ")
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .trim()
    .toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

const languages: Record<string, string> = {
  en: "English",
  es: "Español",
  pt: "Português",
  de: "Deutsch",
  fr: "Français",
  ja: "日本語",
  ko: "한국어",
};

/** How a setting's choice reads in a select. */
export function choiceLabel(key: string, v: boolean | number | string): string {
  if (key === "language" && typeof v === "string" && languages[v]) return languages[v];
  return typeof v === "string" ? label(v) : String(v);
}

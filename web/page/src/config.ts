// The page's runtime configuration, config.json beside index.html: where
// the API is, the Firebase web config, and the Auth emulator for local runs.

/** config.json. */
export interface Config {
  /** The savesync service's origin, e.g. "https://api.example.com". */
  apiBase: string;
  /** The Firebase web app config (apiKey, authDomain, projectId, …). */
  firebase: { apiKey: string; authDomain?: string; projectId?: string; [k: string]: unknown };
  /** The Auth emulator's URL in development; null or absent in production. */
  authEmulatorUrl?: string | null;
}

/** Loads and checks config.json; the error says what is wrong with it. */
export async function loadConfig(url = "config.json"): Promise<Config> {
  let res: Response;
  try {
    res = await fetch(url, { cache: "no-store" });
  } catch (err) {
    throw new Error(`config.json could not be fetched (${err instanceof Error ? err.message : String(err)})`);
  }
  if (!res.ok) throw new Error(`config.json answered HTTP ${res.status}: it must sit beside index.html`);
  let c: unknown;
  try {
    c = await res.json();
  } catch {
    throw new Error("config.json is not valid JSON");
  }
  if (typeof c !== "object" || c === null) throw new Error("config.json must be a JSON object");
  const cfg = c as Partial<Config>;
  if (typeof cfg.apiBase !== "string" || !/^https?:\/\//.test(cfg.apiBase)) {
    throw new Error('config.json: "apiBase" must be the API origin, e.g. "https://api.example.com"');
  }
  if (typeof cfg.firebase !== "object" || cfg.firebase === null || typeof cfg.firebase.apiKey !== "string") {
    throw new Error('config.json: "firebase" must be the Firebase web config with at least "apiKey"');
  }
  if (cfg.authEmulatorUrl !== undefined && cfg.authEmulatorUrl !== null && typeof cfg.authEmulatorUrl !== "string") {
    throw new Error('config.json: "authEmulatorUrl" must be a URL or null');
  }
  return { apiBase: cfg.apiBase.replace(/\/+$/, ""), firebase: cfg.firebase, authEmulatorUrl: cfg.authEmulatorUrl ?? null };
}

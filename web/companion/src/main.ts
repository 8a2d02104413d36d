// Starts the companion page: reads config.json, starts Firebase Auth (on
// the emulator when config.json names one) and hands over to CompanionApp.
import { initializeApp } from "firebase/app";
import {
  browserLocalPersistence,
  browserSessionPersistence,
  connectAuthEmulator,
  indexedDBLocalPersistence,
  inMemoryPersistence,
  initializeAuth,
} from "firebase/auth";
import { CompanionApp } from "./app";
import { loadConfig, showStartError } from "@savesync/page";
import { metrics } from "./metrics";

async function main(): Promise<void> {
  let config;
  try {
    config = await loadConfig();
  } catch (err) {
    showStartError("CONFIG_UNAVAILABLE", `The page is not set up: ${err instanceof Error ? err.message : String(err)}.`);
    return;
  }
  metrics.configLoaded();

  const app = initializeApp(config.firebase);
  // initializeAuth, not getAuth: no popup or redirect sign-in is used, so
  // their code stays out of the bundle. The persistence list is getAuth's.
  const memory = new URLSearchParams(location.search).get("persistence") === "memory";
  const auth = initializeAuth(app, {
    persistence: memory ? inMemoryPersistence : [indexedDBLocalPersistence, browserLocalPersistence, browserSessionPersistence],
  });
  if (config.authEmulatorUrl) connectAuthEmulator(auth, config.authEmulatorUrl, { disableWarnings: true });

  new CompanionApp(config, auth).start();
}

void main();

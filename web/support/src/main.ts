// Starts the support console: reads config.json, starts Firebase Auth (on
// the emulator when config.json names one) and hands over to SupportApp.
import { initializeApp } from "firebase/app";
import { browserSessionPersistence, connectAuthEmulator, inMemoryPersistence, initializeAuth } from "firebase/auth";
import { SupportApp } from "./app";
import { loadConfig, showStartError } from "@savesync/page";

async function main(): Promise<void> {
  let config;
  try {
    config = await loadConfig();
  } catch (err) {
    showStartError("CONFIG_UNAVAILABLE", `The console is not set up: ${err instanceof Error ? err.message : String(err)}.`);
    return;
  }
  const app = initializeApp(config.firebase);
  // Staff sessions last as long as the tab: sessionStorage, or memory with
  // ?persistence=memory.
  const memory = new URLSearchParams(location.search).get("persistence") === "memory";
  const auth = initializeAuth(app, { persistence: memory ? inMemoryPersistence : browserSessionPersistence });
  if (config.authEmulatorUrl) connectAuthEmulator(auth, config.authEmulatorUrl, { disableWarnings: true });
  new SupportApp(config, auth).start();
}

void main();

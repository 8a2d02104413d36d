// @savesync/page: what the companion page and the support console share.
export { loadConfig } from "./config";
export type { Config } from "./config";
export * from "./dom";
export { showStartError } from "./start";

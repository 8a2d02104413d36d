// Builds the companion page into dist/: index.html, app.js (one minified
// bundle, Firebase included) and app.css, and prints their gzipped sizes.
//
//   node build.mjs            (npm --prefix web run build)
//
// SAVESYNC_GAME_CONFIG names the game config whose settings and collections
// the page describes (default: the repository's config/sample-game.json, the
// service's built-in game). config.json is not built: each deployment writes
// its own beside index.html.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
const gameConfig = resolve(process.env.SAVESYNC_GAME_CONFIG || join(here, "..", "..", "config", "sample-game.json"));

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });

const common = { bundle: true, minify: true, logLevel: "warning", legalComments: "linked", target: ["es2022", "chrome111", "firefox111", "safari16.4"] };
await build({
  ...common,
  entryPoints: [join(here, "src", "main.ts")],
  outfile: join(dist, "app.js"),
  format: "esm",
  define: { SAVESYNC_GAME: JSON.stringify(describeGame(gameConfig)) },
});
await build({ ...common, entryPoints: [join(here, "style.css")], outfile: join(dist, "app.css") });
copyFileSync(join(here, "index.html"), join(dist, "index.html"));

for (const f of ["app.js", "app.css", "index.html"]) {
  const data = readFileSync(join(dist, f));
  console.log(`dist/${f.padEnd(11)} ${kB(data.length).padStart(9)}   gzipped ${kB(gzipSync(data, { level: 9 }).length).padStart(9)}`);
}

/** The parts of a game config the page needs (see src/game.ts). */
function describeGame(path) {
  const g = JSON.parse(readFileSync(path, "utf8"));
  const items = {};
  for (const [id, d] of Object.entries(g.items ?? {})) items[id] = { stackable: d.stackable === true };
  const settings = {};
  for (const [id, d] of Object.entries(g.settings ?? {})) {
    settings[id] = { type: d.type, default: d.default, min: d.min, max: d.max, enum: d.enum };
  }
  const collections = {};
  for (const [id, d] of Object.entries(g.collections ?? {})) {
    collections[id] = { maxElements: d.maxElements, maxElementLength: d.maxElementLength, companionEditable: d.companionEditable === true };
  }
  return {
    game: g.game ?? "Companion",
    currencies: Object.keys(g.currencies ?? {}),
    stats: Object.keys(g.stats ?? {}),
    items,
    settings,
    collections,
  };
}

function kB(n) {
  return `${(n / 1024).toFixed(1)} kB`;
}

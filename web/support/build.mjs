// Builds the support console into dist/: index.html, app.js (one minified
// bundle, Firebase included) and app.css, and prints their gzipped sizes.
//
//   node build.mjs            (npm --prefix web run build)
//
// config.json is not built: each deployment writes its own beside
// index.html (the same file as the companion page's).
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });

const common = { bundle: true, minify: true, logLevel: "warning", legalComments: "linked", target: ["es2022", "chrome111", "firefox111", "safari16.4"] };
await build({ ...common, entryPoints: [join(here, "src", "main.ts")], outfile: join(dist, "app.js"), format: "esm" });
await build({ ...common, entryPoints: [join(here, "style.css")], outfile: join(dist, "app.css") });
copyFileSync(join(here, "index.html"), join(dist, "index.html"));

for (const f of ["app.js", "app.css", "index.html"]) {
  const data = readFileSync(join(dist, f));
  console.log(`support/dist/${f.padEnd(11)} ${kB(data.length).padStart(9)}   gzipped ${kB(gzipSync(data, { level: 9 }).length).padStart(9)}`);
}

function kB(n) {
  return `${(n / 1024).toFixed(1)} kB`;
}

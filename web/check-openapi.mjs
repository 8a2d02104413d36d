// Fails when client/src/openapi.d.ts differs from a fresh generation from
// ../openapi.yaml, so the spec and the typed client cannot drift apart.
// `npm run gen` rewrites the checked-in file.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const checkedIn = join(here, "client", "src", "openapi.d.ts");
const dir = mkdtempSync(join(tmpdir(), "savesync-openapi-"));
try {
  const fresh = join(dir, "openapi.d.ts");
  execFileSync(join(here, "node_modules", ".bin", "openapi-typescript"), [join(here, "..", "openapi.yaml"), "--output", fresh], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  if (readFileSync(fresh, "utf8") !== readFileSync(checkedIn, "utf8")) {
    console.error("client/src/openapi.d.ts is stale: openapi.yaml changed since it was generated. Run `npm --prefix web run gen` and commit the result.");
    process.exit(1);
  }
  console.log("client/src/openapi.d.ts matches openapi.yaml");
} finally {
  rmSync(dir, { recursive: true, force: true });
}

// One ES module with its dependencies inside, so a page can import it without a bundler
// (tsc writes the .d.ts files beside it). A copy goes to the sample web app's vendor/.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
await build({
  entryPoints: [join(root, "src/index.ts")],
  outfile: join(root, "dist/index.js"),
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: "es2022",
  sourcemap: false,
  legalComments: "eof",
  logLevel: "warning",
});
const vendor = join(root, "../../examples/web/vendor");
mkdirSync(vendor, { recursive: true });
copyFileSync(join(root, "dist/index.js"), join(vendor, "canistry-client.js"));

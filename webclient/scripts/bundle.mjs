// Bundle src/main.ts to dist/app.js and copy src/app.css to dist/app.css.
import { copyFile, mkdir } from "node:fs/promises";
import { build } from "esbuild";

const root = new URL("../", import.meta.url);
await mkdir(new URL("dist/", root), { recursive: true });
await build({
  absWorkingDir: root.pathname,
  entryPoints: ["src/main.ts"],
  outfile: "dist/app.js",
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022"],
  minify: true,
  sourcemap: true,
  legalComments: "linked",
  logLevel: "info",
});
await copyFile(new URL("src/app.css", root), new URL("dist/app.css", root));
console.log("wrote dist/app.js, dist/app.css");

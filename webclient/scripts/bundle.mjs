// Bundle the entry points — src/main.ts (the call page) to dist/app.js, src/prejoin.ts
// (the pre-join page) to dist/prejoin.js and src/signout.ts (every signed-in page's
// sign-out forms) to dist/signout.js — and copy src/app.css.
import { copyFile, mkdir } from "node:fs/promises";
import { build } from "esbuild";

const root = new URL("../", import.meta.url);
await mkdir(new URL("dist/", root), { recursive: true });
await build({
  absWorkingDir: root.pathname,
  entryPoints: { app: "src/main.ts", prejoin: "src/prejoin.ts", signout: "src/signout.ts" },
  outdir: "dist",
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
console.log("wrote dist/app.js, dist/prejoin.js, dist/signout.js, dist/app.css");

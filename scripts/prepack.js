#!/usr/bin/env node
// `npm pack` and `npm publish` run this first: the package ships compiled
// JavaScript (package.json "files": dist/src/**/*.js), so it is built here
// from the sources as they are, into an emptied dist/src/. Emptying it
// keeps a module deleted from src/ since the last build out of the
// tarball. Only dist/src/ is rebuilt (tsconfig.build.json): dist/test/,
// the compiled tests, is left as it was.
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
rmSync(join(root, "dist", "src"), { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], { cwd: root, stdio: "inherit" });

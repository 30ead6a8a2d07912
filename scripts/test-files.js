#!/usr/bin/env node
// Prints the compiled test files to run, one per line, for scripts/test.sh
// and scripts/test-unit.sh. Only `*.test.js` files are tests: handed a
// directory, Node's runner would also run every helper module under test/
// (fake sessions, harnesses, fixtures) as a test file of its own.
//
// `--unit` keeps the fast lane: the test files that neither start processes
// nor need nginx or Dovecot. A file is left out when it, or a test module it
// imports (followed through relative imports inside dist/test/), either
//   - imports node:child_process or node:cluster (spawns Postern, openssl,
//     Python clients, workers), or
//   - imports one of the harnesses in HEAVY (real nginx, Postern or Dovecot).
// So a new unit test joins the fast lane by itself, and a test that starts
// to use a harness leaves it by itself; nothing is renamed or listed by hand.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const testDir = join(root, "dist", "test");

const SPAWNING = new Set(["node:child_process", "child_process", "node:cluster", "cluster"]);
const HEAVY = ["support/nginx.js", "support/postern.js", "support/mail-proxy.js", "support/dovecot.js", "support/differential.js"].map((p) => join(testDir, p));

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? walk(p) : [p];
  });
}

/** Module specifiers of static and dynamic imports and re-exports in compiled ES module text. */
function specifiers(file) {
  const text = readFileSync(file, "utf8");
  const found = [];
  for (const re of [/^\s*(?:import|export)\b[^;]*?\bfrom\s*["']([^"']+)["']/gm, /^\s*import\s*["']([^"']+)["']/gm, /\bimport\(\s*["']([^"']+)["']\s*\)/g]) {
    for (const m of text.matchAll(re)) found.push(m[1]);
  }
  return found;
}

const heavyCache = new Map();

/** True when `file` or a test module it reaches spawns processes or starts a real server. */
function heavy(file) {
  if (heavyCache.has(file)) return heavyCache.get(file);
  heavyCache.set(file, false); // import cycles end here
  let result = HEAVY.includes(file);
  for (const spec of specifiers(file)) {
    if (result) break;
    if (SPAWNING.has(spec)) result = true;
    else if (spec.startsWith(".")) {
      const target = resolve(dirname(file), spec);
      // a specifier quoted in a comment may name no file
      if (target.startsWith(testDir + "/") && existsSync(target)) result = heavy(target);
    }
  }
  heavyCache.set(file, result);
  return result;
}

const unitOnly = process.argv.includes("--unit");
/** The TypeScript source of a compiled test; a build left in dist/ may hold tests since deleted. */
const source = (f) => join(root, relative(join(root, "dist"), f)).replace(/\.js$/, ".ts");
const files = walk(testDir)
  .filter((f) => f.endsWith(".test.js") && existsSync(source(f)))
  .sort();
for (const f of files) {
  if (unitOnly && heavy(f)) continue;
  console.log(relative(root, f));
}

/**
 * The repository explains itself: no source, test, script or document
 * points at a file outside it (a specification that only the original
 * authors had). Rules Postern follows are stated inline or in docs/.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { repoRoot } from "../support/postern.js";

/** Names of the outside documents, and section references into them. */
const OUTSIDE = [
  /\.\.\/shared\//,
  /\bspec\/(README|protocols|auth_http|ssl|cli|directives)\.md/,
  /(?<![\w/])(protocols|auth_http|ssl|cli)\.md\b/,
  /(?<![\w/])directives\.md \d/,
];

function* files(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    if (name === "node_modules" || name === "dist" || name.startsWith(".")) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* files(path);
    else if (/\.(ts|js|sh|md)$/.test(name)) yield path;
  }
}

test("no file points outside the repository", () => {
  const root = repoRoot();
  const found: string[] = [];
  for (const top of ["src", "test", "bench", "scripts", "docs", "conf", "README.md"]) {
    const start = join(root, top);
    const list = statSync(start, { throwIfNoEntry: false })?.isDirectory() ? [...files(start)] : [start];
    for (const path of list) {
      if (path.endsWith("self-contained.test.ts")) continue;
      readFileSync(path, "utf8").split("\n").forEach((line, i) => {
        if (OUTSIDE.some((re) => re.test(line))) found.push(`${relative(root, path)}:${i + 1}: ${line.trim()}`);
      });
    }
  }
  assert.deepEqual(found, []);
});

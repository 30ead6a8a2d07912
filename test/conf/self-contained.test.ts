/**
 * The repository explains itself: no source, test, script or document
 * points at a file outside it (a specification that only the original
 * authors had). Rules Postern follows are stated inline or in docs/;
 * every pointer to a rule of docs/behaviour/ names a heading that exists.
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

/** GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces as `-`. */
function slug(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N}_ -]/gu, "").replace(/ /g, "-");
}

/** The anchors of each page of docs/behaviour/, by file name. */
function behaviourAnchors(root: string): Map<string, Set<string>> {
  const dir = join(root, "docs", "behaviour");
  const pages = new Map<string, Set<string>>();
  for (const name of readdirSync(dir)) {
    if (!name.endsWith(".md")) continue;
    const headings = readFileSync(join(dir, name), "utf8").match(/^#+ .*$/gm) ?? [];
    pages.set(name, new Set(headings.map((h) => slug(h.replace(/^#+ /, "")))));
  }
  return pages;
}

/**
 * A pointer names its page (`docs/behaviour/pop3.md#pop3-5-apop`, or a
 * Markdown link `](./pop3.md#...)` inside docs/behaviour/); a bare
 * `#pop3-7-...` right after it in the same file refers to the same page.
 */
const POINTER = /docs\/behaviour\/([\w-]+\.md)(#[\w-]+)?|\]\(\.\/([\w-]+\.md)(#[\w-]+)?\)|(?<![\w/.#])#((?:session|imap|pop3|smtp|ah|tls|cli)-\d+[\w-]*)/g;

test("every pointer into docs/behaviour/ names an existing page and heading", () => {
  const root = repoRoot();
  const pages = behaviourAnchors(root);
  const broken: string[] = [];
  for (const top of ["src", "test", "docs", "README.md"]) {
    const start = join(root, top);
    const list = statSync(start).isDirectory() ? [...files(start)] : [start];
    for (const path of list) {
      if (path.endsWith("self-contained.test.ts")) continue;
      let page: string | undefined;
      readFileSync(path, "utf8").split("\n").forEach((line, i) => {
        for (const m of line.matchAll(POINTER)) {
          const named = m[1] ?? m[3];
          const anchor = m[2] ?? m[4] ?? (m[5] === undefined ? undefined : `#${m[5]}`);
          if (named !== undefined) page = named;
          // a bare #word before any page is named is no pointer
          if (page === undefined) continue;
          const where = `${relative(root, path)}:${i + 1}: ${m[0]}`;
          const anchors = pages.get(page);
          if (!anchors) broken.push(`${where} (no page ${page})`);
          else if (anchor !== undefined && !anchors.has(anchor.slice(1))) broken.push(`${where} (no heading ${anchor} in ${page})`);
        }
      });
    }
  }
  assert.deepEqual(broken, []);
});

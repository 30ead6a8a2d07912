/**
 * Layers only point down. Every src/**\/*.ts is parsed with the TypeScript
 * compiler and each import specifier (`import ... from`, `import "..."`,
 * `export ... from`, dynamic `import("...")` and type-position
 * `import("...").T`) is checked against the layer table below. A file may
 * import files of its own layer group or of a lower rank; anything else
 * fails, naming the file and the import.
 *
 * The layers, bottom to top:
 *
 *   0  core/ conf/   the foundation. One group for now: conf/ reports errors
 *                    through core/errors.ts, and core/core-module.ts declares
 *                    the main and events directives with conf/'s framework.
 *   1  event/        protocol-independent networking (PROXY protocol,
 *                    resolver, TLS helpers). Never imports mail/.
 *   2  mail/         the mail proxy: block, sessions, protocols, auth_http.
 *   3  modules.ts    the registry of every configuration module (it lists
 *                    mail/'s modules, so it sits above mail/).
 *   4  process/      the lifecycle: loading a configuration, the start-up
 *                    log, master, workers, signals, reload. Never imports cli/.
 *   4  auth-server/  the reference auth_http service (`postern auth-server`,
 *                    `postern passwd`): a separate program that cli/ starts.
 *                    It may use mail/'s types, and is a sibling of process/
 *                    (neither imports the other).
 *   5  cli/          the command line: switches, -t/-T, -s; calls process/
 *                    and auth-server/.
 *   5  tools/        build-time programs (docs/directives.md generator): a
 *                    sibling of cli/, importing only below it.
 *   6  main.ts       the entry point: argv -> cli/.
 *   6  demo/         the demo mail backend `npm start` runs beside Postern:
 *                    a program of its own, a sibling of main.ts, so nothing
 *                    in the `postern` command can import (and start) it.
 *
 * Directories of the same rank are siblings and may not import each other.
 * A new directory or top-level file under src/ fails until it is given a
 * place here. Imports that leave src/ (node:, packages) are not layers.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const SRC = fileURLToPath(new URL("../../../src/", import.meta.url));

/** Top-level entry under src/ (directory or file) -> [rank, group]. */
const LAYERS: Readonly<Record<string, readonly [number, string]>> = {
  "core": [0, "foundation"],
  "conf": [0, "foundation"],
  "event": [1, "event"],
  "mail": [2, "mail"],
  "modules.ts": [3, "modules"],
  "process": [4, "process"],
  "auth-server": [4, "auth-server"],
  "cli": [5, "cli"],
  "tools": [5, "tools"],
  "main.ts": [6, "main"],
  "demo": [6, "demo"],
};

/** Every module specifier in one file's text, with its line. */
export function importSpecifiers(fileName: string, text: string): { specifier: string; line: number }[] {
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const found: { specifier: string; line: number }[] = [];
  const add = (node: ts.Node, spec: ts.Expression | undefined): void => {
    const line = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1;
    // a computed dynamic import cannot be checked: report it as such
    found.push({ specifier: spec && ts.isStringLiteralLike(spec) ? spec.text : `<computed: ${spec?.getText(sf) ?? ""}>`, line });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) {
      if (node.moduleSpecifier) add(node, node.moduleSpecifier);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      add(node, node.moduleReference.expression);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      add(node, node.arguments[0]);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      add(node, node.argument.literal);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

/** The top-level entry of src/ a path (relative to src/) belongs to. */
function topOf(relPath: string): string {
  return relPath.split(sep)[0]!;
}

/**
 * The layering violations in a set of files ({path relative to src/: text}).
 * Exported shape kept small so the self-test below can feed it a made-up tree.
 */
export function layerViolations(files: ReadonlyMap<string, string>): string[] {
  const problems: string[] = [];
  for (const [file, text] of files) {
    const from = LAYERS[topOf(file)];
    if (!from) {
      problems.push(`src/${file}: "${topOf(file)}" has no layer (add it to LAYERS in test/conf/layers.test.ts)`);
      continue;
    }
    for (const { specifier, line } of importSpecifiers(file, text)) {
      if (specifier.startsWith("<computed")) {
        problems.push(`src/${file}:${line}: import of ${specifier} cannot be checked`);
        continue;
      }
      if (!specifier.startsWith(".")) continue; // node: and packages
      // NodeNext specifiers name the compiled file: "./x.js" is src/x.ts
      const target = relative(SRC, resolve(SRC, dirname(file), specifier)).replace(/\.js$/, ".ts");
      if (target.startsWith("..")) continue; // outside src/ (package.json and the like)
      const to = LAYERS[topOf(target)];
      if (!to) {
        problems.push(`src/${file}:${line}: imports "${specifier}" (src/${target}), which has no layer`);
        continue;
      }
      if (from[1] === to[1] || from[0] > to[0]) continue;
      problems.push(`src/${file}:${line}: imports "${specifier}": ${from[1]} (layer ${from[0]}) may not import ${to[1]} (layer ${to[0]})`);
    }
  }
  return problems;
}

/** Every .ts file under src/, keyed by its path relative to src/. */
function sourceTree(): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".ts")) files.set(relative(SRC, p), readFileSync(p, "utf8"));
    }
  };
  walk(SRC);
  return files;
}

test("layers only point down: no src/ file imports a higher or sibling layer", () => {
  const files = sourceTree();
  assert.ok(files.size > 50 && files.has("main.ts"), `src/ not found at ${SRC}`);
  const problems = layerViolations(files);
  assert.deepEqual(problems, [], `imports against the layering:\n  ${problems.join("\n  ")}`);
});

test("the layer check sees every form of import, and names file and import", () => {
  const tree = new Map<string, string>([
    ["event/a.ts", 'import type { X } from "../mail/types.js";\n'],
    ["core/b.ts", 'export { Y } from "../mail/x.js";\n'],
    ["process/c.ts", '// import("../cli/x.js") in a comment is not an import\nconst m = await import("../cli/load.js");\n'],
    ["process/d.ts", 'let t: import("../cli/options.js").Options;\nimport "../cli/side.js";\n'],
    ["mail/e.ts", 'import { f } from "../process/start.js";\nimport { g } from "../event/ok.js";\n'],
    ["cli/f.ts", 'import { h } from "../tools/x.js";\nimport { i } from "../process/ok.js";\nimport { j } from "node:fs";\n'],
    ["conf/g.ts", 'import { k } from "../core/ok.js";\nconst n = "x"; await import(n);\n'],
    ["newdir/h.ts", ""],
  ]);
  assert.deepEqual(layerViolations(tree), [
    'src/event/a.ts:1: imports "../mail/types.js": event (layer 1) may not import mail (layer 2)',
    'src/core/b.ts:1: imports "../mail/x.js": foundation (layer 0) may not import mail (layer 2)',
    'src/process/c.ts:2: imports "../cli/load.js": process (layer 4) may not import cli (layer 5)',
    'src/process/d.ts:1: imports "../cli/options.js": process (layer 4) may not import cli (layer 5)',
    'src/process/d.ts:2: imports "../cli/side.js": process (layer 4) may not import cli (layer 5)',
    'src/mail/e.ts:1: imports "../process/start.js": mail (layer 2) may not import process (layer 4)',
    'src/cli/f.ts:1: imports "../tools/x.js": cli (layer 5) may not import tools (layer 5)',
    "src/conf/g.ts:2: import of <computed: n> cannot be checked",
    'src/newdir/h.ts: "newdir" has no layer (add it to LAYERS in test/conf/layers.test.ts)',
  ]);
});

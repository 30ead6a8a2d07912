import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { directiveReference } from "../../src/tools/directive-reference.js";
import { confModules } from "../../src/modules.js";

const docs = fileURLToPath(new URL("../../../docs/directives.md", import.meta.url));

test("docs/directives.md is generated from the directive tables and up to date", () => {
  assert.equal(readFileSync(docs, "utf8"), directiveReference(), "run: node dist/src/tools/directive-reference.js > docs/directives.md");
});

test("every directive is declared once per context, with a syntax and a description", () => {
  const seen = new Map<string, string>();
  for (const m of confModules()) {
    for (const d of m.directives) {
      for (const c of d.contexts) {
        const key = `${c}:${d.name}`;
        assert.ok(!seen.has(key), `${d.name} declared twice in ${c} (${seen.get(key)} and ${m.name})`);
        seen.set(key, m.name);
      }
      assert.ok(d.syntax.length > 0 && d.doc.length > 0, `${d.name} lacks syntax or doc`);
    }
  }
});

/**
 * Renders docs/directives.md from the modules' directive tables, so the
 * reference can never drift from what the parser accepts.
 *
 *   node dist/src/tools/directive-reference.js > docs/directives.md
 */
import type { Context } from "../conf/directive.js";
import { confModules } from "../modules.js";

const CONTEXT_NAMES: Readonly<Record<Context, string>> = { main: "main", events: "events", mail: "mail", server: "server" };

function escapeCell(text: string): string {
  return text.replace(/\|/g, "\\|");
}

/** The Markdown reference of every directive, module by module. */
export function directiveReference(): string {
  const modules = confModules();
  const out: string[] = [
    "# Directives",
    "",
    "Generated from the directive tables in `src/` by `node dist/src/tools/directive-reference.js`;",
    "a test fails when this file is out of date. Syntax, defaults and contexts follow nginx;",
    "where Postern differs, see [compat.md](compat.md) and [compat-tls.md](compat-tls.md).",
    "",
  ];
  for (const m of modules) {
    out.push(`## ${m.name}`, "", "| Directive | Syntax | Default | Context | Description |", "|---|---|---|---|---|");
    for (const d of m.directives) {
      const contexts = d.contexts.map((c) => CONTEXT_NAMES[c]).join(", ");
      out.push(`| \`${d.name}\` | \`${escapeCell(d.syntax)}\` | ${escapeCell(d.defaultText)} | ${contexts} | ${escapeCell(d.doc)} |`);
    }
    out.push("");
  }
  return out.join("\n");
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  process.stdout.write(directiveReference());
}

/**
 * `log_format` strings, compiled as ngx_stream_log_compile_format does:
 * literal text and `$name` / `${name}` variables (letters, digits, `_`),
 * an optional first argument `escape=default|json|none`. A variable that
 * does not exist is a configuration error (`unknown "foo" variable`).
 *
 * Escaping (nginx's ngx_stream_log_escape / ngx_escape_json):
 *  - default: `"`, `\` and bytes below 0x20 or from 0x7f up become `\xHH`;
 *  - json: `"` and `\` get a backslash, control bytes `\n \r \t \b \f` or
 *    `\u00HH`, other bytes pass;
 *  - none: the value as is.
 * A value the session does not have is `-` (nothing with escape=json), an
 * empty one stays empty, as in nginx.
 */
import { ConfError } from "../../core/errors.js";
import type { SessionFacts } from "../session-events.js";
import { VARIABLES, type VariableGetter } from "./variables.js";

export type LogEscape = "default" | "json" | "none";

type Op = { readonly text: string } | { readonly name: string; readonly get: VariableGetter };

/** A compiled format (or `if=` condition): ops in order, and the escaping of its variables. */
export interface CompiledFormat {
  readonly escape: LogEscape;
  readonly ops: readonly Op[];
}

const NAME_CHAR = /[A-Za-z0-9_]/;

/** Config text is read as UTF-8; log lines are bytes: literals become one char per byte. */
function bytes(text: string): string {
  return Buffer.from(text, "utf8").toString("latin1");
}

/** Compiles the strings of a format (nginx joins them with nothing in between). */
export function compileFormat(parts: readonly string[], escape: LogEscape = "default"): CompiledFormat {
  const ops: Op[] = [];
  for (const part of parts) {
    let i = 0;
    while (i < part.length) {
      if (part[i] !== "$") {
        const start = i;
        while (i < part.length && part[i] !== "$") i++;
        ops.push({ text: bytes(part.slice(start, i)) });
        continue;
      }
      const at = part.slice(i);
      if (++i === part.length) throw new ConfError(`invalid parameter "${at}"`);
      let bracket = false;
      if (part[i] === "{") {
        bracket = true;
        if (++i === part.length) throw new ConfError(`invalid parameter "${at}"`);
      }
      const start = i;
      while (i < part.length && NAME_CHAR.test(part[i]!)) i++;
      const name = part.slice(start, i);
      if (bracket) {
        if (part[i] !== "}") throw new ConfError(`the closing bracket in "${part.slice(start)}" variable is missing`);
        i++;
      }
      if (name === "") throw new ConfError(`invalid parameter "${at}"`);
      const get = VARIABLES.get(name.toLowerCase());
      if (!get) throw new ConfError(`unknown "${name}" variable`);
      ops.push({ name, get });
    }
  }
  return { escape, ops };
}

/** Reads `[escape=...] string ...` (log_format's arguments after the name). */
export function compileLogFormat(args: readonly string[]): CompiledFormat {
  let escape: LogEscape = "default";
  let rest = args;
  if (args[0]?.startsWith("escape=")) {
    const v = args[0].slice(7);
    if (v !== "default" && v !== "json" && v !== "none") throw new ConfError(`unknown log format escaping "${v}"`);
    escape = v;
    rest = args.slice(1);
  }
  return compileFormat(rest, escape);
}

const HEX = "0123456789ABCDEF";

/** True when `c` is written as `\xHH` by escape=default. */
function escapedByDefault(c: number): boolean {
  return c === 0x22 || c === 0x5c || c < 0x20 || c >= 0x7f;
}

/** Most values need no escaping: they are returned as they are, without building a new string. */
function escapeDefault(v: string): string {
  let clean = 0;
  while (clean < v.length && !escapedByDefault(v.charCodeAt(clean))) clean++;
  if (clean === v.length) return v;
  let out = v.slice(0, clean);
  for (let i = clean; i < v.length; i++) {
    const c = v.charCodeAt(i);
    out += escapedByDefault(c) ? `\\x${HEX[(c >> 4) & 0xf]}${HEX[c & 0xf]}` : v[i];
  }
  return out;
}

const JSON_SHORT: Record<number, string> = { 0x0a: "\\n", 0x0d: "\\r", 0x09: "\\t", 0x08: "\\b", 0x0c: "\\f" };

function escapeJson(v: string): string {
  let clean = 0;
  while (clean < v.length && v.charCodeAt(clean) >= 0x20 && v.charCodeAt(clean) !== 0x22 && v.charCodeAt(clean) !== 0x5c) clean++;
  if (clean === v.length) return v;
  let out = v.slice(0, clean);
  for (let i = clean; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c === 0x22 || c === 0x5c) out += `\\${v[i]}`;
    else if (c < 0x20) out += JSON_SHORT[c] ?? `\\u00${HEX[c >> 4]}${HEX[c & 0xf]}`;
    else out += v[i];
  }
  return out;
}

/** The format applied to a session: a byte string (latin1), without the newline. */
export function renderFormat(format: CompiledFormat, facts: SessionFacts, nowMs: number): string {
  let line = "";
  for (const op of format.ops) {
    if ("text" in op) {
      line += op.text;
      continue;
    }
    const value = op.get(facts, nowMs);
    if (value === undefined) line += format.escape === "json" ? "" : "-";
    else if (format.escape === "default") line += escapeDefault(value);
    else if (format.escape === "json") line += escapeJson(value);
    else line += value;
  }
  return line;
}

/** `if=`: true unless the value is empty or "0". */
export function conditionHolds(condition: CompiledFormat, facts: SessionFacts, nowMs: number): boolean {
  let value = "";
  for (const op of condition.ops) value += "text" in op ? op.text : (op.get(facts, nowMs) ?? "");
  return value !== "" && value !== "0";
}

/**
 * The little IMAP4rev1 syntax the demo backend reads (RFC 3501 section 9):
 * atoms, quoted strings, literals, parenthesised lists, sequence sets and
 * FETCH items. Anything else is a syntax error the server answers with BAD.
 */

export type Token =
  | { readonly kind: "atom"; readonly text: string }
  | { readonly kind: "string"; readonly value: Buffer }
  | { readonly kind: "open" }
  | { readonly kind: "close" };

export class ImapSyntaxError extends Error {}

/** A line that ends in `{N}` or `{N+}`: the text before it and the literal's size. */
export function splitLiteral(line: string): { text: string; size: number; sync: boolean } | null {
  const m = /(^|[ (])\{([0-9]{1,10})(\+?)\}$/.exec(line);
  if (!m) return null;
  return { text: line.slice(0, m.index + m[1]!.length), size: Number(m[2]), sync: m[3] !== "+" };
}

/** The tokens of one line (without its literal marker). */
export function tokenize(line: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < line.length) {
    const c = line[i]!;
    if (c === " ") {
      i++;
    } else if (c === "(") {
      tokens.push({ kind: "open" });
      i++;
    } else if (c === ")") {
      tokens.push({ kind: "close" });
      i++;
    } else if (c === '"') {
      let value = "";
      i++;
      for (;;) {
        if (i >= line.length) throw new ImapSyntaxError("unterminated quoted string");
        const q = line[i]!;
        if (q === '"') break;
        if (q === "\\") {
          const e = line[i + 1];
          if (e !== "\\" && e !== '"') throw new ImapSyntaxError("bad escape in quoted string");
          value += e;
          i += 2;
        } else {
          value += q;
          i++;
        }
      }
      i++;
      tokens.push({ kind: "string", value: Buffer.from(value, "latin1") });
    } else {
      // an atom; a fetch item's [section] may hold spaces and parentheses
      let text = "";
      while (i < line.length && line[i] !== " " && line[i] !== "(" && line[i] !== ")") {
        if (line[i] === "[") {
          const end = line.indexOf("]", i);
          if (end < 0) throw new ImapSyntaxError("unterminated [");
          text += line.slice(i, end + 1);
          i = end + 1;
        } else {
          text += line[i];
          i++;
        }
      }
      if (!/^[\x21-\x7e]+$/.test(text) || /["{\\]/.test(text.replace(/\[[^\]]*\]/g, ""))) throw new ImapSyntaxError("bad atom");
      tokens.push({ kind: "atom", text });
    }
  }
  return tokens;
}

/** An atom's text or a string's bytes as text; null for a parenthesis. */
export function astring(t: Token | undefined): string | null {
  if (t?.kind === "atom") return t.text;
  if (t?.kind === "string") return t.value.toString("latin1");
  return null;
}

/** A parsed sequence set: ranges whose ends are numbers or `*` (0 here). */
export type SequenceSet = readonly (readonly [number, number])[];

const MAX_NUMBER = 4294967295;

/** `1`, `2:4`, `*`, `3:*`, comma-separated; null if malformed. */
export function parseSequenceSet(text: string): SequenceSet | null {
  if (!/^(?:[0-9]+|\*)(?::(?:[0-9]+|\*))?(?:,(?:[0-9]+|\*)(?::(?:[0-9]+|\*))?)*$/.test(text)) return null;
  const ranges: [number, number][] = [];
  for (const part of text.split(",")) {
    const [a, b = a] = part.split(":") as [string, string?];
    const lo = a === "*" ? 0 : Number(a);
    const hi = b === "*" ? 0 : Number(b);
    if ((a !== "*" && (lo < 1 || lo > MAX_NUMBER)) || (b !== "*" && (hi < 1 || hi > MAX_NUMBER))) return null;
    ranges.push([lo, hi]);
  }
  return ranges;
}

/** True when `n` is in the set, `*` standing for `max` (RFC 3501: `5:*` holds `max` even below 5). */
export function inSequenceSet(set: SequenceSet, n: number, max: number): boolean {
  return set.some(([a, b]) => {
    const x = a === 0 ? max : a;
    const y = b === 0 ? max : b;
    return n >= Math.min(x, y) && n <= Math.max(x, y);
  });
}

/** One FETCH data item the demo answers. */
export type FetchItem =
  | { readonly kind: "flags" | "uid" | "size" | "internaldate" }
  | {
      readonly kind: "body";
      /** "", "HEADER" or "TEXT". */
      readonly section: string;
      /** The name the answer carries (`BODY[]`, `RFC822`, ...), partial origin included. */
      readonly name: string;
      readonly peek: boolean;
      readonly partial?: readonly [number, number];
    };

const SIMPLE: Readonly<Record<string, FetchItem>> = {
  FLAGS: { kind: "flags" },
  UID: { kind: "uid" },
  "RFC822.SIZE": { kind: "size" },
  INTERNALDATE: { kind: "internaldate" },
  RFC822: { kind: "body", section: "", name: "RFC822", peek: false },
  "RFC822.HEADER": { kind: "body", section: "HEADER", name: "RFC822.HEADER", peek: true },
  "RFC822.TEXT": { kind: "body", section: "TEXT", name: "RFC822.TEXT", peek: false },
};

const MACROS: Readonly<Record<string, readonly string[]>> = {
  ALL: ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
  FAST: ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
};

function fetchItem(text: string): FetchItem {
  const upper = text.toUpperCase();
  const simple = SIMPLE[upper];
  if (simple) return simple;
  const m = /^BODY(\.PEEK)?\[(|HEADER|TEXT)\](?:<([0-9]{1,10})\.([0-9]{1,10})>)?$/.exec(upper);
  if (!m) throw new ImapSyntaxError(`fetch item ${text.length > 40 ? "" : `${text} `}not supported by the demo server`);
  const partial: [number, number] | undefined = m[3] === undefined ? undefined : [Number(m[3]), Number(m[4])];
  return { kind: "body", section: m[2]!, name: `BODY[${m[2]!}]${partial ? `<${partial[0]}>` : ""}`, peek: m[1] !== undefined, ...(partial ? { partial } : {}) };
}

/** FETCH's item argument: one item, a macro, or a parenthesised list of items. */
export function parseFetchItems(tokens: readonly Token[]): FetchItem[] {
  const first = tokens[0];
  if (first?.kind === "atom" && tokens.length === 1) {
    const macro = MACROS[first.text.toUpperCase()];
    return (macro ?? [first.text]).map(fetchItem);
  }
  if (first?.kind !== "open" || tokens[tokens.length - 1]?.kind !== "close" || tokens.length < 3) throw new ImapSyntaxError("bad fetch item list");
  return tokens.slice(1, -1).map((t) => {
    if (t.kind !== "atom") throw new ImapSyntaxError("bad fetch item list");
    return fetchItem(t.text);
  });
}

/** INTERNALDATE's form: `02-Dec-2026 07:50:00 +0000`. */
export function internalDate(d: Date): string {
  const month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][d.getUTCMonth()]!;
  const two = (n: number): string => String(n).padStart(2, "0");
  return `${two(d.getUTCDate())}-${month}-${d.getUTCFullYear()} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} +0000`;
}

/** A LIST pattern (`*` any, `%` any but the delimiter) against a mailbox name, ASCII case-insensitive. */
export function listMatches(pattern: string, name: string): boolean {
  // runs of wildcards collapse, and a long pattern matches nothing: a regex
  // of many `.*` could otherwise backtrack for a very long time
  if (pattern.length > 256) return false;
  pattern = pattern.replace(/[*%]*\*[*%]*/g, "*").replace(/%+/g, "%");
  if (pattern.length > 64) return false;
  const re = pattern
    .toUpperCase()
    .replace(/[.+?^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/%/g, "[^/]*");
  return new RegExp(`^${re}$`).test(name.toUpperCase());
}

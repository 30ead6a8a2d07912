/**
 * Reusable directive builders, one per value type nginx has (its "slots").
 * Each returns a complete `Directive`, so a module's table reads as a list
 * of declarations.
 */
import { ConfError } from "../core/errors.js";
import { type Arity, type Context, type Directive, type MergeRule, type SetContext, directiveMessage, oneOrMore, take } from "./directive.js";
import { parseNumber, parseSize, parseTime, timerMs } from "./values.js";

/** Fields every builder takes. */
export interface SlotOptions {
  readonly contexts: readonly Context[];
  readonly doc: string;
  readonly defaultText?: string;
}

function mergeFor(contexts: readonly Context[]): MergeRule {
  return contexts.includes("server") && contexts.includes("mail") ? "scalar" : "none";
}

function scalar<T>(name: string, o: SlotOptions, syntax: string, def: T, defaultText: string, parse: (arg: string, cx: SetContext) => T, args: Arity = take(1)): Directive<T> {
  return {
    name, contexts: o.contexts, args, syntax, defaultValue: def, defaultText: o.defaultText ?? defaultText,
    merge: mergeFor(o.contexts), duplicates: "error", doc: o.doc,
    parse: (a, _prev, cx) => parse(a[0]!, cx),
  };
}

/** `on | off`. */
export function flag(name: string, def: boolean, o: SlotOptions): Directive<boolean> {
  return scalar(name, o, "on | off", def, def ? "on" : "off", (arg) => {
    const v = arg.toLowerCase();
    if (v === "on") return true;
    if (v === "off") return false;
    throw new ConfError(`invalid value "${arg}" in "${name}" directive, it must be "on" or "off"`);
  });
}

/** An unsigned number; with a default the value is never undefined. */
export function number(name: string, def: number, o: SlotOptions): Directive<number>;
export function number(name: string, def: undefined, o: SlotOptions): Directive<number | undefined>;
export function number(name: string, def: number | undefined, o: SlotOptions): Directive<number | undefined> {
  return scalar(name, o, "number", def, def === undefined ? "—" : String(def), (arg) => {
    const n = parseNumber(arg);
    if (n === null) throw directiveMessage(name, "invalid number");
    return n;
  });
}

/** A size in bytes (`4k`, `1m`). */
export function size(name: string, def: number, o: SlotOptions & { defaultText: string }): Directive<number> {
  return scalar(name, o, "size", def, o.defaultText, (arg) => {
    const n = parseSize(arg);
    if (n === null) throw directiveMessage(name, "invalid value");
    return n;
  });
}

/**
 * A time in milliseconds (`60s`, `500ms`); with a default the value is
 * never undefined. Every such directive is a timer's delay: over 24.8 days
 * it waits 24.8 days (timerMs).
 */
export function msec(name: string, def: number, o: SlotOptions & { defaultText: string }): Directive<number>;
export function msec(name: string, def: undefined, o: SlotOptions & { defaultText: string }): Directive<number | undefined>;
export function msec(name: string, def: number | undefined, o: SlotOptions & { defaultText: string }): Directive<number | undefined> {
  return scalar(name, o, "time", def, o.defaultText, (arg) => {
    const n = parseTime(arg, false);
    if (n === null) throw directiveMessage(name, "invalid value");
    return timerMs(n);
  });
}

/** A time in seconds (`5m`, `1y`). */
export function sec(name: string, def: number, o: SlotOptions & { defaultText: string }): Directive<number> {
  return scalar(name, o, "time", def, o.defaultText, (arg) => {
    const n = parseTime(arg, true);
    if (n === null) throw directiveMessage(name, "invalid value");
    return n;
  });
}

/** One word out of a fixed set, matched case-insensitively. */
export function enumeration<const W extends string>(name: string, words: readonly W[], def: W, o: SlotOptions): Directive<W> {
  return scalar(name, o, words.join(" | "), def, def, (arg) => {
    const w = words.find((x) => x.toLowerCase() === arg.toLowerCase());
    if (w === undefined) throw new ConfError(`invalid value "${arg}"`);
    return w;
  });
}

/** Any one word, kept as written; with a default the value is never undefined. */
export function string(name: string, def: string, o: SlotOptions & { syntax?: string }): Directive<string>;
export function string(name: string, def: undefined, o: SlotOptions & { syntax?: string }): Directive<string | undefined>;
export function string(name: string, def: string | undefined, o: SlotOptions & { syntax?: string }): Directive<string | undefined> {
  return scalar(name, o, o.syntax ?? "string", def, def === undefined ? "—" : def, (arg) => arg);
}

/**
 * Several words out of a fixed set (nginx's bitmask slot). Directives at one
 * level OR together; a server with any replaces the mail level's set. A
 * repeated word is a warning.
 */
export function bitmask<const W extends string>(name: string, words: readonly W[], def: readonly W[], o: SlotOptions): Directive<ReadonlySet<W>> {
  return {
    name, contexts: o.contexts, args: oneOrMore, syntax: `${words.join(" | ")} ...`,
    defaultValue: new Set(def), defaultText: o.defaultText ?? def.join(" "),
    merge: "list", duplicates: "accumulate", doc: o.doc,
    parse(args, previous, cx) {
      const set = new Set<W>(previous ?? []);
      for (const arg of args) {
        const w = words.find((x) => x.toLowerCase() === arg.toLowerCase());
        if (w === undefined) throw new ConfError(`invalid value "${arg}"`);
        if (set.has(w)) cx.warn(`duplicate value "${arg}"`);
        set.add(w);
      }
      return set;
    },
  };
}

/**
 * A list whose entries come from one directive each (or several words of
 * one directive). Entries accumulate at a level; a server level with any
 * entry replaces the inherited list.
 */
export function list<E>(name: string, o: SlotOptions & { syntax: string; args: Arity; entry: (args: readonly string[], cx: SetContext) => E | E[] }): Directive<readonly E[]> {
  return {
    name, contexts: o.contexts, args: o.args, syntax: o.syntax,
    defaultValue: [], defaultText: o.defaultText ?? "—",
    merge: "list", duplicates: "accumulate", doc: o.doc,
    parse(args, previous, cx) {
      const e = o.entry(args, cx);
      return [...(previous ?? []), ...(Array.isArray(e) ? e : [e])];
    },
  };
}

/** A directive with its own parser, for the few nginx special cases. */
export function custom<T>(d: Omit<Directive<T>, "merge" | "duplicates"> & { merge?: MergeRule; duplicates?: Directive<T>["duplicates"] }): Directive<T> {
  return { merge: mergeFor(d.contexts), duplicates: "error", ...d };
}

/**
 * The directive framework. Every module declares its directives in one table
 * of `Directive` objects; the engine checks names, contexts, argument counts
 * and duplicates from it, stores parsed values per block, and merges `mail`
 * values into each `server`. The `-T` dump and docs/directives.md come from
 * the same tables.
 */
import { ConfError, type SourceLocation } from "../core/errors.js";
import type { ConfLexer } from "./lexer.js";

/** The blocks a directive may appear in. */
export type Context = "main" | "events" | "mail" | "server";

/** How many arguments a directive takes (the name not counted). */
export type Arity =
  | { readonly kind: "exactly"; readonly counts: readonly number[] }
  | { readonly kind: "atLeast"; readonly min: number };

/** How a `server` value relates to the `mail` value. */
export type MergeRule =
  /** one value; the server's if set, else the mail block's, else the default */
  | "scalar"
  /** several directives at one level accumulate; a level with any replaces the parent's */
  | "list"
  /** values of main/events directives; not inherited */
  | "none";

/** What a second occurrence at the same level does. */
export type DuplicatePolicy = "error" | "lastWins" | "accumulate";

/** Everything a value parser may need besides the arguments. */
export interface SetContext {
  readonly name: string;
  readonly location: SourceLocation;
  /** The directory relative file names resolve against (the main file's). */
  readonly confDir: string;
  /** The `-p` prefix (ends with "/"). */
  readonly prefix: string;
  /** The block being parsed. */
  readonly level: Level;
  /** The lexer, positioned after `{`, for block directives. */
  readonly lexer: ConfLexer;
  /** Parses the body of a block directive in the given context. */
  parseBlock(context: Context, level: Level): void;
  /** Reports a warning the way nginx does (`[warn] ... in file:line`). */
  warn: (message: string) => void;
  /** Reports a warning without a location (nginx's merge-time warnings). */
  warnUnlocated(message: string): void;
}

/** One directive, as a module declares it. */
export interface Directive<T> {
  readonly name: string;
  readonly contexts: readonly Context[];
  readonly args: Arity;
  /** True for `name { ... }` directives. */
  readonly block?: boolean;
  /** Syntax shown in docs, nginx style: `on | off`. */
  readonly syntax: string;
  /** The value used when neither level sets the directive. */
  readonly defaultValue: T;
  /** The default as the docs print it; "—" when there is none. */
  readonly defaultText: string;
  readonly merge: MergeRule;
  readonly duplicates: DuplicatePolicy;
  /** One line for docs/directives.md. */
  readonly doc: string;
  /**
   * Parses the arguments. `previous` is this level's value so far (for
   * accumulating directives). Throws ConfError without a location; the
   * engine adds it.
   */
  parse(args: readonly string[], previous: T | undefined, cx: SetContext): T;
}

/** A directive of any value type, as stored in tables and maps. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyDirective = Directive<any>;

interface Setting {
  value: unknown;
  readonly location: SourceLocation;
}

/** The values set in one block (main, events, mail or one server). */
export class Level {
  readonly #settings = new Map<AnyDirective, Setting>();
  readonly context: Context;
  readonly location: SourceLocation;
  /** The enclosing block, if any. */
  readonly parent: Level | undefined;

  constructor(context: Context, location: SourceLocation, parent?: Level) {
    this.context = context;
    this.location = location;
    this.parent = parent;
  }

  has(d: AnyDirective): boolean {
    return this.#settings.has(d);
  }

  /** The raw value at this level, or undefined. */
  own<T>(d: Directive<T>): T | undefined {
    return this.#settings.get(d)?.value as T | undefined;
  }

  /** Where the directive was (last) set at this level. */
  locationOf(d: AnyDirective): SourceLocation | undefined {
    return this.#settings.get(d)?.location;
  }

  set<T>(d: Directive<T>, value: T, location: SourceLocation): void {
    this.#settings.set(d, { value, location });
  }

  /** The value here, or the directive's default. */
  get<T>(d: Directive<T>): T {
    const s = this.#settings.get(d);
    return s ? (s.value as T) : d.defaultValue;
  }
}

/**
 * A `server {}` block merged with its `mail {}` block: `get` answers the
 * effective value under the directive's merge rule.
 */
export class ServerConf {
  readonly own: Level;
  readonly parent: Level;
  readonly #cache = new Map<AnyDirective, unknown>();

  constructor(own: Level, parent: Level) {
    this.own = own;
    this.parent = parent;
  }

  /** Where the server block starts (for "... for server in FILE:LINE"). */
  get location(): SourceLocation {
    return this.own.location;
  }

  get<T>(d: Directive<T>): T {
    if (this.#cache.has(d)) return this.#cache.get(d) as T;
    let value: T;
    if (this.own.has(d)) value = this.own.own(d) as T;
    else if (this.parent.has(d)) value = this.parent.own(d) as T;
    else value = d.defaultValue;
    this.#cache.set(d, value);
    return value;
  }

  /** True when either level sets the directive. */
  isSet(d: AnyDirective): boolean {
    return this.own.has(d) || this.parent.has(d);
  }

  /** Where the effective value was set, if anywhere. */
  locationOf(d: AnyDirective): SourceLocation | undefined {
    return this.own.locationOf(d) ?? this.parent.locationOf(d);
  }
}

/** `take(1)`, `take(1, 2)`: an exact set of argument counts. */
export function take(...counts: number[]): Arity {
  return { kind: "exactly", counts };
}

/** `oneOrMore`: nginx's NGX_CONF_1MORE. */
export const oneOrMore: Arity = { kind: "atLeast", min: 1 };
/** `noArgs`: for blocks. */
export const noArgs: Arity = { kind: "exactly", counts: [0] };

/** True when `n` arguments fit the arity. nginx caps fixed arities at 7 arguments. */
export function arityAccepts(arity: Arity, n: number): boolean {
  if (arity.kind === "atLeast") return n >= arity.min;
  return n <= 7 && arity.counts.includes(n);
}

/** `"name" directive <predicate>`, nginx's usual shape. */
export function directiveMessage(name: string, predicate: string): ConfError {
  return new ConfError(`"${name}" directive ${predicate}`);
}

/** A module's contribution to the configuration. */
export interface ConfModule {
  readonly name: string;
  readonly directives: readonly AnyDirective[];
}

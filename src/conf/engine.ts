/**
 * Reads a configuration: `-g` parameters first, then the main file, handling
 * each directive as soon as it is read (as nginx does, so the first error
 * reported is the one nginx reports). Checks for unknown names, contexts,
 * block shape, argument counts and duplicates live here, once, for every
 * module.
 */
import { readdirSync, statSync } from "node:fs";
import { confInput, readConfFile } from "../core/conf-inputs.js";
import { dirname, isAbsolute, join } from "node:path";
import { ConfError, describeSystemError, type SourceLocation } from "../core/errors.js";
import { type AnyDirective, type ConfModule, type Context, Level, type SetContext, arityAccepts } from "./directive.js";
import { ConfLexer } from "./lexer.js";

/** One file read while parsing, for the `-T` dump. */
export interface ConfFile {
  readonly path: string;
  readonly text: Buffer;
}

/** What the command line says about where the configuration is. */
export interface ConfSource {
  /** The `-p` prefix, ending with "/". */
  readonly prefix: string;
  /** Absolute path of the main file. */
  readonly file: string;
  /** The `-g` parameter, if any. */
  readonly globals?: string;
}

/** A parsed configuration: the main block, from which every other block hangs. */
export interface ParsedConf {
  readonly source: ConfSource;
  readonly main: Level;
  readonly files: readonly ConfFile[];
  readonly warnings: readonly string[];
}

/** Parses and checks a configuration. Throws ConfError. */
export function parseConfiguration(source: ConfSource, modules: readonly ConfModule[], onWarning?: (text: string) => void): ParsedConf {
  const parser = new ConfParser(source, modules, onWarning);
  return parser.run();
}

class ConfParser {
  readonly #source: ConfSource;
  readonly #byName = new Map<string, AnyDirective[]>();
  readonly #files: ConfFile[] = [];
  readonly #warnings: string[] = [];
  readonly #onWarning: ((text: string) => void) | undefined;
  readonly #confDir: string;

  constructor(source: ConfSource, modules: readonly ConfModule[], onWarning?: (text: string) => void) {
    this.#source = source;
    this.#confDir = dirname(source.file);
    this.#onWarning = onWarning;
    for (const m of modules) {
      for (const d of m.directives) {
        const list = this.#byName.get(d.name) ?? [];
        list.push(d);
        this.#byName.set(d.name, list);
      }
    }
  }

  run(): ParsedConf {
    const main = new Level("main", { file: this.#source.file, line: 0 });
    if (this.#source.globals !== undefined) {
      const lexer = new ConfLexer(this.#source.globals, "", { commandLine: true });
      this.#parseBody(lexer, "main", main, false);
    }
    this.#parseFile(this.#source.file, "main", main);
    return { source: this.#source, main, files: this.#files, warnings: this.#warnings };
  }

  #parseFile(path: string, context: Context, level: Level, at?: SourceLocation): void {
    let text: Buffer;
    try {
      text = readConfFile(path);
    } catch (err) {
      const message = `open() "${path}" failed ${describeSystemError(err)}`;
      throw at ? new ConfError(message, at) : ConfError.unlocated(message);
    }
    this.#files.push({ path, text });
    this.#parseBody(new ConfLexer(text, path), context, level, false);
  }

  /** Handles statements until the end of the block (or of the file). */
  #parseBody(lexer: ConfLexer, context: Context, level: Level, inBlock: boolean): void {
    for (;;) {
      const st = lexer.next();
      if (st.kind === "end") {
        if (inBlock) throw new ConfError('unexpected end of file, expecting "}"', st.location);
        return;
      }
      if (st.kind === "blockEnd") {
        if (!inBlock) throw new ConfError('unexpected "}"', st.location);
        return;
      }
      if (st.opensBlock && st.location.commandLine) {
        throw new ConfError("block directives are not supported in -g option", st.location);
      }
      this.#handle(lexer, st.words, st.opensBlock, st.location, context, level);
    }
  }

  #handle(lexer: ConfLexer, words: string[], opensBlock: boolean, location: SourceLocation, context: Context, level: Level): void {
    const [name, ...args] = words as [string, ...string[]];
    if (name === "include" && !opensBlock) {
      if (args.length !== 1) throw new ConfError(`invalid number of arguments in "include" directive`, location);
      this.#include(args[0]!, context, level, location);
      return;
    }
    const candidates = this.#byName.get(name);
    if (!candidates) throw new ConfError(`unknown directive "${name}"`, location);
    const d = candidates.find((c) => c.contexts.includes(context));
    if (!d) throw new ConfError(`"${name}" directive is not allowed here`, location);
    if (!d.block && opensBlock) throw new ConfError(`directive "${name}" is not terminated by ";"`, location);
    if (d.block && !opensBlock) throw new ConfError(`directive "${name}" has no opening "{"`, location);
    if (!arityAccepts(d.args, args.length)) throw new ConfError(`invalid number of arguments in "${name}" directive`, location);
    if (d.duplicates === "error" && level.has(d)) throw new ConfError(`"${name}" directive is duplicate`, location);

    const cx: SetContext = {
      name, location, lexer, level,
      confDir: this.#confDir,
      prefix: this.#source.prefix,
      parseBlock: (inner, innerLevel) => this.#parseBody(lexer, inner, innerLevel, true),
      warn: (message) => this.#warn(`${message} ${location.commandLine ? "in command line" : `in ${location.file}:${location.line}`}`),
      warnUnlocated: (message) => this.#warn(message),
    };
    let value: unknown;
    try {
      value = d.parse(args, level.own(d), cx);
    } catch (err) {
      if (err instanceof ConfError && !err.settled) {
        err.location = location;
        err.settled = true;
      }
      throw err;
    }
    level.set(d, value, location);
  }

  #include(pattern: string, context: Context, level: Level, at: SourceLocation): void {
    const full = isAbsolute(pattern) ? pattern : join(this.#confDir, pattern);
    const paths = /[*?[]/.test(full) ? confInput(`glob:${full}`, () => expandGlob(full)) : [full];
    for (const path of paths) this.#parseFile(path, context, level, at);
  }

  #warn(text: string): void {
    this.#warnings.push(text);
    this.#onWarning?.(text);
  }
}

/** Expands a glob the way glob(3) does for nginx's include: sorted, no dot files unless named. */
export function expandGlob(pattern: string): string[] {
  const parts = pattern.split("/");
  let bases = [parts[0] === "" ? "/" : parts[0]!];
  for (let i = 1; i < parts.length; i++) {
    const part = parts[i]!;
    if (part === "") continue;
    const next: string[] = [];
    for (const base of bases) {
      if (!/[*?[]/.test(part)) {
        next.push(join(base, part));
        continue;
      }
      const re = globToRegExp(part);
      let names: string[];
      try {
        names = readdirSync(base);
      } catch {
        continue; // an unreadable or missing directory matches nothing, as glob(3)
      }
      for (const n of names.sort()) {
        if (n.startsWith(".") && !part.startsWith(".")) continue;
        if (re.test(n)) next.push(join(base, n));
      }
    }
    bases = next;
  }
  return bases.filter((p) => {
    try {
      return statSync(p).isFile();
    } catch {
      return false;
    }
  });
}

function globToRegExp(part: string): RegExp {
  let re = "^";
  for (let i = 0; i < part.length; i++) {
    const ch = part[i]!;
    if (ch === "*") re += "[^/]*";
    else if (ch === "?") re += "[^/]";
    else if (ch === "[") {
      const end = part.indexOf("]", i + 2);
      if (end < 0) re += "\\[";
      else {
        let body = part.slice(i + 1, end);
        if (body.startsWith("!")) body = "^" + body.slice(1);
        re += `[${body.replace(/\\/g, "\\\\")}]`;
        i = end;
      }
    } else re += ch.replace(/[.+^${}()|\\]/g, "\\$&");
  }
  return new RegExp(re + "$");
}

/**
 * The nginx configuration tokenizer. It is pull-based, like nginx's own: the
 * engine asks for one statement at a time and handles it before reading on,
 * so errors come out in the same order as nginx reports them.
 */
import { ConfError, type SourceLocation } from "../core/errors.js";

/** One thing read from a configuration file. */
export type Statement =
  | { readonly kind: "directive"; readonly words: string[]; readonly opensBlock: boolean; readonly location: SourceLocation }
  | { readonly kind: "blockEnd"; readonly location: SourceLocation }
  | { readonly kind: "end"; readonly location: SourceLocation };

const TAB = 0x09, LF = 0x0a, CR = 0x0d, SPACE = 0x20;
const DQUOTE = 0x22, SQUOTE = 0x27, HASH = 0x23, DOLLAR = 0x24, BACKSLASH = 0x5c;
const SEMI = 0x3b, LBRACE = 0x7b, RBRACE = 0x7d, RPAREN = 0x29;

function isSpace(ch: number): boolean {
  return ch === SPACE || ch === TAB || ch === CR || ch === LF;
}

/** Reads statements from the text of one file (or of the `-g` parameter). */
export class ConfLexer {
  readonly #text: Buffer;
  readonly #file: string;
  readonly #commandLine: boolean;
  #pos = 0;
  #line = 1;

  constructor(text: Buffer | string, file: string, options: { commandLine?: boolean } = {}) {
    this.#text = typeof text === "string" ? Buffer.from(text) : text;
    this.#file = file;
    this.#commandLine = options.commandLine ?? false;
  }

  /** The current location: the line nginx names in an error. */
  get location(): SourceLocation {
    return { file: this.#file, line: this.#line, commandLine: this.#commandLine };
  }

  #fail(message: string): never {
    throw new ConfError(message, this.location);
  }

  /** Reads the next statement; throws a located ConfError on bad syntax. */
  next(): Statement {
    const text = this.#text;
    const words: string[] = [];
    let wordStart = 0;
    let lastSpace = true;
    let needSpace = false;
    let comment = false;
    let escaped = false;
    let variable = false;
    let quote = 0;

    for (;;) {
      if (this.#pos >= text.length) {
        if (words.length > 0 || !lastSpace) {
          this.#fail(this.#commandLine ? 'unexpected end of parameter, expecting ";"' : 'unexpected end of file, expecting ";" or "}"');
        }
        return { kind: "end", location: this.location };
      }
      const ch = text[this.#pos++]!;
      if (ch === LF) {
        this.#line++;
        comment = false;
      }
      if (comment) continue;
      if (escaped) {
        escaped = false;
        continue;
      }
      if (needSpace) {
        if (isSpace(ch)) {
          lastSpace = true;
          needSpace = false;
          continue;
        }
        if (ch === SEMI) return this.#directive(words, false);
        if (ch === LBRACE) return this.#directive(words, true);
        if (ch !== RPAREN) this.#fail(`unexpected "${String.fromCharCode(ch)}"`);
        lastSpace = true;
        needSpace = false;
      }
      if (lastSpace) {
        wordStart = this.#pos - 1;
        if (isSpace(ch)) continue;
        switch (ch) {
          case SEMI:
          case LBRACE:
            if (words.length === 0) this.#fail(`unexpected "${String.fromCharCode(ch)}"`);
            return this.#directive(words, ch === LBRACE);
          case RBRACE:
            if (words.length !== 0) this.#fail('unexpected "}"');
            return { kind: "blockEnd", location: this.location };
          case HASH:
            comment = true;
            continue;
          case BACKSLASH:
            escaped = true;
            lastSpace = false;
            continue;
          case DQUOTE:
          case SQUOTE:
            wordStart++;
            quote = ch;
            lastSpace = false;
            continue;
          case DOLLAR:
            variable = true;
            lastSpace = false;
            continue;
          default:
            lastSpace = false;
            continue;
        }
      }
      // Inside a word.
      if (ch === LBRACE && variable) continue;
      variable = false;
      if (ch === BACKSLASH) {
        escaped = true;
        continue;
      }
      if (ch === DOLLAR) {
        variable = true;
        continue;
      }
      let ended = false;
      if (quote !== 0) {
        if (ch === quote) {
          quote = 0;
          needSpace = true;
          ended = true;
        }
      } else if (isSpace(ch) || ch === SEMI || ch === LBRACE) {
        lastSpace = true;
        ended = true;
      }
      if (!ended) continue;
      words.push(unescapeWord(text.subarray(wordStart, this.#pos - 1)));
      if (ch === SEMI) return this.#directive(words, false);
      if (ch === LBRACE) return this.#directive(words, true);
    }
  }

  #directive(words: string[], opensBlock: boolean): Statement {
    return { kind: "directive", words, opensBlock, location: this.location };
  }
}

/** Applies nginx's backslash rules to the raw bytes of one word. */
function unescapeWord(raw: Buffer): string {
  if (!raw.includes(BACKSLASH)) return raw.toString("utf8");
  const out: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i]!;
    if (ch === BACKSLASH && i + 1 < raw.length) {
      const next = raw[i + 1]!;
      if (next === DQUOTE || next === SQUOTE || next === BACKSLASH) {
        out.push(next);
        i++;
        continue;
      }
      const control = next === 0x74 ? TAB : next === 0x72 ? CR : next === 0x6e ? LF : -1;
      if (control >= 0) {
        out.push(control);
        i++;
        continue;
      }
    }
    out.push(ch);
  }
  return Buffer.from(out).toString("utf8");
}

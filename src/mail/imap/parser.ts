/**
 * The IMAP command parser of the auth state: tag, command
 * word, at most three arguments (atoms, quoted strings with backslashes,
 * `{N}` / `{N+}` literals), with nginx's quirks. Incremental and pure: it is
 * fed the unconsumed bytes of the current command (always from the command's
 * first byte) and remembers how far it has scanned, so a command split
 * across reads parses exactly as the whole.
 *
 * Literals are stricter than nginx's: only `{digits}` and `{digits+}` whose
 * data fits in the command buffer are literals, anything else (`{}`, `{+}`,
 * a length the buffer cannot hold, where nginx's 64-bit length wrapped) is
 * a syntax error; `{0}` is an empty literal (RFC 3501), where nginx took one
 * byte of what follows as its data.
 * Rules: docs/behaviour/imap.md#imap-2-command-syntax, #imap-3-literals,
 * #imap-9-invalid-commands.
 */
import { asciiUpper } from "../line-bytes.js";
import { type IdField, IdScanner } from "./id-syntax.js";

/** The commands nginx knows in the auth state. */
export type ImapCommandName = "noop" | "login" | "logout" | "starttls" | "capability" | "authenticate" | "id";

/** The outcome of feeding bytes to the parser. */
export type ImapParse =
  /** no complete command yet: wait for more bytes */
  | { readonly kind: "incomplete" }
  /** a synchronizing literal `{N}` was announced: send `+ OK`, then feed the same bytes again */
  | { readonly kind: "literal" }
  /** a complete tagged command of `length` bytes */
  | {
      readonly kind: "command";
      readonly length: number;
      readonly tag: string;
      readonly name: ImapCommandName;
      readonly args: readonly Buffer[];
      /** ID (only with `imap_id on`): the client's fields, empty for `ID NIL` */
      readonly id?: readonly IdField[];
    }
  /** a complete SASL response line (after `awaitResponse`): its arguments */
  | { readonly kind: "response"; readonly length: number; readonly args: readonly Buffer[] }
  /**
   * a syntax error, `length` bytes up to and including the LF; `tag` is the
   * tag read before the error, if any; `quit` when the line ends with `+}`
   * (a non-synchronizing literal whose data would be taken for commands)
   */
  | { readonly kind: "invalid"; readonly length: number; readonly tag: string | undefined; readonly quit: boolean };

type State =
  | "start"
  | "tag"
  | "invalid"
  | "spacesBeforeCommand"
  | "command"
  | "spacesBeforeArgument"
  | "argument"
  | "backslash"
  | "literal"
  | "noSyncLiteral"
  | "startLiteralArgument"
  | "literalArgument"
  | "endLiteralArgument"
  | "almostDone"
  /** the argument of ID (id-syntax.ts) */
  | "id";

const SP = 0x20,
  CR = 0x0d,
  LF = 0x0a,
  QUOTE = 0x22,
  BACKSLASH = 0x5c,
  LBRACE = 0x7b,
  RBRACE = 0x7d,
  PLUS = 0x2b;
const MAX_TAG = 32;
const MAX_ARGS = 3;
/** `imap_client_buffer`'s default, for parsers made without a size (unit tests). */
const DEFAULT_BUFFER_SIZE = 4096;
// an invalid line ending in "+}" is checked only past this many bytes of nginx's buffer (sizeof("{1+}") - 1)
const NO_SYNC_CHECK_FROM = 4;

const COMMANDS: ReadonlyMap<string, ImapCommandName> = new Map([
  ["NOOP", "noop"],
  ["LOGIN", "login"],
  ["LOGOUT", "logout"],
  ["STARTTLS", "starttls"],
  ["CAPABILITY", "capability"],
  ["AUTHENTICATE", "authenticate"],
]);

function isTagChar(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e || c === 0x5f;
}

function isLetter(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

/** `\x` -> `x` throughout a quoted argument that contained a backslash. */
function unescape(raw: Buffer): Buffer {
  const out = Buffer.allocUnsafe(raw.length);
  let o = 0;
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === BACKSLASH && i + 1 < raw.length) i++;
    out[o++] = raw[i]!;
  }
  return out.subarray(0, o);
}

/** One session's IMAP parser. */
export class ImapParser {
  #state: State = "start";
  /** bytes of the current command already scanned */
  #pos = 0;
  #tag: string | undefined;
  #commandStart = 0;
  #name: ImapCommandName | undefined;
  #args: Buffer[] = [];
  #argStart = 0;
  #literalLeft = 0;
  /** Digits read in the current `{...}`: none makes `{}` and `{+}` invalid. */
  #literalDigits = 0;
  /** The ID argument being read; the parser knows ID only when `imap_id` is on. */
  #id: IdScanner | undefined;
  readonly #idEnabled: boolean;
  /** The command buffer's size: a literal's data must fit in it. */
  readonly #bufferSize: number;
  /** Where the current command starts in the command buffer (from `feed`). */
  #offset = 0;
  // these three survive from one command to the next, as in nginx, until a closing quote or an error clears them
  #quoted = false;
  #backslash = false;
  #noSyncLiteral = false;
  #response = false;

  constructor(bufferSize = DEFAULT_BUFFER_SIZE, idEnabled = false) {
    this.#bufferSize = bufferSize;
    this.#idEnabled = idEnabled;
  }

  /**
   * Parses the next SASL response line as nginx does after a challenge: no
   * tag and no command word, the line starts inside a first argument.
   */
  awaitResponse(): void {
    this.#response = true;
  }

  /** True while the next line is a SASL response. */
  get awaitingResponse(): boolean {
    return this.#response;
  }

  /** The tag of the command being read, once its terminating space was seen. */
  get partialTag(): string | undefined {
    return this.#tag;
  }

  /** Forgets the command in progress (the core discarded the bytes, e.g. STARTTLS). */
  reset(): void {
    this.#pos = 0;
    this.#state = "start";
    this.#tag = undefined;
    this.#name = undefined;
    this.#args = [];
    this.#id = undefined;
    this.#response = false;
  }

  /**
   * Scans `input` (the current command from its first byte; bytes already
   * scanned must be unchanged). `offset` is where the command starts in
   * nginx's buffer, which only the `+}` rule looks at.
   */
  feed(input: Buffer, offset = 0): ImapParse {
    this.#offset = offset;
    if (this.#pos === 0 && this.#state === "start" && this.#response) {
      this.#state = "argument";
      this.#argStart = 0;
    }
    for (let p = this.#pos; p < input.length; p++) {
      const ch = input[p]!;
      const step = this.#step(input, p, ch);
      if (step === "ok") continue;
      if (step === "invalid") return this.#invalid(input, p, offset);
      if (step === "literal") {
        this.#pos = p + 1;
        return { kind: "literal" };
      }
      if (typeof step === "number") {
        // a literal's data was skipped in one go
        p = step;
        continue;
      }
      return this.#done(p + 1);
    }
    this.#pos = input.length;
    return { kind: "incomplete" };
  }

  /** Advances the state machine by one byte: "ok", "done", "invalid", "literal", or a position to jump to. */
  #step(input: Buffer, p: number, ch: number): "ok" | "done" | "invalid" | "literal" | number {
    switch (this.#state) {
      case "start":
        this.#state = "tag";
        return this.#tagByte(input, p, ch);
      case "tag":
        return this.#tagByte(input, p, ch);
      case "invalid":
        return "invalid";
      case "spacesBeforeCommand":
        if (ch === SP) return "ok";
        if (ch === CR || ch === LF) return "invalid";
        this.#commandStart = p;
        this.#state = "command";
        return "ok";
      case "command":
        return this.#commandByte(input, p, ch);
      case "spacesBeforeArgument":
        return this.#beforeArgument(p, ch);
      case "argument":
        return this.#argumentByte(input, p, ch);
      case "backslash":
        if (ch === CR || ch === LF) return "invalid";
        this.#state = "argument";
        return "ok";
      case "literal":
        return this.#literalByte(ch);
      case "noSyncLiteral":
        if (ch !== RBRACE) return "invalid";
        this.#noSyncLiteral = true;
        this.#state = "startLiteralArgument";
        return "ok";
      case "startLiteralArgument":
        if (ch === CR) return "ok";
        if (ch !== LF) return "invalid";
        // the data and at least the LF ending the command must fit in the buffer
        if (this.#offset + p + 1 + this.#literalLeft + 1 > this.#bufferSize) return "invalid";
        this.#argStart = p + 1;
        this.#state = "literalArgument";
        if (this.#literalLeft === 0) {
          // `{0}`: an empty argument, the next byte already follows the literal
          this.#args.push(Buffer.alloc(0));
          this.#state = "endLiteralArgument";
        }
        if (!this.#noSyncLiteral) return "literal";
        this.#noSyncLiteral = false;
        return "ok";
      case "literalArgument":
        return this.#literalData(input, p);
      case "endLiteralArgument":
        // latest nginx: the literal must be followed by SP or CRLF (1.22.1 swallowed any byte)
        if (ch === SP) this.#state = "spacesBeforeArgument";
        else if (ch === CR) this.#state = "almostDone";
        else if (ch === LF) return "done";
        else return "invalid";
        return "ok";
      case "almostDone":
        return ch === LF ? "done" : "invalid";
      case "id":
        return this.#id!.step(input, p, ch);
    }
  }

  #tagByte(input: Buffer, p: number, ch: number): "ok" | "invalid" {
    if (ch === SP) {
      // the tag starts at the command's first byte; a line starting with a space has an empty tag
      this.#tag = input.toString("latin1", 0, p);
      this.#state = "spacesBeforeCommand";
      return "ok";
    }
    if (ch === CR || ch === LF || !isTagChar(ch) || p >= MAX_TAG) return "invalid";
    return "ok";
  }

  #commandByte(input: Buffer, p: number, ch: number): "ok" | "done" | "invalid" {
    if (ch !== SP && ch !== CR && ch !== LF) return isLetter(ch) ? "ok" : "invalid";
    const word = asciiUpper(input.subarray(this.#commandStart, p));
    if (word === "ID" && this.#idEnabled) {
      // exactly one space, then the argument (id-syntax.ts)
      if (ch !== SP) return "invalid";
      this.#name = "id";
      this.#id = new IdScanner((at) => this.#bufferSize - (this.#offset + at + 1));
      this.#state = "id";
      return "ok";
    }
    const name = COMMANDS.get(word);
    if (name === undefined) return "invalid";
    this.#name = name;
    return this.#afterToken(ch);
  }

  /** SP, CR or LF after a command word or an argument. */
  #afterToken(ch: number): "ok" | "done" {
    if (ch === LF) return "done";
    this.#state = ch === CR ? "almostDone" : "spacesBeforeArgument";
    return "ok";
  }

  #beforeArgument(p: number, ch: number): "ok" | "done" | "invalid" {
    if (ch === SP) return "ok";
    if (ch === CR || ch === LF) return this.#afterToken(ch);
    if (this.#args.length >= MAX_ARGS) return "invalid";
    if (ch === QUOTE) {
      this.#quoted = true;
      this.#argStart = p + 1;
      this.#state = "argument";
    } else if (ch === LBRACE) {
      this.#state = "literal";
      this.#literalLeft = 0;
      this.#literalDigits = 0;
    } else {
      this.#argStart = p;
      this.#state = "argument";
    }
    return "ok";
  }

  #argumentByte(input: Buffer, p: number, ch: number): "ok" | "done" {
    if (ch === SP && this.#quoted) return "ok";
    if (ch === BACKSLASH) {
      if (this.#quoted) {
        this.#backslash = true;
        this.#state = "backslash";
      }
      return "ok";
    }
    if (ch === QUOTE) {
      if (!this.#quoted) return "ok";
      this.#quoted = false;
    } else if (ch !== SP && ch !== CR && ch !== LF) {
      return "ok";
    }
    const raw = input.subarray(this.#argStart, p);
    this.#args.push(this.#backslash ? unescape(raw) : Buffer.from(raw));
    this.#backslash = false;
    if (ch === QUOTE) {
      this.#state = "spacesBeforeArgument";
      return "ok";
    }
    return this.#afterToken(ch);
  }

  #literalByte(ch: number): "ok" | "invalid" {
    if (ch >= 0x30 && ch <= 0x39) {
      this.#literalLeft = this.#literalLeft * 10 + (ch - 0x30);
      this.#literalDigits++;
      // stop at once past the buffer: the number never grows beyond it
      return this.#literalLeft > this.#bufferSize ? "invalid" : "ok";
    }
    if (ch !== RBRACE && ch !== PLUS) return "invalid";
    if (this.#literalDigits === 0) return "invalid";
    this.#state = ch === PLUS ? "noSyncLiteral" : "startLiteralArgument";
    return "ok";
  }

  /** Literal data at `p` (at least one byte is wanted). Returns where scanning resumes. */
  #literalData(input: Buffer, p: number): number {
    const wanted = this.#literalLeft;
    const available = input.length - p;
    if (available < wanted) {
      this.#literalLeft = wanted - available;
      return input.length - 1;
    }
    const last = p + wanted - 1;
    this.#literalLeft = 0;
    this.#args.push(Buffer.from(input.subarray(this.#argStart, last + 1)));
    this.#state = "endLiteralArgument";
    return last;
  }

  #done(length: number): ImapParse {
    const args = this.#args;
    const id = this.#id ? { id: this.#id.fields } : {};
    const result: ImapParse = this.#response
      ? { kind: "response", length, args }
      : { kind: "command", length, tag: this.#tag ?? "", name: this.#name!, args, ...id };
    this.#finish();
    return result;
  }

  #finish(): void {
    this.#pos = 0;
    this.#state = "start";
    this.#tag = undefined;
    this.#name = undefined;
    this.#args = [];
    this.#id = undefined;
    this.#response = false;
  }

  /** Skips to the next LF; the command is answered once it is there. */
  #invalid(input: Buffer, p: number, offset: number): ImapParse {
    this.#state = "invalid";
    this.#quoted = false;
    this.#backslash = false;
    this.#noSyncLiteral = false;
    this.#literalLeft = 0;
    const lf = input.indexOf(LF, p);
    if (lf < 0) {
      this.#pos = input.length;
      return { kind: "incomplete" };
    }
    const tag = this.#tag;
    let quit = false;
    if (offset + lf > NO_SYNC_CHECK_FROM) {
      let q = lf - 1;
      if (input[q] === CR) q--;
      quit = q >= 1 && input[q] === RBRACE && input[q - 1] === PLUS;
    }
    this.#finish();
    return { kind: "invalid", length: lf + 1, tag, quit };
  }
}

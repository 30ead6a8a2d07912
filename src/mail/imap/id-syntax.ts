/**
 * The argument of the IMAP `ID` command (RFC 2971), read strictly:
 * `NIL` or `(field value ...)` where fields are strings and values strings
 * or NIL, strings quoted or literals (`{N}` / `{N+}`), one space between
 * items. RFC 2971's limits are enforced as syntax: at most 30 pairs, a field
 * at most 30 octets, a value at most 1024 octets; fields are not repeated
 * (compared without case). Strings are printable US-ASCII or HTAB only: no
 * CR, LF or NUL (they would end a line on the backend), no 8-bit bytes
 * (IMAP4rev1 quoted strings are 7-bit), and a backslash escapes only `"`
 * and `\`. A literal's data is skipped as a whole before it is judged, so
 * its bytes are never read as commands.
 *
 * Driven byte by byte by ImapParser (parser.ts) with the same step results,
 * so a command split across reads and synchronising literals work as for
 * LOGIN. Rules: docs/behaviour/imap.md#imap-14-id-before-login.
 */

/** One field of a client's ID; `value` undefined for NIL. */
export interface IdField {
  readonly name: string;
  readonly value: string | undefined;
}

/** RFC 2971 section 3.3's limits. */
export const ID_MAX_PAIRS = 30;
export const ID_MAX_FIELD = 30;
export const ID_MAX_VALUE = 1024;

/** What one byte does: as ImapParser's steps ("literal": send the continuation; a number: resume after it). */
export type IdStep = "ok" | "done" | "invalid" | "literal" | number;

type State =
  | "start"
  | "nil"
  | "listStart"
  | "itemStart"
  | "quoted"
  | "escape"
  | "literalDigits"
  | "literalPlus"
  | "literalCr"
  | "literalLf"
  | "literalData"
  | "afterItem"
  | "afterList"
  | "almostDone"
  /** a literal's data was refused: the byte after it is the error */
  | "refuse";

const SP = 0x20,
  CR = 0x0d,
  LF = 0x0a,
  HTAB = 0x09,
  QUOTE = 0x22,
  BACKSLASH = 0x5c,
  LPAREN = 0x28,
  RPAREN = 0x29,
  LBRACE = 0x7b,
  RBRACE = 0x7d,
  PLUS = 0x2b;

function isTextByte(c: number): boolean {
  return (c >= 0x20 && c <= 0x7e) || c === HTAB;
}

/** Reads one ID argument; `fields` holds the result once a step said "done". */
export class IdScanner {
  #state: State = "start";
  /** Letters of NIL matched so far (at the argument or at a value). */
  #nil = 0;
  /** The string being read. */
  #text = "";
  /** Literal: bytes still to come, and whether one of them was not a text byte. */
  #literalLeft = 0;
  #literalBad = false;
  #literalDigits = 0;
  #nonSync = false;
  /** Field name waiting for its value; undefined when the next item is a field. */
  #field: string | undefined;
  readonly #seen = new Set<string>();
  readonly fields: IdField[] = [];
  /** Room left in the command buffer at the step's position: a literal must fit. */
  readonly #room: (p: number) => number;

  /** `room(p)`: bytes of the command buffer left after position `p` of the command. */
  constructor(room: (p: number) => number) {
    this.#room = room;
  }

  /** Scans `input[p]` (literal data may be skipped in one go). */
  step(input: Buffer, p: number, ch: number): IdStep {
    switch (this.#state) {
      case "start":
        if (ch === LPAREN) {
          this.#state = "listStart";
          return "ok";
        }
        return this.#nilByte(ch, "afterList");
      case "nil":
        return this.#nilByte(ch, this.#field === undefined ? "afterList" : "afterItem");
      case "listStart":
        if (ch === RPAREN) {
          this.#state = "afterList";
          return "ok";
        }
        return this.#itemStart(ch);
      case "itemStart":
        return this.#itemStart(ch);
      case "quoted":
        if (ch === QUOTE) return this.#endString();
        if (ch === BACKSLASH) {
          this.#state = "escape";
          return "ok";
        }
        return this.#append(ch);
      case "escape":
        if (ch !== QUOTE && ch !== BACKSLASH) return "invalid";
        this.#state = "quoted";
        return this.#append(ch);
      case "literalDigits":
        return this.#literalDigit(ch);
      case "literalPlus":
        if (ch !== RBRACE) return "invalid";
        this.#nonSync = true;
        this.#state = "literalCr";
        return "ok";
      case "literalCr":
        if (ch === CR) {
          this.#state = "literalLf";
          return "ok";
        }
        return this.#literalStart(p, ch);
      case "literalLf":
        return this.#literalStart(p, ch);
      case "literalData":
        return this.#literalData(input, p);
      case "afterItem":
        if (ch === SP) {
          this.#state = "itemStart";
          return "ok";
        }
        if (ch === RPAREN && this.#field === undefined) {
          this.#state = "afterList";
          return "ok";
        }
        return "invalid";
      case "afterList":
        if (ch === CR) {
          this.#state = "almostDone";
          return "ok";
        }
        return ch === LF ? "done" : "invalid";
      case "almostDone":
        return ch === LF ? "done" : "invalid";
      case "refuse":
        return "invalid";
    }
  }

  /** `NIL`, case-insensitive: the whole argument, or a value. */
  #nilByte(ch: number, then: State): IdStep {
    const want = "NIL".charCodeAt(this.#nil);
    if ((ch & ~0x20) !== want) return "invalid";
    this.#nil++;
    if (this.#nil < 3) {
      this.#state = "nil";
      return "ok";
    }
    this.#nil = 0;
    if (then === "afterItem") return this.#pair(undefined);
    this.#state = then;
    return "ok";
  }

  #itemStart(ch: number): IdStep {
    this.#text = "";
    if (ch === QUOTE) {
      this.#state = "quoted";
      return "ok";
    }
    if (ch === LBRACE) {
      this.#literalLeft = 0;
      this.#literalDigits = 0;
      this.#literalBad = false;
      this.#nonSync = false;
      this.#state = "literalDigits";
      return "ok";
    }
    // NIL is a value only, never a field name
    if (this.#field !== undefined) return this.#nilByte(ch, "afterItem");
    return "invalid";
  }

  /** The longest string allowed where the scanner is: a field name or a value. */
  #limit(): number {
    return this.#field === undefined ? ID_MAX_FIELD : ID_MAX_VALUE;
  }

  #append(ch: number): IdStep {
    if (!isTextByte(ch) || this.#text.length >= this.#limit()) return "invalid";
    this.#text += String.fromCharCode(ch);
    return "ok";
  }

  #endString(): IdStep {
    const text = this.#text;
    this.#text = "";
    if (this.#field !== undefined) return this.#pair(text);
    const key = text.toLowerCase();
    if (text.length === 0 || this.#seen.has(key) || this.fields.length >= ID_MAX_PAIRS) return "invalid";
    this.#seen.add(key);
    this.#field = text;
    this.#state = "afterItem";
    return "ok";
  }

  #pair(value: string | undefined): IdStep {
    this.fields.push({ name: this.#field!, value });
    this.#field = undefined;
    this.#state = "afterItem";
    return "ok";
  }

  #literalDigit(ch: number): IdStep {
    if (ch >= 0x30 && ch <= 0x39) {
      this.#literalLeft = this.#literalLeft * 10 + (ch - 0x30);
      this.#literalDigits++;
      // refused before the continuation is sent: the client never sends the data
      return this.#literalLeft > this.#limit() ? "invalid" : "ok";
    }
    if (this.#literalDigits === 0) return "invalid";
    if (ch === PLUS) {
      this.#state = "literalPlus";
      return "ok";
    }
    if (ch !== RBRACE) return "invalid";
    this.#state = "literalCr";
    return "ok";
  }

  /** The LF after `{N}`: the data follows (after the continuation when synchronising). */
  #literalStart(p: number, ch: number): IdStep {
    if (ch !== LF || this.#literalLeft + 1 > this.#room(p)) return "invalid";
    const sync = !this.#nonSync;
    if (this.#literalLeft === 0) {
      const end = this.#endString();
      if (end !== "ok") return end;
    } else {
      this.#state = "literalData";
    }
    return sync ? "literal" : "ok";
  }

  /** Literal data from `p`: takes what is there; judged once the last byte is in. */
  #literalData(input: Buffer, p: number): IdStep {
    const take = Math.min(this.#literalLeft, input.length - p);
    for (let i = p; i < p + take; i++) {
      const c = input[i]!;
      if (isTextByte(c)) this.#text += String.fromCharCode(c);
      else this.#literalBad = true;
    }
    this.#literalLeft -= take;
    // refused at the byte after the data, so the skip to the line's end starts past it
    if (this.#literalLeft === 0 && (this.#literalBad || this.#endString() !== "ok")) this.#state = "refuse";
    return p + take - 1;
  }
}

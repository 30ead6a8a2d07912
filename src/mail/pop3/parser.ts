/**
 * The POP3 command parser (the pop3 part of
 * ngx_mail_parse.c). Pure: bytes in, typed results out.
 *
 * Every outcome is decided by one line (up to LF): nginx skips an invalid
 * command to its LF before replying, so a line is parsed only once it is
 * complete. Arguments are copies: the core reuses its buffer.
 * The parser remembers how far it has looked for the LF, so
 * re-offering a growing buffer costs only the new bytes.
 * Rules: docs/behaviour/pop3.md#pop3-2-command-syntax-and-the-buffer,
 * #pop3-7-auth-mechanisms-and-challenges.
 */
import { asciiUpper } from "../line-bytes.js";

/** The commands nginx recognises before authentication. */
export const POP3_VERBS = ["USER", "PASS", "APOP", "QUIT", "CAPA", "AUTH", "NOOP", "STLS"] as const;
/** One recognised command word, upper case. */
export type Pop3Verb = (typeof POP3_VERBS)[number];

/**
 * How the next line is read: a command, or the client's answer to a SASL
 * challenge (nginx keeps parsing AUTH's arguments, so the answer is split
 * at spaces like arguments and its first word is used).
 */
export type Pop3LineMode = "command" | "saslResponse";

/** The outcome of parsing one line. `length` counts the bytes consumed, LF included. */
export type Pop3Parsed =
  | { readonly kind: "incomplete" }
  | { readonly kind: "command"; readonly verb: Pop3Verb; readonly args: readonly Buffer[]; readonly length: number }
  | { readonly kind: "saslResponse"; readonly args: readonly Buffer[]; readonly length: number }
  /** a syntax error: counts toward max_errors */
  | { readonly kind: "invalid"; readonly length: number };

/** At most this many arguments; the start of one more is a syntax error. */
export const POP3_MAX_ARGS = 3;

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const INCOMPLETE: Pop3Parsed = { kind: "incomplete" };
/** The result of parsing a line body, before the length is known. */
type LineResult =
  | { readonly kind: "command"; readonly verb: Pop3Verb; readonly args: readonly Buffer[] }
  | { readonly kind: "saslResponse"; readonly args: readonly Buffer[] }
  | { readonly kind: "invalid" };
const INVALID: LineResult = { kind: "invalid" };

/** Incremental front: finds the end of the line, then parses it. */
export class Pop3Parser {
  /** Bytes at the start of the current input already known to hold no LF. */
  #scanned = 0;

  /**
   * Parses the first line of `input` (the unconsumed bytes, which only grow
   * between calls until a result is returned).
   */
  next(input: Buffer, mode: Pop3LineMode): Pop3Parsed {
    const lf = input.indexOf(LF, Math.min(this.#scanned, input.length));
    if (lf < 0) {
      this.#scanned = input.length;
      return INCOMPLETE;
    }
    this.#scanned = 0;
    return { ...parsePop3Line(input.subarray(0, lf), mode), length: lf + 1 };
  }

  /** Forgets a partial line (the core dropped its buffer). */
  reset(): void {
    this.#scanned = 0;
  }
}

/** Parses one line, given without its LF. */
export function parsePop3Line(line: Buffer, mode: Pop3LineMode): LineResult {
  // CR is allowed only right before LF, anywhere else it spoils the line.
  const body = line.length > 0 && line[line.length - 1] === CR ? line.subarray(0, -1) : line;
  if (body.includes(CR)) return INVALID;
  if (mode === "saslResponse") {
    const args = splitArguments(body, 0, true);
    return args ? { kind: "saslResponse", args } : INVALID;
  }
  let end = body.indexOf(SP);
  if (end < 0) end = body.length;
  const verb = verbOf(body.subarray(0, end));
  if (!verb) return INVALID;
  // USER and PASS keep spaces: a name or password may contain them.
  const args = verb === "USER" || verb === "PASS" ? wholeRest(body, end) : splitArguments(body, end, false);
  return args ? { kind: "command", verb, args } : INVALID;
}

/** The command for exactly four ASCII letters, case-insensitively. */
function verbOf(word: Buffer): Pop3Verb | undefined {
  if (word.length !== 4) return undefined;
  for (const c of word) {
    if (!((c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a))) return undefined;
  }
  const upper = asciiUpper(word);
  return POP3_VERBS.find((v) => v === upper);
}

/** Everything after the spaces that follow the command, as one argument. */
function wholeRest(body: Buffer, from: number): Buffer[] {
  let start = from;
  while (start < body.length && body[start] === SP) start++;
  return start < body.length ? [Buffer.from(body.subarray(start))] : [];
}

/**
 * Space-separated arguments from `from`. With `atArgument` the first
 * argument starts right there, even empty (a SASL answer line).
 * Null when a fourth argument starts.
 */
function splitArguments(body: Buffer, from: number, atArgument: boolean): Buffer[] | null {
  const args: Buffer[] = [];
  let i = from;
  let inArg = atArgument;
  let start = from;
  for (; i < body.length; i++) {
    const c = body[i];
    if (inArg) {
      if (c === SP) {
        args.push(Buffer.from(body.subarray(start, i)));
        inArg = false;
      }
    } else if (c !== SP) {
      if (args.length >= POP3_MAX_ARGS) return null;
      inArg = true;
      start = i;
    }
  }
  if (inArg) args.push(Buffer.from(body.subarray(start, i)));
  return args;
}

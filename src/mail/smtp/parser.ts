/**
 * The SMTP command parser (nginx's
 * ngx_mail_smtp_parse_command): one line at a time, incremental, pure.
 *
 * Two modes, as nginx's parser state after a command: `command` reads a
 * command word and up to 11 arguments; `response` (after AUTH, while a SASL
 * exchange runs) reads the whole line as arguments, with no command word.
 * Rules: docs/behaviour/smtp.md#smtp-3-command-syntax, #smtp-6-sasl-responses.
 */
import { asciiUpper } from "../line-bytes.js";

/** The command words nginx recognises. */
export type SmtpVerb = "HELO" | "EHLO" | "QUIT" | "AUTH" | "NOOP" | "MAIL" | "RSET" | "RCPT" | "VRFY" | "EXPN" | "HELP" | "STARTTLS";

/** What one call to `parse` found. */
export type SmtpParseResult =
  /** no complete line yet: call again with more bytes */
  | { readonly kind: "incomplete" }
  /** a syntax error; the line (through its LF) is skipped */
  | { readonly kind: "invalid"; readonly consumed: number }
  /**
   * a command; `line` is the raw text from the command word to the end of
   * its last argument (nginx's MAIL/RCPT line)
   */
  | { readonly kind: "command"; readonly verb: SmtpVerb; readonly args: readonly Buffer[]; readonly line: Buffer; readonly consumed: number }
  /** a SASL response line: its space-separated words (at least one, maybe empty) */
  | { readonly kind: "response"; readonly args: readonly Buffer[]; readonly consumed: number };

/** Which kind of line the session expects. */
export type SmtpParseMode = "command" | "response";

const VERBS: ReadonlyMap<string, SmtpVerb> = new Map(
  (["HELO", "EHLO", "QUIT", "AUTH", "NOOP", "MAIL", "RSET", "RCPT", "VRFY", "EXPN", "HELP", "STARTTLS"] as const).map((v) => [v, v]),
);

const SP = 0x20;
const CR = 0x0d;
const LF = 0x0a;
/** nginx starts a new argument only while it has at most 10. */
const MAX_ARGS = 11;

type ScanState = "command" | "invalid" | "spaces" | "argument" | "almostDone";

function isLetter(b: number): boolean {
  return (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a);
}

/**
 * Incremental parser. Between an `incomplete` result and the next call, the
 * input must keep its first bytes and may only grow (the session's buffer
 * does exactly that); the scan then resumes where it stopped.
 */
export class SmtpParser {
  #mode: SmtpParseMode = "command";
  #state: ScanState = "command";
  #pos = 0;
  #verb: SmtpVerb | undefined;
  #args: Array<readonly [number, number]> = [];
  #argStart = 0;

  /** The mode the next line is parsed in. */
  get mode(): SmtpParseMode {
    return this.#mode;
  }

  /** Sets the mode for the next line (and forgets any partial scan). */
  setMode(mode: SmtpParseMode): void {
    this.#mode = mode;
    this.#restart();
  }

  /** Parses the first line of `input`. */
  parse(input: Buffer): SmtpParseResult {
    if (input.length < this.#pos) this.#restart();
    for (let p = this.#pos; p < input.length; p++) {
      const ch = input[p]!;
      switch (this.#state) {
        case "command":
          if (ch === SP || ch === CR || ch === LF) {
            const verb = VERBS.get(asciiUpper(input.subarray(0, p)));
            if (!verb) return this.#invalid(input, p);
            this.#verb = verb;
            if (ch === SP) this.#state = "spaces";
            else if (ch === CR) this.#state = "almostDone";
            else return this.#done(input, p);
          } else if (!isLetter(ch)) {
            return this.#invalid(input, p);
          }
          break;
        case "invalid":
          return this.#invalid(input, p);
        case "spaces":
          if (ch === CR) this.#state = "almostDone";
          else if (ch === LF) return this.#done(input, p);
          else if (ch !== SP) {
            if (this.#args.length >= MAX_ARGS) return this.#invalid(input, p);
            this.#state = "argument";
            this.#argStart = p;
          }
          break;
        case "argument":
          if (ch === SP || ch === CR || ch === LF) {
            this.#args.push([this.#argStart, p]);
            if (ch === SP) this.#state = "spaces";
            else if (ch === CR) this.#state = "almostDone";
            else return this.#done(input, p);
          }
          break;
        case "almostDone":
          if (ch !== LF) return this.#invalid(input, p);
          return this.#done(input, p);
      }
    }
    this.#pos = input.length;
    return { kind: "incomplete" };
  }

  #restart(): void {
    this.#pos = 0;
    this.#verb = undefined;
    this.#args = [];
    this.#argStart = 0;
    this.#state = this.#mode === "command" ? "command" : "argument";
  }

  #done(input: Buffer, lf: number): SmtpParseResult {
    const args = this.#args.map(([s, e]) => Buffer.from(input.subarray(s, e)));
    const consumed = lf + 1;
    const verb = this.#verb;
    const lineEnd = this.#args.length > 0 ? this.#args[this.#args.length - 1]![1] : (verb?.length ?? 0);
    // nginx's parser goes on in argument mode after AUTH: the next line is a SASL response
    this.#mode = verb === "AUTH" || this.#mode === "response" ? "response" : "command";
    this.#restart();
    if (verb === undefined) return { kind: "response", args, consumed };
    return { kind: "command", verb, args, line: Buffer.from(input.subarray(0, lineEnd)), consumed };
  }

  /** Skips to the end of the line; incomplete until its LF arrives. */
  #invalid(input: Buffer, from: number): SmtpParseResult {
    const lf = input.indexOf(LF, from);
    if (lf < 0) {
      this.#state = "invalid";
      this.#pos = input.length;
      return { kind: "incomplete" };
    }
    this.#mode = "command";
    this.#restart();
    return { kind: "invalid", consumed: lf + 1 };
  }
}

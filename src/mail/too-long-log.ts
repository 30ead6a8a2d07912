/**
 * What the `client sent too long command "..."` line may quote. nginx logs
 * its whole command buffer, so a LOGIN line that overflowed it put the
 * password into the log at info. Postern quotes the buffer only up to the
 * name of the first authentication command in it: its arguments, literals
 * and SASL responses (which follow it in the same buffer) are never shown.
 *
 * Rule: docs/behaviour/session.md#session-5-too-long-commands.
 */
import { logEscape } from "../core/log.js";

const LF = 0x0a;
const SP = 0x20;
const CR = 0x0d;

/**
 * Where the authentication command word of one line ends (the line given
 * without its LF), or undefined when the line is no authentication command.
 */
export type AuthWordEnd = (line: Buffer) => number | undefined;

/** `buffer` cut right after the first authentication command's name. */
export function cutAtAuthCommand(buffer: Buffer, authWordEnd: AuthWordEnd): Buffer {
  let start = 0;
  while (start < buffer.length) {
    let lf = buffer.indexOf(LF, start);
    if (lf < 0) lf = buffer.length;
    const end = authWordEnd(buffer.subarray(start, lf));
    if (end !== undefined) return buffer.subarray(0, start + end);
    start = lf + 1;
  }
  return buffer;
}

/** The end of the word at `from` (up to SP, CR or LF). */
function wordEnd(line: Buffer, from: number): number {
  let i = from;
  while (i < line.length && line[i] !== SP && line[i] !== CR) i++;
  return i;
}

/** True when `word` is one of `names` (upper case), ASCII case-insensitively. */
function isOneOf(word: Buffer, names: ReadonlySet<string>): boolean {
  return word.length <= 12 && names.has(word.toString("latin1").toUpperCase());
}

/** A matcher for protocols whose lines start with the command word (POP3, SMTP). */
export function leadingWord(names: readonly string[]): AuthWordEnd {
  const set = new Set(names);
  return (line) => {
    const end = wordEnd(line, 0);
    return isOneOf(line.subarray(0, end), set) ? end : undefined;
  };
}

/** A matcher for IMAP lines: `tag SP+ command`. */
export function taggedWord(names: readonly string[]): AuthWordEnd {
  const set = new Set(names);
  return (line) => {
    let i = line.indexOf(SP);
    if (i < 0) return undefined;
    while (i < line.length && line[i] === SP) i++;
    const end = wordEnd(line, i);
    return isOneOf(line.subarray(i, end), set) ? end : undefined;
  };
}

/** The info line the session core logs when a command overflows the buffer. */
export function tooLongLogLine(quoted: Buffer): string {
  return `client sent too long command "${logEscape(quoted)}"`;
}

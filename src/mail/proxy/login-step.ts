/**
 * The shape of a backend login dialogue (protocols.md 9.4): a list of steps,
 * each "check the reply, then send this line (or finish)". The protocol files
 * build the list from the session's inputs; login-driver.ts runs it.
 */

/** What a reply check says about the bytes read so far. */
export type ReplyVerdict =
  | { readonly kind: "ok" }
  /** a complete but wrong reply; `from` is where nginx starts quoting it in the log */
  | { readonly kind: "invalid"; readonly from: number }
  /** wait for more bytes */
  | { readonly kind: "again" };

/** Checks a reply that already ends with CRLF and has at least 4 bytes. */
export type ReplyCheck = (buf: Buffer, len: number) => ReplyVerdict;

/** What happens once a step's reply is accepted. */
export type StepNext =
  /** send `line`, with `action` as the log action */
  | { readonly kind: "send"; readonly action: string; readonly line: Buffer }
  /** log `message` (error) under `action` and give the client the internal error */
  | { readonly kind: "fail"; readonly action: string; readonly message: string }
  /** logged in: give the client the backend's reply as read (`relay`) or nginx's own line */
  | { readonly kind: "done"; readonly reply: "relay" | Buffer };

/** One state of the dialogue. */
export interface LoginStep {
  /** A name for debugging (nginx's mail_state). */
  readonly state: string;
  readonly check: ReplyCheck;
  readonly next: StepNext;
}

/** The reply is the expected one. */
export const OK: ReplyVerdict = { kind: "ok" };
/** The reply is not complete yet. */
export const AGAIN: ReplyVerdict = { kind: "again" };
/** The reply is wrong; nginx quotes it from its start. */
export const INVALID: ReplyVerdict = { kind: "invalid", from: 0 };

/** A check that passes when the reply starts with `prefix`. */
export function startsWith(prefix: string): ReplyCheck {
  const want = Buffer.from(prefix, "latin1");
  return (buf, len) => (len >= want.length && buf.compare(want, 0, want.length, 0, want.length) === 0 ? OK : INVALID);
}

/**
 * The shape of a backend login dialogue: a list of steps,
 * each "check the reply, then send this line (or finish)". The protocol files
 * build the list from the session's inputs; login-driver.ts runs it.
 * Every line is built with `commandLine`, which refuses a value holding CR,
 * LF or NUL: the values come from the client and the auth server, and such
 * a byte would add a command of the sender's choosing.
 * Rules: docs/behaviour/session.md#session-9-backend-login,
 * #session-11-values-that-are-never-passed-on.
 */
import type { ServerConf } from "../../conf/directive.js";
import { hasLineBreakOrNul } from "../line-bytes.js";
import type { AuthMethod, SessionInfo } from "../types.js";

/**
 * What every protocol's backend login is built from once auth_http has
 * answered; the front end adds what its own dialogue learned (the IMAP
 * tag, SMTP's HELO and envelope) and picks its protocol's steps.
 */
export interface BackendLoginInput {
  /** Credentials after auth_http's Auth-User / Auth-Pass overrides. */
  readonly login: Buffer;
  /** Empty when there is none (EXTERNAL without Auth-Pass). */
  readonly password: Buffer;
  /** How the client authenticated; `none` = SMTP session started by RCPT TO. */
  readonly authMethod: AuthMethod;
  /** The auth service asked for a token login to the backend in this mechanism (login-oauth.ts). */
  readonly backendMechanism?: "oauthbearer" | "xoauth2" | undefined;
  /** The merged server configuration (the proxy module's directives). */
  readonly conf: ServerConf;
  /** The session's addresses (after realip) and what else auth_http was told. */
  readonly session: SessionInfo;
}

/** A value for a backend line held CR, LF or NUL; `what` names it for the log. */
export class UnsafeLineError extends Error {
  readonly what: string;
  constructor(what: string) {
    super(`${what} with CR, LF or NUL`);
    this.what = what;
  }
}

const CRLF = Buffer.from("\r\n", "latin1");

/** `parts` joined and ended with CRLF; throws UnsafeLineError if a part holds CR, LF or NUL. */
export function commandLine(what: string, ...parts: readonly (Buffer | string)[]): Buffer {
  const bytes = parts.map((p) => (typeof p === "string" ? Buffer.from(p, "latin1") : p));
  if (bytes.some(hasLineBreakOrNul)) throw new UnsafeLineError(what);
  return Buffer.concat([...bytes, CRLF]);
}

/** What a reply check says about the bytes read so far. */
export type ReplyVerdict =
  | { readonly kind: "ok" }
  /** a complete but wrong reply; `from` is where nginx starts quoting it in the log */
  | { readonly kind: "invalid"; readonly from: number }
  /** wait for more bytes */
  | { readonly kind: "again" }
  /** a complete reply that ends the login: `message` is logged at error (STARTTLS not offered, say) */
  | { readonly kind: "refuse"; readonly message: string };

/** Checks a reply that already ends with CRLF and has at least 4 bytes. */
export type ReplyCheck = (buf: Buffer, len: number) => ReplyVerdict;

/** What happens once a step's reply is accepted. */
export type StepNext =
  /** send `line`, with `action` as the log action */
  | { readonly kind: "send"; readonly action: string; readonly line: Buffer }
  /** log `message` (error) under `action` and give the client the internal error */
  | { readonly kind: "fail"; readonly action: string; readonly message: string }
  /** logged in: give the client the backend's reply as read (`relay`) or nginx's own line */
  | { readonly kind: "done"; readonly reply: "relay" | Buffer }
  /**
   * the backend agreed to STARTTLS: nothing may follow its reply; after the
   * handshake (login-starttls.ts, proxy-ssl/) send `then` on the TLS socket
   */
  | { readonly kind: "starttls"; readonly then: { readonly kind: "send"; readonly action: string; readonly line: Buffer } };

/** A move chosen from the reply itself (see LoginStep.decide). */
export interface StepDecision {
  readonly next: StepNext;
  /** Steps after this one to leave out (the ones for a command not sent). */
  readonly skip?: number;
  /** Logged at warn before the move. */
  readonly warn?: string;
}

/** One state of the dialogue. */
export interface LoginStep {
  /** A name for debugging (nginx's mail_state). */
  readonly state: string;
  readonly check: ReplyCheck;
  readonly next: StepNext;
  /**
   * When present, picks the move from the accepted reply instead of `next`:
   * a command is sent only if the backend offered it (POP3 XCLIENT).
   */
  readonly decide?: (reply: Buffer) => StepDecision;
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

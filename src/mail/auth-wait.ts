/**
 * `Auth-Wait`: how long a refused or told-to-wait client waits before the
 * session goes on. Node.js timers run at most 2^31 - 1 ms; a longer delay
 * fired after 1 ms, so a huge Auth-Wait meant no wait at all. The value is
 * clamped where it is parsed, and every wait timer is started through
 * `startAuthWait`, which clamps again.
 *
 * Rules: docs/behaviour/session.md#session-8-authentication-and-its-outcomes,
 * docs/behaviour/auth-http.md#ah-4-response-headers.
 */
import type { ConnectionLog } from "../core/log.js";
import { armTimer } from "./debug-log.js";
import type { FrontEnd } from "./front-end.js";
import type { AuthOutcome } from "./types.js";

/**
 * The longest `Auth-Wait` honoured, in seconds (24 days 20 h 31 min), the
 * longest a Node.js timer runs. nginx's millisecond timers take far longer
 * waits (about 2^63 ms); no client waits either out.
 */
export const MAX_AUTH_WAIT_SECONDS = Math.floor(0x7fffffff / 1000);

/** An `Auth-Wait` value in seconds, clamped; undefined when it is not all digits (nginx ignores it then). */
export function parseAuthWait(value: string): number | undefined {
  if (!/^[0-9]+$/.test(value)) return undefined;
  // past 10 digits it is over the maximum whatever it says (and past Number's precision)
  return value.length > 10 ? MAX_AUTH_WAIT_SECONDS : Math.min(Number(value), MAX_AUTH_WAIT_SECONDS);
}

/** An Auth-Wait in milliseconds for a timer, clamped to MAX_AUTH_WAIT_SECONDS. */
export function authWaitMs(seconds: number): number {
  return Math.min(seconds, MAX_AUTH_WAIT_SECONDS) * 1000;
}

/** Runs `fn` after `seconds` (clamped to MAX_AUTH_WAIT_SECONDS). */
export function startAuthWait(seconds: number, fn: () => void): NodeJS.Timeout {
  return setTimeout(fn, authWaitMs(seconds));
}

/** What the Auth-Wait timer acts on: the front end's refusal wording and the session's send. */
type WaitingFrontEnd = Pick<FrontEnd, "saslError" | "afterAuthFailure">;

/**
 * Waits out a refusal's `Auth-Wait`, then sends the refusal and lets the
 * session read on (`resume`). With Auth-Error-SASL the error goes out as the
 * mechanism's challenge instead, and the refusal follows the client's dummy
 * response (sasl-oauth.ts).
 */
export function armAuthWait(
  log: ConnectionLog,
  outcome: Extract<AuthOutcome, { kind: "refused" }>,
  reply: string | Buffer,
  frontEnd: WaitingFrontEnd,
  send: (reply: string | Buffer) => void,
  resume: () => void,
): NodeJS.Timeout {
  const saslError = outcome.saslError;
  return armTimer(log, "Auth-Wait", authWaitMs(outcome.wait ?? 0), () => {
    if (saslError !== undefined) {
      frontEnd.saslError(saslError, reply, !outcome.wait);
    } else {
      send(reply);
      frontEnd.afterAuthFailure();
    }
    resume();
  });
}

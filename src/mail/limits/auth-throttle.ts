/**
 * Authentication failure throttling around the auth_http call: before a
 * request, the failures counted for the client's address and for its login
 * decide whether it goes at once, after a delay, or not at all (the
 * protocol's temporary-failure reply, auth_http never asked); after it, a
 * refusal counts one failure for both. The counts live in the shared
 * limit store, so every worker sees the same; the login is keyed by an
 * HMAC, never stored.
 * Rules: docs/limits.md#authentication-failure-throttling.
 */
import { type ConnectionLog, LOG_LEVELS } from "../../core/log.js";
import { addressKey, limitStore, loginKey } from "../../event/limit-ipc.js";
import type { CancelSignal } from "../cancel.js";
import type { MailServer } from "../server.js";
import type { SessionServices } from "../session-services.js";
import type { AuthOutcome, Credentials, MailProtocolName, SessionInfo } from "../types.js";
import { type ThrottleConf, authFailLogLevel, authThrottle } from "./auth-fail-module.js";
import { countLimitHit } from "./limit-events.js";

/** What to do with an attempt after `failures` failures. */
export type ThrottleDecision = { readonly kind: "go" } | { readonly kind: "delay"; readonly ms: number } | { readonly kind: "refuse" };

/** The rule: refuse from refuse_after on; from delay_after on, delay doubling per failure, capped at max_delay. */
export function throttleDecision(failures: number, conf: ThrottleConf): ThrottleDecision {
  if (conf.refuseAfter > 0 && failures >= conf.refuseAfter) return { kind: "refuse" };
  if (failures < conf.delayAfter) return { kind: "go" };
  const doublings = Math.min(failures - conf.delayAfter, 30);
  return { kind: "delay", ms: Math.min(conf.delayMs * 2 ** doublings, conf.maxDelayMs) };
}

/** The temporary-failure refusal, per protocol: RFC 5530's [UNAVAILABLE], RFC 3206's [SYS/TEMP], SMTP's 454 4.7.0. */
export const THROTTLE_REFUSALS: Readonly<Record<MailProtocolName, { message: string; errorCode?: string }>> = {
  imap: { message: "[UNAVAILABLE] Too many authentication failures, try later" },
  pop3: { message: "[SYS/TEMP] Too many authentication failures, try later" },
  smtp: { message: "Too many authentication failures, try later", errorCode: "454 4.7.0" },
};

/** Waits `ms`, or less if the session goes away; true when the wait ran out. */
function pause(ms: number, signal: CancelSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

type Authenticate = SessionServices["authenticate"];

/** Wraps an auth_http call with the server's throttle; servers without one call straight through. */
export function throttled(authenticate: Authenticate): Authenticate {
  return (server: MailServer, info: SessionInfo, credentials: Credentials, attempt: number, log: ConnectionLog, signal: CancelSignal): Promise<AuthOutcome> => {
    const conf = authThrottle(server);
    // SMTP's `smtp_auth none` (a session started by RCPT) presents no credentials: nothing to throttle
    if (!conf || credentials.method === "none") return authenticate(server, info, credentials, attempt, log, signal);
    return throttledAttempt(conf, authenticate, server, info, credentials, attempt, log, signal);
  };
}

async function throttledAttempt(
  conf: NonNullable<ReturnType<typeof authThrottle>>,
  authenticate: Authenticate,
  server: MailServer,
  info: SessionInfo,
  credentials: Credentials,
  attempt: number,
  log: ConnectionLog,
  signal: CancelSignal,
): Promise<AuthOutcome> {
  const store = limitStore();
  const zone = conf.failZone;
  // an empty login (AUTH PLAIN with none, EXTERNAL without an identity) is no one's: counting it would make one key of every client's
  const keys = credentials.login.length > 0 ? [addressKey(info.clientAddr), await loginKey(credentials.login)] : [addressKey(info.clientAddr)];
  const failures = await store.failures(zone, keys);
  const decision = throttleDecision(failures, conf);
  const hit = { zone: zone.name, protocol: server.protocol };
  // as limit_req: refusals at the level, delays one level lower
  const level = server.conf.get(authFailLogLevel);
  if (decision.kind === "refuse") {
    log.write(level, `limiting authentication, failures: ${failures} by zone "${zone.name}"`);
    countLimitHit(log, { kind: "auth_refuse", ...hit });
    return { kind: "refused", ...THROTTLE_REFUSALS[server.protocol], throttled: true };
  }
  if (decision.kind === "delay") {
    log.write(LOG_LEVELS[LOG_LEVELS.indexOf(level) + 1]!, `delaying authentication for ${decision.ms}ms, failures: ${failures} by zone "${zone.name}"`);
    countLimitHit(log, { kind: "auth_delay", ...hit });
    // a session that went away meanwhile is answered by nobody: auth_http is not asked for it
    if (!(await pause(decision.ms, signal))) return { kind: "error" };
  }
  const outcome = await authenticate(server, info, credentials, attempt, log, signal);
  if (outcome.kind === "refused") await store.recordFailure(zone, keys);
  return outcome;
}

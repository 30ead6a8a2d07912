/**
 * Auth-Error-SASL (nginx PR #1590) applied to an auth_http outcome. For an
 * OAuth login (OAUTHBEARER, XOAUTH2) a refusal may carry it: it must be
 * padded base64 (it goes to the client inside a challenge line), else the
 * answer is an invalid header's internal error. On a success it is the auth
 * service's error (RFC 7628 has no error after success): internal error,
 * logged. Other logins ignore the header, as nginx 1.22.1 does.
 * Rule: docs/oauth.md#auth-error-sasl.
 */
import { logEscape } from "../../core/log.js";
import type { ConnectionLog } from "../../core/log.js";
import { validSaslErrorHeader } from "../sasl-oauth.js";
import type { AuthMethod, AuthOutcome } from "../types.js";

/** The Auth-Method values of the OAuth mechanisms. */
export function isOauthMethod(method: AuthMethod): boolean {
  return method === "oauthbearer" || method === "xoauth2";
}

/** Longest Auth-Error-SASL passed on (the response block holds 1024 bytes anyway). */
export const MAX_SASL_ERROR_LENGTH = 1000;

/** The outcome with Auth-Error-SASL checked (`saslError`) or turned into an error. */
export function applySaslError(outcome: AuthOutcome, method: AuthMethod, peer: string, log: ConnectionLog): AuthOutcome {
  if (outcome.kind === "ok" && outcome.backendMethod !== undefined) return applyBackendMethod(outcome, peer, log);
  if (outcome.kind === "error" || outcome.authErrorSasl === undefined) return outcome;
  const { authErrorSasl: header, ...rest } = outcome;
  if (!isOauthMethod(method)) return rest;
  if (outcome.kind === "ok") {
    log.write("error", `auth http server ${peer} returned SASL error to auth success`);
    return { kind: "error" };
  }
  if (header.length > MAX_SASL_ERROR_LENGTH || !validSaslErrorHeader(header)) {
    log.write("error", `auth http server ${peer} sent invalid Auth-Error-SASL:"${logEscape(header.subarray(0, 64))}"`);
    return { kind: "error" };
  }
  return { ...rest, saslError: header.toString("latin1") } as AuthOutcome;
}

/**
 * An OK answer's `Auth-Method`: `oauthbearer` or `xoauth2` logs in to the
 * backend with the token (Auth-Pass) in that mechanism; `plain` (or none)
 * is the usual login; anything else is an invalid header.
 */
function applyBackendMethod(outcome: Extract<AuthOutcome, { kind: "ok" }>, peer: string, log: ConnectionLog): AuthOutcome {
  const { backendMethod, ...rest } = outcome;
  const value = backendMethod!.toString("latin1");
  if (rest.authErrorSasl !== undefined) return applySaslError(rest, "oauthbearer", peer, log);
  if (value === "plain") return rest;
  if (value === "oauthbearer" || value === "xoauth2") return { ...rest, backendMechanism: value };
  log.write("error", `auth http server ${peer} sent invalid Auth-Method:"${logEscape(backendMethod!.subarray(0, 64))}"`);
  return { kind: "error" };
}

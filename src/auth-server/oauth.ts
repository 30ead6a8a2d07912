/**
 * The auth service's answer to an OAuth login (`Auth-Method: oauthbearer`
 * or `xoauth2`, the token in Auth-Pass, as nginx PR #1590 and Postern send
 * them): the token is verified (a JWT against the JWKS file, else the
 * introspection endpoint), its mailbox claim must name a user of the users
 * file (for the backend) and match the client's authorization identity
 * when it sent one. A refusal carries Auth-Error-SASL, RFC 7628 §3.2.2's
 * JSON error, which the proxy sends as the challenge before its refusal.
 * The token is never logged.
 * Rule: docs/auth-server.md#oauth-bearer-tokens.
 */
import { type IntrospectionSettings, introspect } from "./introspect.js";
import { type JwksKeys, type JwtPolicy, MAX_TOKEN_LENGTH } from "./jwt.js";
import type { Backend, UserEntry } from "./users.js";
import { backendFor } from "./users.js";

/** How tokens are verified: a JWKS, an introspection endpoint, or both (JWTs first). */
export interface OauthSettings {
  readonly jwks?: JwksKeys | undefined;
  readonly introspection?: IntrospectionSettings | undefined;
  readonly policy: JwtPolicy;
}

/** RFC 7628 §3.2.2's error for a token that is not accepted, base64 as Auth-Error-SASL carries it. */
export const INVALID_TOKEN_SASL_ERROR = Buffer.from(JSON.stringify({ status: "invalid_token", schemes: "bearer" }), "utf8").toString("base64");

/** What the service's own reply builders do (server.ts). */
export interface OauthReplies {
  refuse(reason: string, message?: string, smtpCode?: string): readonly (readonly [string, string])[];
  ok(backend: Backend, pass: Buffer | undefined): readonly (readonly [string, string])[];
  temporary(reason: string): readonly (readonly [string, string])[];
}

/** The reply to one OAuth login. */
export async function answerOauth(
  settings: OauthSettings,
  token: string,
  login: string,
  protocol: string,
  users: ReadonlyMap<string, UserEntry>,
  replies: OauthReplies,
): Promise<readonly (readonly [string, string])[]> {
  const refuse = (reason: string): readonly (readonly [string, string])[] => [...replies.refuse(reason), ["Auth-Error-SASL", INVALID_TOKEN_SASL_ERROR]];
  const now = Date.now() / 1000;
  let verdict: Awaited<ReturnType<typeof introspect>> | undefined;
  if (token.length > MAX_TOKEN_LENGTH) return refuse("token too long");
  // a JWT is tried against the key set; anything else (or a JWT it does not verify) goes to introspection when configured
  if (settings.jwks) verdict = settings.jwks.verify(token, settings.policy, now);
  if ((!verdict || !verdict.ok) && settings.introspection) verdict = await introspect(token, settings.introspection, settings.policy, now);
  if (!verdict) return refuse("no token verifier");
  if (!verdict.ok) return "temporary" in verdict ? replies.temporary(verdict.reason) : refuse(`token refused: ${verdict.reason}`);
  const mailbox = verdict.mailbox;
  if (login !== "" && login !== mailbox) return refuse(`token is for another mailbox`);
  const user = users.get(mailbox);
  if (!user) return refuse("token's mailbox is not in the users file");
  const backend = backendFor(user, protocol);
  if (!backend) return replies.refuse(`no backend for protocol "${protocol}"`, "No mail server for this account", "454 4.7.0");
  // the backend logs in as the mailbox, with the stored clear secret when there is one (else the token)
  return [...replies.ok(backend, user.clear), ["Auth-User", mailbox]];
}

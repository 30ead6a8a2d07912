/**
 * OAuth 2.0 token introspection (RFC 7662): the token is POSTed to the
 * authorization server's endpoint, authenticated with the client's id and
 * secret (HTTP Basic, RFC 7662 §2.1), and the answer must say
 * `"active": true`; its claims then pass the same exp/nbf/iss/aud and
 * mailbox checks as a JWT's (jwt.ts). Bounded in time and size; a failing
 * endpoint is a temporary error, not a refusal.
 * Rule: docs/auth-server.md#oauth-bearer-tokens.
 */
import { type JwtPolicy, type TokenVerdict, checkClaims } from "./jwt.js";

/** Where and how to ask. */
export interface IntrospectionSettings {
  readonly url: string;
  /** `client_id:client_secret`, sent as HTTP Basic; undefined sends none. */
  readonly clientCredentials?: string | undefined;
  readonly timeoutMs: number;
}

/** Longest introspection answer read. */
const MAX_ANSWER = 64 * 1024;

/** The verdict, or `temporary` when the endpoint could not answer. */
export type IntrospectionVerdict = TokenVerdict | { readonly ok: false; readonly temporary: true; readonly reason: string };

/** Asks the endpoint about `token`. */
export async function introspect(token: string, settings: IntrospectionSettings, policy: JwtPolicy, nowSeconds: number): Promise<IntrospectionVerdict> {
  const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded", accept: "application/json" };
  if (settings.clientCredentials !== undefined) headers.authorization = `Basic ${Buffer.from(settings.clientCredentials, "utf8").toString("base64")}`;
  let text: string;
  try {
    const res = await fetch(settings.url, {
      method: "POST",
      headers,
      body: new URLSearchParams({ token, token_type_hint: "access_token" }).toString(),
      signal: AbortSignal.timeout(settings.timeoutMs),
      redirect: "error",
    });
    if (res.status !== 200) return { ok: false, temporary: true, reason: `introspection endpoint answered ${res.status}` };
    text = await res.text();
  } catch (e) {
    return { ok: false, temporary: true, reason: `introspection endpoint unreachable: ${(e as Error).message}` };
  }
  if (text.length > MAX_ANSWER) return { ok: false, temporary: true, reason: "introspection answer too large" };
  let answer: unknown;
  try {
    answer = JSON.parse(text);
  } catch {
    return { ok: false, temporary: true, reason: "introspection answer is not JSON" };
  }
  if (answer === null || typeof answer !== "object" || Array.isArray(answer))
    return { ok: false, temporary: true, reason: "introspection answer is not an object" };
  const claims = answer as Record<string, unknown>;
  if (claims.active !== true) return { ok: false, reason: "token not active" };
  return checkClaims(claims, policy, nowSeconds);
}

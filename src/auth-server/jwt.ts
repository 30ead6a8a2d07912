/**
 * JWT access tokens (RFC 7519, RFC 9068) checked against a JWKS file
 * (RFC 7517) with node:crypto only: RS256, ES256 and EdDSA signatures
 * (never `none`, never HMAC: a public key must not double as a shared
 * secret), the key's type bound to the algorithm, then `exp` (required),
 * `nbf`, `iss` and `aud`, and the configured claim read as the mailbox.
 * Nothing here logs: the caller logs the reason, never the token.
 * Rule: docs/auth-server.md#oauth-bearer-tokens.
 */
import { type KeyObject, createPublicKey, verify } from "node:crypto";

/** What a verified token says. */
export type TokenVerdict = { readonly ok: true; readonly mailbox: string } | { readonly ok: false; readonly reason: string };

/** The checks besides the signature. */
export interface JwtPolicy {
  /** Required `iss`, when set. */
  readonly issuer?: string | undefined;
  /** Required member of `aud`, when set. */
  readonly audience?: string | undefined;
  /** The claim holding the mailbox (default `email`). */
  readonly userClaim: string;
  /** Clock skew allowed for exp and nbf, seconds. */
  readonly leewaySeconds: number;
}

/** One usable key of the set. */
interface Jwk {
  readonly kid: string | undefined;
  readonly alg: "RS256" | "ES256" | "EdDSA";
  readonly key: KeyObject;
}

/** Longest token looked at (a JWT is a few hundred bytes to a few kB). */
export const MAX_TOKEN_LENGTH = 8192;

/** A JWKS file's keys; keys of other types or uses are skipped, a set without a usable key is an error. */
export class JwksKeys {
  readonly #keys: readonly Jwk[];

  private constructor(keys: readonly Jwk[]) {
    this.#keys = keys;
  }

  /** Parses a JWKS document; throws with a reason when it holds no usable key. */
  static parse(text: string): JwksKeys {
    const doc = JSON.parse(text) as unknown;
    const list = (doc as { keys?: unknown }).keys;
    if (!Array.isArray(list)) throw new Error('no "keys" array');
    const keys: Jwk[] = [];
    for (const entry of list as unknown[]) {
      const jwk = usableKey(entry);
      if (jwk) keys.push(jwk);
    }
    if (keys.length === 0) throw new Error("no RS256, ES256 or EdDSA signing key");
    return new JwksKeys(keys);
  }

  get size(): number {
    return this.#keys.length;
  }

  /** Verifies `token` now (`nowSeconds`, Unix time). */
  verify(token: string, policy: JwtPolicy, nowSeconds: number): TokenVerdict {
    if (token.length > MAX_TOKEN_LENGTH) return fail("token too long");
    const parts = token.split(".");
    if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]+$/.test(p))) return fail("not a JWS compact serialization");
    const header = jsonPart(parts[0]!);
    const claims = jsonPart(parts[1]!);
    if (!header || !claims) return fail("header or claims not a JSON object");
    const alg = header.alg;
    if (alg !== "RS256" && alg !== "ES256" && alg !== "EdDSA") return fail(`algorithm ${JSON.stringify(alg)} not accepted`);
    if (header.crit !== undefined) return fail("critical header parameters not supported");
    const kid = typeof header.kid === "string" ? header.kid : undefined;
    const candidates = this.#keys.filter((k) => k.alg === alg && (kid === undefined || k.kid === undefined || k.kid === kid));
    const data = Buffer.from(`${parts[0]}.${parts[1]}`, "latin1");
    const signature = Buffer.from(parts[2]!, "base64url");
    if (!candidates.some((k) => checkSignature(k, data, signature))) return fail("signature not verified by any key");
    return checkClaims(claims, policy, nowSeconds);
  }
}

function fail(reason: string): TokenVerdict {
  return { ok: false, reason };
}

function jsonPart(part: string): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(Buffer.from(part, "base64url").toString("utf8")) as unknown;
    return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The key of a JWK entry when it can sign with one accepted algorithm. */
function usableKey(entry: unknown): Jwk | undefined {
  if (entry === null || typeof entry !== "object") return undefined;
  const e = entry as Record<string, unknown>;
  if (e.use !== undefined && e.use !== "sig") return undefined;
  // a private part is never needed: refuse a file that leaks one
  if (e.d !== undefined) throw new Error("the JWKS holds a private key");
  const alg =
    e.kty === "RSA"
      ? "RS256"
      : e.kty === "EC" && e.crv === "P-256"
        ? "ES256"
        : e.kty === "OKP" && (e.crv === "Ed25519" || e.crv === "Ed448")
          ? "EdDSA"
          : undefined;
  if (!alg || (e.alg !== undefined && e.alg !== alg)) return undefined;
  try {
    const key = createPublicKey({ key: e as never, format: "jwk" });
    return { kid: typeof e.kid === "string" ? e.kid : undefined, alg, key };
  } catch {
    return undefined;
  }
}

function checkSignature(k: Jwk, data: Buffer, signature: Buffer): boolean {
  try {
    if (k.alg === "RS256") return verify("sha256", data, k.key, signature);
    if (k.alg === "ES256") return signature.length === 64 && verify("sha256", data, { key: k.key, dsaEncoding: "ieee-p1363" }, signature);
    return verify(null, data, k.key, signature);
  } catch {
    return false;
  }
}

/** exp, nbf, iss, aud and the mailbox claim (shared with introspection answers). */
export function checkClaims(claims: Record<string, unknown>, policy: JwtPolicy, now: number): TokenVerdict {
  const exp = claims.exp;
  if (typeof exp !== "number" || !Number.isFinite(exp)) return fail("no exp claim");
  if (now > exp + policy.leewaySeconds) return fail("token expired");
  const nbf = claims.nbf;
  if (nbf !== undefined && (typeof nbf !== "number" || now + policy.leewaySeconds < nbf)) return fail("token not yet valid");
  if (policy.issuer !== undefined && claims.iss !== policy.issuer) return fail("wrong issuer");
  if (policy.audience !== undefined) {
    const aud = claims.aud;
    const list = Array.isArray(aud) ? aud : [aud];
    if (!list.includes(policy.audience)) return fail("wrong audience");
  }
  const mailbox = claims[policy.userClaim];
  // visible ASCII only: it becomes the Auth-User header and the backend's login line
  if (typeof mailbox !== "string" || !/^[\x21-\x7e]{1,255}$/.test(mailbox)) return fail(`no usable ${policy.userClaim} claim`);
  return { ok: true, mailbox };
}

/**
 * Test-time OAuth material: key pairs (RS256, ES256, EdDSA) made with
 * node:crypto, their public JWKS, and signed JWT access tokens.
 */
import { type KeyObject, generateKeyPairSync, sign } from "node:crypto";

/** One signing key. */
export interface TestKey {
  readonly alg: "RS256" | "ES256" | "EdDSA";
  readonly kid: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

/** A fresh key for `alg`. */
export function makeKey(alg: TestKey["alg"], kid = `${alg.toLowerCase()}-key`): TestKey {
  const pair =
    alg === "RS256"
      ? generateKeyPairSync("rsa", { modulusLength: 2048 })
      : alg === "ES256"
        ? generateKeyPairSync("ec", { namedCurve: "P-256" })
        : generateKeyPairSync("ed25519");
  return { alg, kid, ...pair };
}

/** The public JWKS document of `keys`. */
export function jwks(keys: readonly TestKey[]): string {
  return JSON.stringify({ keys: keys.map((k) => ({ ...k.publicKey.export({ format: "jwk" }), kid: k.kid, use: "sig", alg: k.alg })) });
}

const b64url = (v: unknown): string => Buffer.from(JSON.stringify(v), "utf8").toString("base64url");

/** A signed JWT with `claims` (header overrides in `header`). */
export function signJwt(key: TestKey, claims: Record<string, unknown>, header: Record<string, unknown> = {}): string {
  const input = `${b64url({ alg: key.alg, typ: "at+jwt", kid: key.kid, ...header })}.${b64url(claims)}`;
  const data = Buffer.from(input, "latin1");
  const signature =
    key.alg === "RS256"
      ? sign("sha256", data, key.privateKey)
      : key.alg === "ES256"
        ? sign("sha256", data, { key: key.privateKey, dsaEncoding: "ieee-p1363" })
        : sign(null, data, key.privateKey);
  return `${input}.${signature.toString("base64url")}`;
}

/** Claims valid for an hour from now for `mailbox`. */
export function validClaims(mailbox: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return { iss: "https://issuer.example", aud: "mail", sub: "u1", email: mailbox, iat: now, nbf: now - 5, exp: now + 3600, ...extra };
}

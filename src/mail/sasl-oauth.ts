/**
 * The OAuth SASL mechanisms' client responses, parsed strictly:
 *
 *   OAUTHBEARER (RFC 7628 §3.1):
 *     `n,` [`a=` saslname] `,` %x01 *(key `=` value %x01) %x01
 *   XOAUTH2 (Google's XOAUTH2 protocol document):
 *     `user=` name %x01 *(key `=` value %x01) %x01
 *
 * The pairs are `auth=Bearer <token>` (required, once) and, as RFC 7628
 * and curl send them, `host=` and `port=` (optional, once each; read and
 * not used). Any other key, a repeated key, a channel-binding flag other
 * than `n`, a saslname with a bare `=` or `,`, a control byte in the user, a token outside RFC 6750's
 * b64token syntax, or a CR, LF or NUL anywhere is refused: the user name
 * reaches the auth service's Auth-User and the backend's login line.
 *
 * The token goes to the auth service as Auth-Pass (nginx PR #1590's
 * interface); it is a secret and never appears in a log line built here.
 * Rule: docs/behaviour/session.md#session-12-sasl-mechanisms-and-steps,
 * docs/oauth.md.
 */
import { hasLineBreakOrNul } from "./line-bytes.js";
import { decodeBase64Strict, type SaslResult } from "./sasl.js";

/** The two OAuth mechanisms, as `*_auth` and Auth-Method name them. */
export type OauthMechanism = "oauthbearer" | "xoauth2";

/** What an OAuth client response carries. */
export interface OauthResponse {
  /** The authorization identity (OAUTHBEARER `a=`, XOAUTH2 `user=`), decoded; may be empty. */
  readonly user: Buffer;
  /** The bearer token (without `Bearer `). */
  readonly token: Buffer;
}

const SOH = 0x01;
const COMMA = 0x2c;
const EQUALS = 0x3d;

/** RFC 6750 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=". */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
/** RFC 7628 value: *(VCHAR / SP / HTAB) here (CR and LF are refused). */
const KV_VALUE = /^[\x21-\x7e \t]*$/;
const PORT = /^[0-9]{1,5}$/;
const BEARER = /^bearer +/i;

function refused(mechanism: OauthMechanism, what: string): { ok: false; log: string } {
  return { ok: false, log: `client sent invalid ${what} in AUTH ${mechanism.toUpperCase()} command` };
}

/** C0 controls and DEL: never part of a user name passed on. */
function isControl(c: number): boolean {
  return c < 0x20 || c === 0x7f;
}

/** Decodes a GS2 saslname (`=2C` is `,`, `=3D` is `=`); null when a bare `=` or `,` is in it. */
export function decodeSaslname(raw: Buffer): Buffer | null {
  const out: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === COMMA || isControl(c)) return null;
    if (c !== EQUALS) {
      out.push(c);
      continue;
    }
    const code = raw.toString("latin1", i + 1, i + 3).toUpperCase();
    if (code === "2C") out.push(COMMA);
    else if (code === "3D") out.push(EQUALS);
    else return null;
    i += 2;
  }
  return Buffer.from(out);
}

/**
 * The `key=value^A` pairs after the header, up to the final `^A`; returns
 * the token or a refusal. `rest` must end with the empty pair's `^A`.
 */
function bearerToken(rest: Buffer, mechanism: OauthMechanism): SaslResult<Buffer> {
  if (rest.length === 0 || rest[rest.length - 1] !== SOH) return refused(mechanism, "message");
  const body = rest.subarray(0, rest.length - 1);
  // every pair ends with ^A: the body is pairs joined by ^A, plus a trailing ^A
  if (body.length === 0 || body[body.length - 1] !== SOH) return refused(mechanism, "message");
  const pairs = body
    .subarray(0, body.length - 1)
    .toString("latin1")
    .split("\x01");
  const seen = new Set<string>();
  let token: string | undefined;
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) return refused(mechanism, "message");
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    if (seen.has(key) || !KV_VALUE.test(value)) return refused(mechanism, "message");
    seen.add(key);
    if (key === "host") continue;
    if (key === "port") {
      if (!PORT.test(value)) return refused(mechanism, "message");
      continue;
    }
    if (key !== "auth") return refused(mechanism, "message");
    const bearer = BEARER.exec(value);
    if (!bearer) return refused(mechanism, "token");
    token = value.slice(bearer[0].length);
    if (!B64TOKEN.test(token)) return refused(mechanism, "token");
  }
  if (token === undefined) return refused(mechanism, "token");
  return { ok: true, value: Buffer.from(token, "latin1") };
}

/** Parses a decoded OAUTHBEARER response (`n,a=user,^Aauth=Bearer T^A^A`). */
export function parseOauthbearer(decoded: Buffer): SaslResult<OauthResponse> {
  if (hasLineBreakOrNul(decoded)) return refused("oauthbearer", "message");
  // gs2-header: "n," [ "a=" saslname ] ","; Postern offers no channel binding
  if (decoded.length < 3 || decoded[0] !== 0x6e || decoded[1] !== COMMA) return refused("oauthbearer", "message");
  const end = decoded.indexOf(COMMA, 2);
  if (end < 0 || decoded[end + 1] !== SOH) return refused("oauthbearer", "message");
  let user: Buffer = Buffer.alloc(0);
  if (end > 2) {
    if (decoded[2] !== 0x61 || decoded[3] !== EQUALS || end === 4) return refused("oauthbearer", "login");
    const name = decodeSaslname(decoded.subarray(4, end));
    if (!name) return refused("oauthbearer", "login");
    user = name;
  }
  const token = bearerToken(decoded.subarray(end + 2), "oauthbearer");
  return token.ok ? { ok: true, value: { user, token: token.value } } : token;
}

/** Parses a decoded XOAUTH2 response (`user=NAME^Aauth=Bearer T^A^A`). */
export function parseXoauth2(decoded: Buffer): SaslResult<OauthResponse> {
  if (hasLineBreakOrNul(decoded)) return refused("xoauth2", "message");
  const prefix = Buffer.from("user=", "latin1");
  if (decoded.length < prefix.length || decoded.compare(prefix, 0, prefix.length, 0, prefix.length) !== 0) return refused("xoauth2", "login");
  const end = decoded.indexOf(SOH, prefix.length);
  if (end < 0) return refused("xoauth2", "message");
  const user = Buffer.from(decoded.subarray(prefix.length, end));
  if (user.some(isControl)) return refused("xoauth2", "login");
  const token = bearerToken(decoded.subarray(end + 1), "xoauth2");
  return token.ok ? { ok: true, value: { user, token: token.value } } : token;
}

/** Decodes the base64 response, then parses it for `mechanism`. */
export function saslOauth(b64: Buffer, mechanism: OauthMechanism): SaslResult<OauthResponse> {
  const decoded = decodeBase64Strict(b64);
  if (!decoded) return { ok: false, log: `client sent invalid base64 encoding in AUTH ${mechanism.toUpperCase()} command` };
  return mechanism === "oauthbearer" ? parseOauthbearer(decoded) : parseXoauth2(decoded);
}

/**
 * RFC 7628 §3.2.3: after the server's error challenge the client sends a
 * dummy response, `%x01` (base64 `AQ==`); an empty line is taken too, as
 * nginx PR #1590 takes it (and Google's XOAUTH2 clients send it).
 */
export function isSaslErrorAck(line: Buffer): boolean {
  if (line.length === 0) return true;
  const decoded = decodeBase64Strict(line);
  return decoded !== null && decoded.length === 1 && decoded[0] === SOH;
}

/**
 * Checks an Auth-Error-SASL value from the auth service: strict padded
 * base64 (it is sent to the client as is, inside a challenge line).
 */
export function validSaslErrorHeader(value: Buffer): boolean {
  if (value.length === 0 || value.length % 4 !== 0) return false;
  return /^[A-Za-z0-9+/]+={0,2}$/.test(value.toString("latin1"));
}

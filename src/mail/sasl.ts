/**
 * SASL for the three front ends, in one place: the mechanism table (what
 * AUTH / AUTHENTICATE may name), the step table (what each client response
 * line means), strict base64 as nginx decodes it, and the salt.
 *
 * The front ends only frame the challenges (`+ ` in IMAP and POP3, `334 `
 * in SMTP); the dispatcher (dispatch.ts) drives the exchange. Adding a
 * mechanism is one entry in SASL_MECHANISMS, its steps in SASL_STEPS, and
 * the protocols' capability words in their module.ts.
 *
 * Each decoder returns the value or nginx's info-level log line. A login or
 * password holding CR, LF or NUL is refused here, like a bad encoding: it
 * would reach the auth server and the backend's login lines.
 * Rules: docs/behaviour/session.md#session-12-sasl-mechanisms-and-steps,
 * #session-11-values-that-are-never-passed-on.
 */
import { randomInt } from "node:crypto";
import { hasLineBreakOrNul } from "./line-bytes.js";
import { saslOauth } from "./sasl-oauth.js";
import type { Credentials } from "./types.js";

/** The outcome of decoding one client response; a failure may still name the login, for the log. */
export type SaslResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly log: string; readonly login?: Buffer };

/** The client response lines a SASL exchange reads, one per step. */
export type SaslStep = "plain" | "loginUsername" | "loginPassword" | "cramMd5" | "external" | "oauthbearer" | "xoauth2" | "saslErrorAck";

/** The mechanisms a `*_auth` directive must name before they are taken. */
export type SaslOption = "cram-md5" | "external" | "oauthbearer" | "xoauth2";

/** One mechanism as AUTH (POP3, SMTP) and AUTHENTICATE (IMAP) offer it. */
export interface SaslMechanism {
  /**
   * The `*_auth` method that must be enabled for it. nginx takes PLAIN and
   * LOGIN whatever the list says; Postern also requires `external` for
   * EXTERNAL with an initial response (nginx takes that always).
   */
  readonly enabledBy?: SaslOption;
  /** The client may send its first response with the command (RFC 4959). */
  readonly initialResponse: boolean;
  /** The first challenge, base64 (empty: PLAIN's bare `+ `). */
  challenge(salt: () => string): string;
  /** The step that reads the first response. */
  readonly step: SaslStep;
}

/** Mechanism names, upper case (the client's are matched ASCII case-insensitively). */
export const SASL_MECHANISMS: ReadonlyMap<string, SaslMechanism> = new Map<string, SaslMechanism>([
  ["PLAIN", { initialResponse: true, challenge: () => "", step: "plain" }],
  ["LOGIN", { initialResponse: true, challenge: () => USERNAME_CHALLENGE, step: "loginUsername" }],
  ["CRAM-MD5", { enabledBy: "cram-md5", initialResponse: false, challenge: (salt) => cramMd5Challenge(salt()), step: "cramMd5" }],
  ["EXTERNAL", { enabledBy: "external", initialResponse: true, challenge: () => USERNAME_CHALLENGE, step: "external" }],
  // RFC 7628 and Google's XOAUTH2: an empty first challenge, as nginx PR #1590 sends it
  ["OAUTHBEARER", { enabledBy: "oauthbearer", initialResponse: true, challenge: () => "", step: "oauthbearer" }],
  ["XOAUTH2", { enabledBy: "xoauth2", initialResponse: true, challenge: () => "", step: "xoauth2" }],
]);

/** What one response line leads to. */
export type SaslStepResult =
  /** another challenge; `login` is what the exchange knows of the user so far */
  | { readonly kind: "challenge"; readonly text: string; readonly step: SaslStep; readonly login: Buffer }
  | { readonly kind: "credentials"; readonly credentials: Credentials }
  /** refused with nginx's info line; `login` when nginx had already taken the name (its log shows it) */
  | { readonly kind: "failed"; readonly log: string; readonly login?: Buffer | undefined };

/** What a step may read of the exchange so far. */
export interface SaslExchange {
  /** The name an earlier step took (LOGIN's user name). */
  readonly login: Buffer;
  /** The session's salt (CRAM-MD5). */
  salt(): string;
}

const EMPTY = Buffer.alloc(0);

function credentials(c: Credentials): SaslStepResult {
  return { kind: "credentials", credentials: c };
}

function decoded<T>(result: SaslResult<T>, next: (value: T) => SaslStepResult): SaslStepResult {
  return result.ok ? next(result.value) : { kind: "failed", log: result.log, login: result.login };
}

/** The step table: each response line, decoded and checked, to its next move. */
export const SASL_STEPS: Readonly<Record<SaslStep, (response: Buffer, exchange: SaslExchange) => SaslStepResult>> = {
  plain: (r) => decoded(saslPlain(r), (v) => credentials({ method: "plain", login: v.login, password: v.password })),
  loginUsername: (r) => decoded(saslLoginUsername(r), (login) => ({ kind: "challenge", text: PASSWORD_CHALLENGE, step: "loginPassword", login })),
  loginPassword: (r, x) => decoded(saslLoginPassword(r), (password) => credentials({ method: "plain", login: x.login, password })),
  cramMd5: (r, x) => decoded(saslCramMd5(r), (v) => credentials({ method: "cram-md5", login: v.login, password: v.digest, salt: x.salt() })),
  external: (r) => decoded(saslExternal(r), (login) => credentials({ method: "external", login, password: EMPTY })),
  // the token is the password auth_http sends (Auth-Pass), as nginx PR #1590 does
  oauthbearer: (r) => decoded(saslOauth(r, "oauthbearer"), (v) => credentials({ method: "oauthbearer", login: v.user, password: v.token })),
  xoauth2: (r) => decoded(saslOauth(r, "xoauth2"), (v) => credentials({ method: "xoauth2", login: v.user, password: v.token })),
  // the dispatcher answers this step itself (the response after an Auth-Error-SASL challenge)
  saslErrorAck: () => ({ kind: "failed", log: "unexpected SASL error acknowledgement" }),
};

/** base64("Username:"), the LOGIN and EXTERNAL first challenge. */
export const USERNAME_CHALLENGE = "VXNlcm5hbWU6";
/** base64("Password:"), the LOGIN second challenge. */
export const PASSWORD_CHALLENGE = "UGFzc3dvcmQ6";

const EQUALS = 0x3d;
const DECODE = new Int8Array(256).fill(-1);
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".split("").forEach((c, i) => {
  DECODE[c.charCodeAt(0)] = i;
});

/**
 * Decodes base64 as nginx does: stops at the first `=`, rejects any other
 * character outside the standard alphabet before it and a length of 1
 * modulo 4, accepts missing padding. (Buffer.from(s, "base64") is lenient.)
 */
export function decodeBase64Strict(text: Buffer): Buffer | null {
  let len = 0;
  while (len < text.length && text[len] !== EQUALS) {
    if (DECODE[text[len]!]! < 0) return null;
    len++;
  }
  if (len % 4 === 1) return null;
  const out = Buffer.allocUnsafe(Math.floor((len * 3) / 4));
  let o = 0;
  let i = 0;
  for (; i + 4 <= len; i += 4) {
    const n = (DECODE[text[i]!]! << 18) | (DECODE[text[i + 1]!]! << 12) | (DECODE[text[i + 2]!]! << 6) | DECODE[text[i + 3]!]!;
    out[o++] = n >> 16;
    out[o++] = (n >> 8) & 0xff;
    out[o++] = n & 0xff;
  }
  const rest = len - i;
  if (rest >= 2) {
    const n = (DECODE[text[i]!]! << 18) | (DECODE[text[i + 1]!]! << 12) | (rest === 3 ? DECODE[text[i + 2]!]! << 6 : 0);
    out[o++] = n >> 16;
    if (rest === 3) out[o++] = (n >> 8) & 0xff;
  }
  return out.subarray(0, o);
}

function invalidBase64(mechanism: string): { ok: false; log: string } {
  return { ok: false, log: `client sent invalid base64 encoding in AUTH ${mechanism} command` };
}

/** nginx's wording for a bad field, used here for CR, LF or NUL in it. */
function invalidField(field: "login" | "password", mechanism: string): { ok: false; log: string } {
  return { ok: false, log: `client sent invalid ${field} in AUTH ${mechanism} command` };
}

/** PLAIN: `authzid NUL login NUL password`; the authzid is ignored. */
export function saslPlain(b64: Buffer): SaslResult<{ login: Buffer; password: Buffer }> {
  const plain = decodeBase64Strict(b64);
  if (!plain) return invalidBase64("PLAIN");
  const first = plain.indexOf(0);
  if (first < 0 || first === plain.length - 1) return { ok: false, log: "client sent invalid login in AUTH PLAIN command" };
  const second = plain.indexOf(0, first + 1);
  if (second < 0) return { ok: false, log: "client sent invalid password in AUTH PLAIN command" };
  const login = plain.subarray(first + 1, second);
  const password = plain.subarray(second + 1);
  if (hasLineBreakOrNul(login)) return invalidField("login", "PLAIN");
  if (hasLineBreakOrNul(password)) return invalidField("password", "PLAIN");
  return { ok: true, value: { login, password } };
}

/** LOGIN, first response: the user name. */
export function saslLoginUsername(b64: Buffer): SaslResult<Buffer> {
  const login = decodeBase64Strict(b64);
  if (!login) return invalidBase64("LOGIN");
  return hasLineBreakOrNul(login) ? invalidField("login", "LOGIN") : { ok: true, value: login };
}

/** LOGIN, second response: the password. */
export function saslLoginPassword(b64: Buffer): SaslResult<Buffer> {
  const password = decodeBase64Strict(b64);
  if (!password) return invalidBase64("LOGIN");
  return hasLineBreakOrNul(password) ? invalidField("password", "LOGIN") : { ok: true, value: password };
}

/** CRAM-MD5: `login SP digest`, split at the first space; the digest must be 32 bytes. */
export function saslCramMd5(b64: Buffer): SaslResult<{ login: Buffer; digest: Buffer }> {
  const decoded = decodeBase64Strict(b64);
  if (!decoded) return invalidBase64("CRAM-MD5");
  const space = decoded.indexOf(0x20);
  const digest = space < 0 ? EMPTY : decoded.subarray(space + 1);
  // nginx has taken the name (all of it without a space) before it looks at the digest
  const login = space < 0 ? decoded : decoded.subarray(0, space);
  if (digest.length !== 32 || hasLineBreakOrNul(digest)) return { ok: false, log: "client sent invalid CRAM-MD5 hash in AUTH CRAM-MD5 command", login };
  if (hasLineBreakOrNul(login)) return invalidField("login", "CRAM-MD5");
  return { ok: true, value: { login, digest } };
}

/** EXTERNAL: the identity (may be empty). */
export function saslExternal(b64: Buffer): SaslResult<Buffer> {
  const login = decodeBase64Strict(b64);
  if (!login) return invalidBase64("EXTERNAL");
  return hasLineBreakOrNul(login) ? invalidField("login", "EXTERNAL") : { ok: true, value: login };
}

/** The CRAM-MD5 challenge text: base64 of the salt (without CRLF). */
export function cramMd5Challenge(salt: string): string {
  return Buffer.from(salt, "latin1").toString("base64");
}

/**
 * A new salt `<random.time@server_name>`, nginx's form
 * with its range (ngx_random(): 0 to 2^31-1). The random part comes from
 * the CSPRNG: Math.random's state can be recovered from a few outputs,
 * which would let a client predict the next APOP/CRAM-MD5 challenges.
 */
export function makeSalt(serverName: string): string {
  const random = randomInt(0x80000000);
  return `<${random}.${Math.floor(Date.now() / 1000)}@${serverName}>`;
}

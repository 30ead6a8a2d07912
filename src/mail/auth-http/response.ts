/**
 * The auth server's answer: an optional status line (skipped) and a header
 * block read up to the empty line. The block must
 * fit in 1024 bytes. Everything after the empty line is ignored.
 *
 * Rule: docs/behaviour/auth-http.md#ah-4-response-headers.
 */

/** The headers that matter, after the whole block was read. */
export interface AuthResponse {
  /** The last `Auth-Status` value other than `OK` and `WAIT`, if any. */
  readonly failure: Buffer | undefined;
  /** An `Auth-Status: WAIT` was seen. */
  readonly wait: boolean;
  readonly server: Buffer | undefined;
  readonly port: Buffer | undefined;
  readonly user: Buffer | undefined;
  readonly pass: Buffer | undefined;
  /** The last valid `Auth-Wait` (decimal digits, clamped to MAX_AUTH_WAIT_SECONDS), else 0. */
  readonly sleep: number;
  readonly errorCode: Buffer | undefined;
  /** `Auth-Error-SASL` (nginx PR #1590), unchecked: oauth-outcome.ts checks it for OAuth logins. */
  readonly errorSasl?: Buffer | undefined;
  /** `Auth-Method` in the answer: how to log in to the backend (oauth-outcome.ts), unchecked. */
  readonly method?: Buffer | undefined;
  /** `Auth-Proxy-SSL` and `Auth-Proxy-SSL-Name` (backend TLS, docs/backend-tls.md), unchecked. */
  readonly proxySsl?: Buffer | undefined;
  readonly proxySslName?: Buffer | undefined;
}

/** Why a response is unusable; `logged` says whether nginx writes a line for it. */
export type AuthResponseError =
  | { readonly kind: "invalidResponse" }
  | { readonly kind: "invalidHeader" }
  /** the header block did not fit in 1024 bytes: nginx logs nothing */
  | { readonly kind: "tooLarge" };

/** Result of feeding bytes: still waiting, done, or failed. */
export type AuthParseState =
  | { readonly kind: "incomplete" }
  | { readonly kind: "done"; readonly response: AuthResponse; /** offset after the empty line */ readonly end: number }
  | { readonly kind: "error"; readonly error: AuthResponseError };

/** nginx's response buffer size. */
export const AUTH_RESPONSE_LIMIT = 1024;

/** The nginx log message for a response error (`undefined`: nothing is logged). */
export function responseErrorMessage(error: AuthResponseError, peer: string): string | undefined {
  switch (error.kind) {
    case "invalidResponse":
      return `auth http server ${peer} sent invalid response`;
    case "invalidHeader":
      return `auth http server ${peer} sent invalid header in response`;
    case "tooLarge":
      return undefined;
  }
}

import { parseAuthWait } from "../auth-wait.js";

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTTP_SLASH = Buffer.from("HTTP/", "latin1");

/** Collects bytes from the auth server and parses them as they arrive. */
export class AuthResponseParser {
  #buffer: Buffer = Buffer.alloc(0);
  #state: AuthParseState = { kind: "incomplete" };

  /** The bytes held so far (at most AUTH_RESPONSE_LIMIT), for the debug log. */
  get received(): Buffer {
    return this.#buffer;
  }

  /** The current state; once done or error it no longer changes. */
  get state(): AuthParseState {
    return this.#state;
  }

  /** Adds received bytes and returns the new state. */
  push(chunk: Buffer): AuthParseState {
    if (this.#state.kind !== "incomplete") return this.#state;
    const room = AUTH_RESPONSE_LIMIT - this.#buffer.length;
    const taken = chunk.subarray(0, room);
    const next = Buffer.alloc(this.#buffer.length + taken.length);
    next.set(this.#buffer, 0);
    next.set(taken, this.#buffer.length);
    this.#buffer = next;
    const state = parseAuthResponse(this.#buffer);
    if (state.kind === "incomplete" && this.#buffer.length >= AUTH_RESPONSE_LIMIT) {
      this.#state = { kind: "error", error: { kind: "tooLarge" } };
    } else {
      this.#state = state;
    }
    return this.#state;
  }
}

/** Parses a complete or partial response held in one buffer. Never throws. */
export function parseAuthResponse(buf: Buffer): AuthParseState {
  let pos: number;
  const statusEnd = skipStatusLine(buf);
  if (statusEnd === "incomplete") return { kind: "incomplete" };
  if (statusEnd === "invalid") return { kind: "error", error: { kind: "invalidResponse" } };
  pos = statusEnd;

  const acc = new Accumulator();
  for (;;) {
    const line = readHeaderLine(buf, pos);
    if (line.kind === "incomplete") return line;
    if (line.kind === "invalid") return { kind: "error", error: { kind: "invalidHeader" } };
    if (line.kind === "end") return { kind: "done", response: acc.result(), end: buf[pos] === LF ? pos + 1 : pos + 2 };
    acc.add(line.name, line.value);
    pos = line.next;
  }
}

/** Offset where headers start: after an `HTTP/` status line, else 0. */
function skipStatusLine(buf: Buffer): number | "incomplete" | "invalid" {
  const n = Math.min(buf.length, HTTP_SLASH.length);
  for (let i = 0; i < n; i++) if (buf[i] !== HTTP_SLASH[i]) return 0;
  if (buf.length < HTTP_SLASH.length) return "incomplete";
  for (let i = HTTP_SLASH.length; i < buf.length; i++) {
    const c = buf[i];
    if (c === LF) return i + 1;
    if (c === CR) {
      if (i + 1 >= buf.length) return "incomplete";
      return buf[i + 1] === LF ? i + 2 : "invalid";
    }
  }
  return "incomplete";
}

type HeaderLine =
  | { readonly kind: "incomplete" }
  | { readonly kind: "invalid" }
  | { readonly kind: "end" }
  | { readonly kind: "header"; readonly name: string; readonly value: Buffer; readonly next: number };

function isAlnum(c: number): boolean {
  const l = c | 0x20;
  return (l >= 0x61 && l <= 0x7a) || (c >= 0x30 && c <= 0x39);
}

/** One header line at `pos`: name chars, `:`, spaces, value; LF or CRLF ends it. */
function readHeaderLine(buf: Buffer, pos: number): HeaderLine {
  if (pos >= buf.length) return { kind: "incomplete" };
  const first = buf[pos]!;
  if (first === LF) return { kind: "end" };
  if (first === CR) {
    const end = lineEnd(buf, pos);
    return typeof end === "number" ? { kind: "end" } : { kind: end };
  }
  if (!isAlnum(first)) return { kind: "invalid" };
  let i = pos + 1;
  for (; i < buf.length; i++) {
    const c = buf[i]!;
    if (isAlnum(c) || c === 0x2d) continue;
    if (c === 0x3a) break;
    if (c === CR || c === LF) {
      // A name alone on its line: a header with an empty value.
      const end = lineEnd(buf, i);
      if (typeof end !== "number") return { kind: end };
      return { kind: "header", name: buf.toString("latin1", pos, i), value: Buffer.alloc(0), next: end };
    }
    return { kind: "invalid" };
  }
  if (i >= buf.length) return { kind: "incomplete" };
  const name = buf.toString("latin1", pos, i);
  i++;
  while (i < buf.length && buf[i] === SP) i++;
  const start = i;
  let valueEnd = i;
  for (; i < buf.length; i++) {
    const c = buf[i]!;
    if (c === CR || c === LF) break;
    // Trailing spaces are dropped; tabs and inner spaces are kept.
    if (c !== SP) valueEnd = i + 1;
  }
  if (i >= buf.length) return { kind: "incomplete" };
  const end = lineEnd(buf, i);
  if (typeof end !== "number") return { kind: end };
  return { kind: "header", name, value: buf.subarray(start, valueEnd), next: end };
}

/** After the CR or LF at `i`: the next line's offset. */
function lineEnd(buf: Buffer, i: number): number | "incomplete" | "invalid" {
  if (buf[i] === LF) return i + 1;
  if (i + 1 >= buf.length) return "incomplete";
  return buf[i + 1] === LF ? i + 2 : "invalid";
}

/** The meaning of the headers seen so far; names compare case-insensitively. */
class Accumulator {
  #failure: Buffer | undefined;
  #wait = false;
  #server: Buffer | undefined;
  #port: Buffer | undefined;
  #user: Buffer | undefined;
  #pass: Buffer | undefined;
  #sleep = 0;
  #errorCode: Buffer | undefined;
  #errorSasl: Buffer | undefined;
  #method: Buffer | undefined;
  #proxySsl: Buffer | undefined;
  #proxySslName: Buffer | undefined;

  add(name: string, value: Buffer): void {
    switch (name.toLowerCase()) {
      case "auth-status": {
        // Values are case-sensitive: "ok" is a failure message.
        const v = value.toString("latin1");
        if (v === "OK") return;
        if (v === "WAIT") {
          this.#wait = true;
          return;
        }
        this.#failure = copyBytes(value);
        return;
      }
      case "auth-server":
        this.#server = copyBytes(value);
        return;
      case "auth-port":
        this.#port = copyBytes(value);
        return;
      case "auth-user":
        this.#user = copyBytes(value);
        return;
      case "auth-pass":
        this.#pass = copyBytes(value);
        return;
      case "auth-wait": {
        const seconds = parseAuthWait(value.toString("latin1"));
        if (seconds !== undefined) this.#sleep = seconds;
        return;
      }
      case "auth-error-code":
        this.#errorCode = copyBytes(value);
        return;
      case "auth-method":
        this.#method = value.length > 0 ? copyBytes(value) : undefined;
        return;
      case "auth-error-sasl":
        // an empty value is no header (nginx's add_header sends none for one)
        this.#errorSasl = value.length > 0 ? copyBytes(value) : undefined;
        return;
      case "auth-proxy-ssl":
        this.#proxySsl = copyBytes(value);
        return;
      case "auth-proxy-ssl-name":
        this.#proxySslName = copyBytes(value);
        return;
      default:
        return;
    }
  }

  result(): AuthResponse {
    return {
      failure: this.#failure,
      wait: this.#wait,
      server: this.#server,
      port: this.#port,
      user: this.#user,
      pass: this.#pass,
      sleep: this.#sleep,
      errorCode: this.#errorCode,
      ...(this.#errorSasl ? { errorSasl: this.#errorSasl } : {}),
      ...(this.#method ? { method: this.#method } : {}),
      proxySsl: this.#proxySsl,
      proxySslName: this.#proxySslName,
    };
  }
}

/** A copy that does not keep the receive buffer alive. */
function copyBytes(b: Buffer): Buffer {
  const out = Buffer.alloc(b.length);
  out.set(b, 0);
  return out;
}

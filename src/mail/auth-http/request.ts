/**
 * The auth_http request: an HTTP/1.0 GET whose headers carry everything
 * nginx knows about the login attempt, in nginx's exact order.
 *
 * Rules: docs/behaviour/auth-http.md#ah-2-request-headers-in-order (order),
 * #ah-3-escaping-and-refused-values (escaping).
 */
import type { Credentials, SessionInfo } from "../types.js";
import { hasLineBreakOrNul } from "../line-bytes.js";
import type { AuthHttpHeader } from "./module.js";

/** What one request is built from. */
export interface AuthRequestInput {
  readonly session: SessionInfo;
  readonly credentials: Credentials;
  /** 1 for the session's first attempt; unchanged when repeating after `Auth-Status: WAIT`. */
  readonly attempt: number;
  /** Request target, `/` if the URL had none. */
  readonly uri: string;
  readonly hostHeader: string;
  readonly headers: readonly AuthHttpHeader[];
  readonly passClientCert: boolean;
}

const CRLF = "\r\n";

/**
 * A header value held CR, LF or NUL. The front ends refuse such client
 * values and the others are checked where they are made; this is the last
 * guard, so no value can ever add a header of its own.
 */
export class UnsafeHeaderError extends Error {
  static readonly code = "ERR_UNSAFE_HEADER";
  readonly code = UnsafeHeaderError.code;
  readonly header: string;
  constructor(header: string) {
    super(`${header} with CR, LF or NUL`);
    this.name = "UnsafeHeaderError";
    this.header = header;
  }
}

/** Bytes 0x00-0x1F, space and `%` become `%XX` (upper-case hex); all else is sent as is. */
export function escapeAuthValue(value: Buffer | string): Buffer {
  const src = typeof value === "string" ? Buffer.from(value, "utf8") : value;
  let extra = 0;
  for (const b of src) if (needsEscape(b)) extra += 2;
  if (extra === 0) return src;
  const out = Buffer.allocUnsafe(src.length + extra);
  let o = 0;
  for (const b of src) {
    if (needsEscape(b)) {
      out[o++] = 0x25;
      out[o++] = HEX[b >> 4]!;
      out[o++] = HEX[b & 15]!;
    } else {
      out[o++] = b;
    }
  }
  return out;
}

const HEX = Buffer.from("0123456789ABCDEF", "latin1");

function needsEscape(b: number): boolean {
  return b <= 0x20 || b === 0x25;
}

/** True when the method sends a salt, which also withdraws the digest as a password. */
export function sendsSalt(credentials: Credentials): boolean {
  return (credentials.method === "apop" || credentials.method === "cram-md5") && (credentials.salt ?? "") !== "";
}

/** Builds the request header block, ending with the empty line. */
export function buildAuthRequest(input: AuthRequestInput): Buffer {
  const { session: s, credentials: cr } = input;
  const parts: Buffer[] = [];
  // `text` from the configuration (UTF-8, as nginx reads its file) or ASCII; `encoding` latin1 for the client's bytes
  const line = (text: string, encoding: "utf8" | "latin1" = "utf8"): void => {
    if (hasLineBreakOrNul(text)) throw new UnsafeHeaderError(text.slice(0, Math.max(0, text.indexOf(":"))));
    parts.push(Buffer.from(text + CRLF, encoding));
  };
  const raw = (name: string, value: Buffer): void => {
    parts.push(Buffer.from(`${name}: `, "latin1"), value, Buffer.from(CRLF, "latin1"));
  };

  line(`GET ${input.uri} HTTP/1.0`);
  line(`Host: ${input.hostHeader}`);
  line(`Auth-Method: ${cr.method}`);
  raw("Auth-User", escapeAuthValue(cr.login));
  raw("Auth-Pass", escapeAuthValue(cr.password));
  // The salt is sent with its own CRLF, as the greeting carried it.
  if (sendsSalt(cr)) line(`Auth-Salt: ${cr.salt}`);
  line(`Auth-Protocol: ${s.protocol}`);
  line(`Auth-Login-Attempt: ${input.attempt}`);
  line(`Client-IP: ${s.clientAddr}`);
  if (s.protocol === "smtp" && s.smtp && s.smtp.clientHost !== "") line(`Client-Host: ${s.smtp.clientHost}`);
  const pp = s.proxyProtocol;
  if (pp) {
    line(`Proxy-Protocol-Addr: ${pp.srcAddr}`);
    line(`Proxy-Protocol-Port: ${pp.srcPort}`);
    line(`Proxy-Protocol-Server-Addr: ${pp.dstAddr}`);
    line(`Proxy-Protocol-Server-Port: ${pp.dstPort}`);
  }
  if (cr.method === "none") {
    // HELO, MAIL and RCPT lines hold no control byte (the SMTP front end refuses
    // them): sent unescaped, as nginx does, byte for byte (8-bit addresses included).
    line(`Auth-SMTP-Helo: ${s.smtp?.helo ?? ""}`, "latin1");
    line(`Auth-SMTP-From: ${s.smtp?.from ?? ""}`, "latin1");
    line(`Auth-SMTP-To: ${s.smtp?.to ?? ""}`, "latin1");
  }
  const tls = s.tls;
  if (tls) {
    line("Auth-SSL: on");
    const optional: readonly (readonly [string, string | undefined])[] = [
      ["Auth-SSL-Protocol", tls.protocol],
      ["Auth-SSL-Cipher", tls.cipher],
      ["Auth-SSL-Verify", tls.verify],
      ["Auth-SSL-Subject", tls.verify !== undefined ? tls.subject : undefined],
      ["Auth-SSL-Issuer", tls.verify !== undefined ? tls.issuer : undefined],
      ["Auth-SSL-Serial", tls.verify !== undefined ? tls.serial : undefined],
      ["Auth-SSL-Fingerprint", tls.verify !== undefined ? tls.fingerprint : undefined],
    ];
    for (const [name, value] of optional) if (value) line(`${name}: ${value}`);
    if (input.passClientCert && tls.verify !== undefined && tls.certPem) raw("Auth-SSL-Cert", escapeAuthValue(tls.certPem));
    // Postern's: only on an address several servers share (docs/sni.md), so nginx's bytes stay nginx's elsewhere
    if (tls.serverName) line(`Auth-SSL-Server-Name: ${tls.serverName}`);
  }
  for (const h of input.headers) line(`${h.name}: ${h.value}`);
  parts.push(Buffer.from(CRLF, "latin1"));
  return joinBuffers(parts);
}

/** Buffer.concat without its typing friction under TS 5.9 + @types/node 20. */
export function joinBuffers(parts: readonly Buffer[]): Buffer {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = Buffer.allocUnsafe(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

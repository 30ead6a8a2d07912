/**
 * Reads the server name (SNI, RFC 6066 section 3) from the first bytes a TLS
 * client sends, before OpenSSL sees them: the mail layer picks the server
 * block, and so the whole TLS context, before the handshake starts. Picking
 * it inside the handshake (Node's SNICallback) would come after OpenSSL has
 * already accepted a session or ticket under the first context's policy
 * (the CVE-2025-23419 class: docs/sni.md#sessions-never-cross-servers).
 *
 * Pure parsing over client bytes: every length is checked against what is
 * there, nothing is trusted.
 */

/** TLS record: content type (1), version (2), length (2). */
const RECORD_HEADER = 5;
const HANDSHAKE = 22;
const CLIENT_HELLO = 1;
/** A record's payload is at most 2^14 bytes plus expansion (RFC 8446 5.2). */
const MAX_RECORD = 16384 + 2048;
/** OpenSSL refuses a longer ClientHello (CLIENT_HELLO_MAX_LENGTH). */
export const MAX_CLIENT_HELLO = 131396;
const SERVER_NAME_EXTENSION = 0;
const HOST_NAME = 0;
const SUPPORTED_VERSIONS = 43;
const SESSION_TICKET = 35;
const PRE_SHARED_KEY = 41;
/** OpenSSL's ticket key name length: tickets shorter than that name no key. */
const KEY_NAME = 16;

/** What the bytes so far say. */
export type ClientHelloScan =
  /**
   * The ClientHello is not complete yet: read more, at least up to `need`
   * bytes in all (the end of the record under way), before scanning again;
   * so a client sending a byte at a time costs a scan per record, not per byte.
   */
  | { readonly kind: "more"; readonly need: number }
  /** Not a TLS ClientHello (OpenSSL will say why when it reads the same bytes). */
  | { readonly kind: "invalid" }
  /** A complete ClientHello; `serverName` is the raw host_name, absent without SNI. */
  | ({ readonly kind: "hello"; readonly serverName?: Buffer } & HelloResumption);

/**
 * What the ClientHello says about resumption, for servers whose ticket keys
 * come from the shared store (several contexts, one per key: the ticket's
 * key name picks the one that can open it) and whose session ids are looked
 * up in it.
 */
export interface HelloResumption {
  /**
   * The first 16 bytes of the ticket offered: OpenSSL's key name. From the
   * session_ticket extension (TLS 1.2) or the first pre_shared_key identity
   * (TLS 1.3, where OpenSSL's identity is the ticket).
   */
  readonly ticketKeyName?: Buffer;
  /** The client offers TLS 1.3 (supported_versions lists 0x0304). */
  readonly offersTls13?: boolean;
  /** legacy_session_id (random in a TLS 1.3 ClientHello). */
  readonly sessionId?: Buffer;
}

/**
 * Joins the handshake fragments of the records received so far; the first
 * handshake message must be a ClientHello (it may span records).
 */
function handshakeBytes(data: Buffer): { bytes: Buffer; complete: boolean; need: number } | "invalid" {
  const parts: Buffer[] = [];
  let pos = 0;
  let joined = Buffer.alloc(0);
  // the length the data must reach before scanning again can tell more
  let need = RECORD_HEADER;
  while (pos + RECORD_HEADER <= data.length) {
    if (data[pos] !== HANDSHAKE || data[pos + 1] !== 3) return "invalid";
    const length = data.readUInt16BE(pos + 3);
    if (length === 0 || length > MAX_RECORD) return "invalid";
    const available = Math.min(length, data.length - pos - RECORD_HEADER);
    parts.push(data.subarray(pos + RECORD_HEADER, pos + RECORD_HEADER + available));
    joined = Buffer.concat(parts);
    need = pos + RECORD_HEADER + length;
    if (available < length) break;
    pos += RECORD_HEADER + length;
    need = pos + RECORD_HEADER;
    if (joined.length >= 4 && joined.length >= 4 + joined.readUIntBE(1, 3)) break;
  }
  if (joined.length < 4) return { bytes: joined, complete: false, need };
  if (joined[0] !== CLIENT_HELLO) return "invalid";
  const total = 4 + joined.readUIntBE(1, 3);
  if (total > MAX_CLIENT_HELLO) return "invalid";
  return joined.length >= total ? { bytes: joined.subarray(4, total), complete: true, need } : { bytes: joined, complete: false, need };
}

/** A cursor over one ClientHello body; every read is bounds-checked. */
class Cursor {
  #pos = 0;
  constructor(readonly data: Buffer) {}
  get left(): number {
    return this.data.length - this.#pos;
  }
  skip(n: number): boolean {
    if (n > this.left) return false;
    this.#pos += n;
    return true;
  }
  uint(size: 1 | 2): number | undefined {
    if (size > this.left) return undefined;
    const v = this.data.readUIntBE(this.#pos, size);
    this.#pos += size;
    return v;
  }
  take(n: number): Buffer | undefined {
    if (n > this.left) return undefined;
    const b = this.data.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return b;
  }
  /** A field with a length prefix of `size` bytes. */
  vector(size: 1 | 2): Buffer | undefined {
    const n = this.uint(size);
    return n === undefined ? undefined : this.take(n);
  }
}

/** The host_name of a server_name extension body, if any. */
function hostName(ext: Buffer): Buffer | undefined | "invalid" {
  const list = new Cursor(ext).vector(2);
  if (!list) return "invalid";
  const entries = new Cursor(list);
  while (entries.left > 0) {
    const type = entries.uint(1);
    const name = entries.vector(2);
    if (type === undefined || name === undefined) return "invalid";
    if (type === HOST_NAME) return name;
  }
  return undefined;
}

/** OpenSSL's key name of a ticket, when the ticket is long enough to carry one. */
function keyName(ticket: Buffer | undefined): Buffer | undefined {
  return ticket && ticket.length >= KEY_NAME ? Buffer.from(ticket.subarray(0, KEY_NAME)) : undefined;
}

/** The first identity of a pre_shared_key extension (ClientHello form). */
function firstPskIdentity(ext: Buffer): Buffer | undefined {
  const identities = new Cursor(ext).vector(2);
  return identities ? new Cursor(identities).vector(2) : undefined;
}

function offers13(ext: Buffer): boolean {
  const versions = new Cursor(ext).vector(1);
  if (!versions) return false;
  for (let i = 0; i + 1 < versions.length; i += 2) if (versions.readUInt16BE(i) === 0x0304) return true;
  return false;
}

/** Scans the bytes a client sent first. */
export function scanClientHello(data: Buffer): ClientHelloScan {
  const hs = handshakeBytes(data);
  if (hs === "invalid") return { kind: "invalid" };
  if (!hs.complete) return data.length > MAX_CLIENT_HELLO + 64 * RECORD_HEADER ? { kind: "invalid" } : { kind: "more", need: hs.need };
  const c = new Cursor(hs.bytes);
  // legacy_version, random, session id, cipher suites, compression methods
  if (!c.skip(2 + 32)) return { kind: "invalid" };
  const sessionId = c.vector(1);
  if (!sessionId || !c.vector(2) || !c.vector(1)) return { kind: "invalid" };
  const out: { kind: "hello"; serverName?: Buffer; ticketKeyName?: Buffer; offersTls13?: boolean; sessionId?: Buffer } = { kind: "hello" };
  if (sessionId.length > 0) out.sessionId = Buffer.from(sessionId);
  if (c.left === 0) return out;
  const extensions = c.vector(2);
  if (!extensions) return { kind: "invalid" };
  const e = new Cursor(extensions);
  let ticket: Buffer | undefined;
  let psk: Buffer | undefined;
  while (e.left > 0) {
    const type = e.uint(2);
    const body = e.vector(2);
    if (type === undefined || body === undefined) return { kind: "invalid" };
    if (type === SERVER_NAME_EXTENSION) {
      const name = hostName(body);
      if (name === "invalid") return { kind: "invalid" };
      if (name && !out.serverName) out.serverName = name;
    } else if (type === SESSION_TICKET) {
      ticket = body;
    } else if (type === PRE_SHARED_KEY) {
      psk = firstPskIdentity(body);
    } else if (type === SUPPORTED_VERSIONS) {
      if (offers13(body)) out.offersTls13 = true;
    }
  }
  // a TLS 1.3 server resumes from the PSK identity, a TLS 1.2 one from the ticket extension
  const name = keyName(out.offersTls13 && psk ? psk : ticket) ?? keyName(psk);
  if (name) out.ticketKeyName = name;
  return out;
}

/**
 * A server name as a host name: letters, digits, `-` and `_` in dot-separated
 * labels, at most 253 characters; lower-cased, a trailing dot removed.
 * undefined for anything else (it is client input: never logged raw, never
 * sent on).
 */
export function validServerName(raw: Buffer): string | undefined {
  if (raw.length === 0 || raw.length > 254) return undefined;
  let text = raw.toString("latin1");
  if (text.endsWith(".")) text = text.slice(0, -1);
  if (!/^[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*$/.test(text)) return undefined;
  return text.toLowerCase();
}

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
  | { readonly kind: "hello"; readonly serverName?: Buffer };

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

/** Scans the bytes a client sent first. */
export function scanClientHello(data: Buffer): ClientHelloScan {
  const hs = handshakeBytes(data);
  if (hs === "invalid") return { kind: "invalid" };
  if (!hs.complete) return data.length > MAX_CLIENT_HELLO + 64 * RECORD_HEADER ? { kind: "invalid" } : { kind: "more", need: hs.need };
  const c = new Cursor(hs.bytes);
  // legacy_version, random, session id, cipher suites, compression methods
  if (!c.skip(2 + 32) || !c.vector(1) || !c.vector(2) || !c.vector(1)) return { kind: "invalid" };
  if (c.left === 0) return { kind: "hello" };
  const extensions = c.vector(2);
  if (!extensions) return { kind: "invalid" };
  const e = new Cursor(extensions);
  while (e.left > 0) {
    const type = e.uint(2);
    const body = e.vector(2);
    if (type === undefined || body === undefined) return { kind: "invalid" };
    if (type !== SERVER_NAME_EXTENSION) continue;
    const name = hostName(body);
    if (name === "invalid") return { kind: "invalid" };
    return name ? { kind: "hello", serverName: name } : { kind: "hello" };
  }
  return { kind: "hello" };
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

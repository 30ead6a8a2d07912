/**
 * The PROXY protocol (haproxy's v1 text and v2 binary headers): parsing the
 * header a load balancer puts in front of a client connection, and building
 * the header Postern sends to a backend. Pure functions over Buffers; the
 * socket code peeks and consumes.
 */
import { logEscape } from "../core/log.js";
import { formatIp, isV4Mapped, parseIp } from "../core/inet.js";

/** Addresses from a PROXY protocol header (v1 TCP4/TCP6, v2 INET/INET6 PROXY). */
export interface ProxyProtocolAddresses {
  readonly srcAddr: string;
  readonly srcPort: number;
  readonly dstAddr: string;
  readonly dstPort: number;
}

/** How much latest nginx peeks for the header; it must be in that first read. */
export const PROXY_PROTOCOL_READ_SIZE = 4096;

const V2_SIGNATURE = Buffer.from("\r\n\r\n\0\r\nQUIT\n", "latin1");
const V2_HEADER_LEN = 16;

/** What the first bytes of a connection said. `length` bytes are the header. */
export type ProxyHeaderResult =
  /** a v1 TCP4/TCP6 or v2 PROXY/STREAM/INET(6) header */
  | { readonly kind: "proxy"; readonly length: number; readonly addresses: ProxyProtocolAddresses; readonly tlvs?: Buffer | undefined }
  /** v1 UNKNOWN, v2 LOCAL or an unsupported v2 family/transport: no addresses */
  | { readonly kind: "skip"; readonly length: number }
  /** close the connection; `message` (when set) is logged at error level */
  | { readonly kind: "error"; readonly message?: string | undefined };

/** Parses the header at the start of `buf` (everything the first read returned). */
export function parseProxyHeader(buf: Buffer): ProxyHeaderResult {
  if (buf.length >= V2_HEADER_LEN && buf.subarray(0, 12).equals(V2_SIGNATURE)) return parseV2(buf);
  return parseV1(buf);
}

function broken(buf: Buffer): ProxyHeaderResult {
  let end = 0;
  while (end < buf.length && buf[end] !== 0x0d && buf[end] !== 0x0a) end++;
  // quoted up to the first CR/LF (latest nginx), escaped: the bytes are the client's
  return { kind: "error", message: `broken header: "${logEscape(buf.subarray(0, end))}"` };
}

function isAddrChar(c: number): boolean {
  return c === 0x3a || c === 0x2e || (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

function parseV1(buf: Buffer): ProxyHeaderResult {
  const len = buf.length;
  if (len < 8 || buf.toString("latin1", 0, 6) !== "PROXY ") return broken(buf);
  let p = 6;
  if (len - p >= 7 && buf.toString("latin1", p, p + 7) === "UNKNOWN") {
    // The rest of the line is ignored, whatever it holds.
    for (p += 7; p < len - 1; p++) {
      if (buf[p] === 0x0d && buf[p + 1] === 0x0a) return { kind: "skip", length: p + 2 };
    }
    return broken(buf);
  }
  if (len - p < 5 || buf.toString("latin1", p, p + 3) !== "TCP" || (buf[p + 3] !== 0x34 && buf[p + 3] !== 0x36) || buf[p + 4] !== 0x20) {
    return broken(buf);
  }
  p += 5;
  const fields: string[] = [];
  for (let i = 0; i < 2; i++) {
    const start = p;
    for (;;) {
      if (p === len) return broken(buf);
      const c = buf[p++]!;
      if (c === 0x20) break;
      if (!isAddrChar(c)) return broken(buf);
    }
    fields.push(buf.toString("latin1", start, p - 1));
  }
  const ports: number[] = [];
  for (const sep of [0x20, 0x0d]) {
    const start = p;
    for (;;) {
      if (p === len) return broken(buf);
      if (buf[p++] === sep) break;
    }
    const port = decimal(buf, start, p - 1);
    if (port < 0 || port > 65535) return broken(buf);
    ports.push(port);
  }
  if (p === len || buf[p++] !== 0x0a) return broken(buf);
  return { kind: "proxy", length: p, addresses: { srcAddr: fields[0]!, dstAddr: fields[1]!, srcPort: ports[0]!, dstPort: ports[1]! } };
}

/** nginx's ngx_atoi: digits only, at least one; -1 otherwise. */
function decimal(buf: Buffer, start: number, end: number): number {
  if (end <= start) return -1;
  let n = 0;
  for (let i = start; i < end; i++) {
    const c = buf[i]!;
    if (c < 0x30 || c > 0x39) return -1;
    n = n * 10 + (c - 0x30);
    if (n > 0xffffffff) return -1;
  }
  return n;
}

function parseV2(buf: Buffer): ProxyHeaderResult {
  const version = buf[12]! >> 4;
  if (version !== 2) return { kind: "error", message: `unknown PROXY protocol version: ${version}` };
  const len = buf.readUInt16BE(14);
  if (buf.length - V2_HEADER_LEN < len) return { kind: "error", message: "header is too large" };
  const end = V2_HEADER_LEN + len;
  const command = buf[12]! & 0x0f;
  const transport = buf[13]! & 0x0f;
  const family = buf[13]! >> 4;
  if (command !== 1 || transport !== 1) return { kind: "skip", length: end };
  const size = family === 1 ? 4 : family === 2 ? 16 : 0;
  if (size === 0) return { kind: "skip", length: end };
  let p = V2_HEADER_LEN;
  // Too short for its own family: nginx closes without a message.
  if (end - p < size * 2 + 4) return { kind: "error" };
  const srcAddr = formatIp(Buffer.from(buf.subarray(p, p + size)));
  const dstAddr = formatIp(Buffer.from(buf.subarray(p + size, p + 2 * size)));
  p += 2 * size;
  const srcPort = buf.readUInt16BE(p);
  const dstPort = buf.readUInt16BE(p + 2);
  p += 4;
  const tlvs = p < end ? Buffer.from(buf.subarray(p, end)) : undefined;
  return { kind: "proxy", length: end, addresses: { srcAddr, srcPort, dstAddr, dstPort }, tlvs };
}

/** One end of the client connection, for the outgoing header. */
export interface ProxyEndpoint {
  /** IP text, or undefined for a UNIX socket */
  readonly addr: string | undefined;
  readonly port: number;
}

/**
 * The v1 line: `PROXY TCP4|TCP6 <client> <local> <cport> <lport>\r\n`, the
 * family being the client's; `PROXY UNKNOWN\r\n` for UNIX-socket clients.
 */
export function buildProxyHeaderV1(client: ProxyEndpoint, local: ProxyEndpoint): Buffer {
  if (client.addr === undefined) return Buffer.from("PROXY UNKNOWN\r\n", "latin1");
  const family = client.addr.includes(":") ? "TCP6" : "TCP4";
  return Buffer.from(`PROXY ${family} ${client.addr} ${local.addr ?? "unix:"} ${client.port} ${local.port}\r\n`, "latin1");
}

/** The TLS facts a v2 header carries (TLV types 0x01, 0x02, 0x20-0x25). */
export interface ProxyV2Tls {
  /** SNI host name the client sent */
  readonly serverName?: string | undefined;
  /** negotiated ALPN protocol */
  readonly alpn?: string | undefined;
  /** `TLSv1.3` etc. */
  readonly version: string;
  /** OpenSSL cipher name */
  readonly cipher: string;
  /** the session has a client certificate */
  readonly certInSession: boolean;
  /** the certificate was presented on this connection (not a resumed session) */
  readonly certOnConnection: boolean;
  /** X509 verify result (0 = ok); ignored without a certificate (then 1) */
  readonly verifyResult: number;
  /** client certificate subject CN */
  readonly commonName?: string | undefined;
  /** our certificate's signature algorithm short name, e.g. `RSA-SHA256` */
  readonly signatureAlgorithm?: string | undefined;
  /** our certificate's key, e.g. `RSA2048`, `EC256` */
  readonly keyAlgorithm?: string | undefined;
}

function tlv(type: number, value: Buffer): Buffer {
  const head = Buffer.alloc(3);
  head[0] = type;
  head.writeUInt16BE(value.length, 1);
  return Buffer.concat([head, value]);
}

function addressBlock(client: ProxyEndpoint, local: ProxyEndpoint): { famByte: number; command: number; block: Buffer } {
  const src = client.addr === undefined ? null : parseIp(client.addr);
  const dst = local.addr === undefined ? null : parseIp(local.addr);
  if (src === null || dst === null) return { famByte: 0x00, command: 0, block: Buffer.alloc(0) };
  const asV4 = (b: Buffer): Buffer | null => (b.length === 4 ? b : isV4Mapped(b) ? b.subarray(12) : null);
  const s4 = asV4(src);
  const d4 = asV4(dst);
  // Both sides IPv4 (or v4-mapped): INET; else INET6 with IPv4 mapped in.
  if (s4 && d4 && (src.length === dst.length || (src.length === 16 && dst.length === 16))) {
    const block = Buffer.alloc(12);
    s4.copy(block, 0);
    d4.copy(block, 4);
    block.writeUInt16BE(client.port, 8);
    block.writeUInt16BE(local.port, 10);
    return { famByte: 0x11, command: 1, block };
  }
  const to6 = (b: Buffer): Buffer => (b.length === 16 ? b : Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]), b]));
  const block = Buffer.alloc(36);
  to6(src).copy(block, 0);
  to6(dst).copy(block, 16);
  block.writeUInt16BE(client.port, 32);
  block.writeUInt16BE(local.port, 34);
  return { famByte: 0x21, command: 1, block };
}

/**
 * The v2 header: addresses (LOCAL/UNSPEC when a side is not IP), then for
 * TLS clients AUTHORITY, ALPN and the SSL TLV with its sub-TLVs, then a
 * CRC32C TLV over the whole header.
 */
export function buildProxyHeaderV2(client: ProxyEndpoint, local: ProxyEndpoint, tls?: ProxyV2Tls): Buffer {
  const { famByte, command, block } = addressBlock(client, local);
  const parts: Buffer[] = [block];
  if (tls) {
    if (tls.serverName) parts.push(tlv(0x02, Buffer.from(tls.serverName, "latin1")));
    if (tls.alpn) parts.push(tlv(0x01, Buffer.from(tls.alpn, "latin1")));
    const subs: Buffer[] = [tlv(0x21, Buffer.from(tls.version, "latin1"))];
    if (tls.certInSession && tls.commonName !== undefined) subs.push(tlv(0x22, Buffer.from(tls.commonName, "utf8")));
    subs.push(tlv(0x23, Buffer.from(tls.cipher, "latin1")));
    if (tls.signatureAlgorithm !== undefined) subs.push(tlv(0x24, Buffer.from(tls.signatureAlgorithm, "latin1")));
    if (tls.keyAlgorithm !== undefined) subs.push(tlv(0x25, Buffer.from(tls.keyAlgorithm, "latin1")));
    const head = Buffer.alloc(5);
    head[0] = 0x01 | (tls.certInSession ? 0x04 : 0) | (tls.certInSession && tls.certOnConnection ? 0x02 : 0);
    head.writeUInt32BE(tls.certInSession ? tls.verifyResult >>> 0 : 1, 1);
    parts.push(tlv(0x20, Buffer.concat([head, ...subs])));
  }
  parts.push(Buffer.from([0x03, 0x00, 0x04, 0, 0, 0, 0]));
  const body = Buffer.concat(parts);
  const header = Buffer.alloc(V2_HEADER_LEN);
  V2_SIGNATURE.copy(header, 0);
  header[12] = 0x20 | command;
  header[13] = famByte;
  header.writeUInt16BE(body.length, 14);
  const out = Buffer.concat([header, body]);
  out.writeUInt32BE(crc32c(out), out.length - 4);
  return out;
}

const CRC32C_TABLE = ((): Uint32Array => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC-32C (Castagnoli), as the v2 CRC32C TLV uses. */
export function crc32c(buf: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < buf.length; i++) crc = CRC32C_TABLE[(crc ^ buf[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

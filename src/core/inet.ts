/**
 * IP address text <-> bytes, as nginx's ngx_inet_addr / ngx_inet6_addr and
 * ngx_inet6_ntop do it. Node's `net` validates but gives no bytes, and the
 * PROXY protocol and CIDR matching need the bytes.
 */
import { isIPv4, isIPv6 } from "node:net";

/** The 4 bytes of a dotted IPv4 address, or null. */
export function parseIpv4(text: string): Buffer | null {
  if (!isIPv4(text)) return null;
  return Buffer.from(text.split(".").map(Number));
}

/** The 16 bytes of an IPv6 address (with optional embedded IPv4 tail), or null. */
export function parseIpv6(text: string): Buffer | null {
  if (!isIPv6(text) || text.includes("%")) return null;
  const out = Buffer.alloc(16);
  let head = text;
  let tail4: Buffer | null = null;
  const lastColon = text.lastIndexOf(":");
  if (text.slice(lastColon + 1).includes(".")) {
    tail4 = parseIpv4(text.slice(lastColon + 1));
    if (tail4 === null) return null;
    head = text.slice(0, lastColon + 1) + "0:0";
  }
  const [left, right] = head.includes("::") ? (head.split("::") as [string, string]) : [head, undefined];
  const l = left === "" ? [] : left.split(":");
  const r = right === undefined || right === "" ? [] : right.split(":");
  const groups = right === undefined ? l : [...l, ...Array<string>(8 - l.length - r.length).fill("0"), ...r];
  if (groups.length !== 8) return null;
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  if (tail4) tail4.copy(out, 12);
  return out;
}

/** Bytes of either family (4 or 16), or null. */
export function parseIp(text: string): Buffer | null {
  return parseIpv4(text) ?? parseIpv6(text);
}

/** True for ::ffff:a.b.c.d. */
export function isV4Mapped(b: Buffer): boolean {
  if (b.length !== 16) return false;
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** Text of 4 or 16 address bytes: dotted quad, or RFC 5952 IPv6 as nginx prints it. */
export function formatIp(b: Buffer): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (isV4Mapped(b)) return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push(b.readUInt16BE(i));
  // The longest run of zero groups (at least two) becomes "::".
  let best = -1,
    bestLen = 0;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) return g.map((x) => x.toString(16)).join(":");
  const left = g
    .slice(0, best)
    .map((x) => x.toString(16))
    .join(":");
  const right = g
    .slice(best + bestLen)
    .map((x) => x.toString(16))
    .join(":");
  return `${left}::${right}`;
}

/** Strips the IPv4-mapped prefix Node reports on dual-stack sockets. */
export function plainAddress(addr: string | undefined): string {
  if (!addr) return "";
  return addr.startsWith("::ffff:") && addr.includes(".") ? addr.slice(7) : addr;
}

/** `ip:port`, with brackets for IPv6, as nginx names peers and upstreams in its log. */
export function addressWithPort(addr: string, port: number): string {
  return addr.includes(":") ? `[${addr}]:${port}` : `${addr}:${port}`;
}

/**
 * ngx_mail_realip_module: `set_real_ip_from` lists the
 * peers whose PROXY protocol addresses are trusted to replace theirs.
 *
 * Rule: docs/behaviour/session.md#session-1-stages.
 */
import { execFileSync } from "node:child_process";
import type { ConfModule, SetContext } from "../../conf/directive.js";
import { take } from "../../conf/directive.js";
import { list } from "../../conf/slots.js";
import { ConfError } from "../../core/errors.js";
import { formatIp, isV4Mapped, parseIp } from "../../core/inet.js";
import type { ProxyProtocolAddresses } from "../types.js";

/** One trusted source: all UNIX-socket peers, or an address with a mask. */
export type TrustedSource = { readonly kind: "unix" } | { readonly kind: "cidr"; readonly addr: Buffer; readonly mask: Buffer };

function maskOf(bits: number, bytes: number): Buffer {
  const m = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) {
    const take = Math.max(0, Math.min(8, bits - i * 8));
    m[i] = take === 0 ? 0 : (0xff << (8 - take)) & 0xff;
  }
  return m;
}

/**
 * nginx's ngx_ptocidr: `addr` or `addr/bits`. Null if unparseable; `lowBits`
 * when host bits were set (they are cleared).
 */
export function parseCidr(text: string): { source: TrustedSource; lowBits: boolean } | null {
  const slash = text.indexOf("/");
  const addr = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (addr === null) return null;
  const max = addr.length * 8;
  let bits = max;
  if (slash >= 0) {
    const digits = text.slice(slash + 1);
    if (!/^[0-9]+$/.test(digits)) return null;
    bits = Number(digits);
    if (bits > max) return null;
  }
  const mask = maskOf(bits, addr.length);
  let lowBits = false;
  const net = Buffer.alloc(addr.length);
  for (let i = 0; i < addr.length; i++) {
    net[i] = addr[i]! & mask[i]!;
    if (net[i] !== addr[i]) lowBits = true;
  }
  return { source: { kind: "cidr", addr: net, mask }, lowBits };
}

/**
 * Resolves a host name at configuration time, as nginx's getaddrinfo() call
 * does; Node has no synchronous resolver, so this asks getent (NSS: files, DNS).
 */
function resolveHost(name: string): Buffer[] {
  try {
    const out = execFileSync("getent", ["ahosts", name], { encoding: "utf8", timeout: 10000, stdio: ["ignore", "pipe", "ignore"] });
    const seen = new Set<string>();
    const addrs: Buffer[] = [];
    for (const line of out.split("\n")) {
      const [a, type] = line.trim().split(/\s+/);
      if (!a || type !== "STREAM" || seen.has(a)) continue;
      const b = parseIp(a);
      if (b) {
        seen.add(a);
        addrs.push(b);
      }
    }
    return addrs;
  } catch {
    return [];
  }
}

function entry(args: readonly string[], cx: SetContext): TrustedSource[] {
  const value = args[0]!;
  if (value === "unix:") return [{ kind: "unix" }];
  const cidr = parseCidr(value);
  if (cidr) {
    if (cidr.lowBits) cx.warn(`low address bits of ${value} are meaningless`);
    return [cidr.source];
  }
  const addrs = resolveHost(value);
  if (addrs.length === 0) throw new ConfError(`host not found in set_real_ip_from "${value}"`);
  return addrs.map((a) => ({ kind: "cidr", addr: a, mask: Buffer.alloc(a.length, 0xff) }));
}

/** `set_real_ip_from address | CIDR | unix:` (a list; a server with any replaces the mail level's). */
export const setRealIpFrom = list<TrustedSource>("set_real_ip_from", {
  contexts: ["mail", "server"],
  args: take(1),
  syntax: "address | CIDR | unix:",
  doc: "Trust PROXY protocol addresses sent by these peers.",
  entry,
});

/** The module as the configuration engine loads it. */
export const realipModule: ConfModule = { name: "ngx_mail_realip_module", directives: [setRealIpFrom] };

/** True when `addr` (4 or 16 bytes) lies in one of the sources; v4-mapped IPv6 peers match IPv4 entries. */
export function matchesSources(sources: readonly TrustedSource[], peerAddr: string, unix: boolean): boolean {
  if (unix) return sources.some((s) => s.kind === "unix");
  let addr = parseIp(peerAddr);
  if (addr === null) return false;
  if (isV4Mapped(addr)) addr = addr.subarray(12);
  for (const s of sources) {
    if (s.kind !== "cidr" || s.addr.length !== addr.length) continue;
    let ok = true;
    for (let i = 0; i < addr.length && ok; i++) ok = (addr[i]! & s.mask[i]!) === s.addr[i];
    if (ok) return true;
  }
  return false;
}

/** Whether this server trusts the PROXY header of a peer at `peerAddr` (or a UNIX-socket peer). */
export function trustsPeer(server: { get(d: typeof setRealIpFrom): readonly TrustedSource[] }, peerAddr: string, unix: boolean): boolean {
  return matchesSources(server.get(setRealIpFrom), peerAddr, unix);
}

/**
 * The client address realip yields: the PROXY header's source, normalised as
 * nginx prints a parsed address, when the peer is trusted and the source is a
 * valid IP; otherwise undefined (keep the peer's own address).
 */
export function realClientAddress(
  server: { get(d: typeof setRealIpFrom): readonly TrustedSource[] },
  peerAddr: string,
  unix: boolean,
  header: ProxyProtocolAddresses | undefined,
): { readonly addr: string; readonly port: number } | undefined {
  if (header === undefined || !trustsPeer(server, peerAddr, unix)) return undefined;
  const bytes = parseIp(header.srcAddr);
  if (bytes === null) return undefined;
  return { addr: formatIp(bytes), port: header.srcPort };
}

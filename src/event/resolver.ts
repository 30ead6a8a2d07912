/**
 * A small DNS stub resolver for `resolver` / `resolver_timeout` (nginx's
 * ngx_resolver.c, the parts the mail proxy uses): PTR for a client address,
 * A and AAAA for a name, over UDP to the configured servers.
 *
 * Why not node:dns: `dns.promises.Resolver` (c-ares) can be pointed at the
 * servers, but its timeout is per try and doubles on retries (no single
 * total `resolver_timeout`), it keeps no TTLs for PTR answers (no cache by
 * TTL or `valid=`), and c-ares rejects or escapes PTR names with unusual
 * bytes, so we could neither log nginx's `resolved to invalid host name`
 * line nor mirror nginx's lowercased name. This client does what nginx
 * does: one query, resent to the next server (round robin) every 5 s, a
 * total deadline, answers cached by TTL (or `valid=`), names lowercased.
 * The cache is bounded (resolver-cache.ts: 4096 answers per directive and
 * worker, expired ones swept, least recently used dropped when full).
 * Not done: TCP fallback for truncated answers (PTR/A answers fit in UDP).
 */
import { randomInt } from "node:crypto";
import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { isIP, isIPv4, isIPv6 } from "node:net";
import { DEFAULT_CACHE_ENTRIES, ExpiringLruCache } from "./resolver-cache.js";

/** One DNS server of `resolver`. */
export interface ResolverAddress {
  readonly host: string;
  readonly port: number;
}

/**
 * What the resolver is pointed at: the `resolver` directive, parsed by
 * mail/core-module.ts (null there means `off`). Declared here, below mail/.
 */
export interface ResolverSpec {
  readonly servers: readonly ResolverAddress[];
  /** `valid=`: overrides answers' TTL, in seconds. */
  readonly valid?: number | undefined;
  readonly ipv4: boolean;
  readonly ipv6: boolean;
}

/** nginx's resolver error codes: DNS RCODEs 1-5, and 110 for a timeout. */
export type ResolveErrorCode = 1 | 2 | 3 | 4 | 5 | 110;

/** NXDOMAIN, the one error that means "no such name" rather than "try later". */
export const RESOLVE_NXDOMAIN = 3;
/** `resolver_timeout` expired. */
export const RESOLVE_TIMEDOUT = 110;

/** A PTR lookup's outcome; `name` is lowercased, without the final dot, possibly empty. */
export type PtrResult = { readonly ok: true; readonly name: string } | { readonly ok: false; readonly code: ResolveErrorCode };

/** A name lookup's outcome: the A and AAAA addresses, in text form. */
export type AddressResult = { readonly ok: true; readonly addresses: readonly string[] } | { readonly ok: false; readonly code: ResolveErrorCode };

/** nginx's ngx_resolver_strerror. */
export function resolverStrerror(code: number): string {
  const texts = ["Format error", "Server failure", "Host not found", "Unimplemented", "Operation refused"];
  if (code > 0 && code < 6) return texts[code - 1]!;
  return code === RESOLVE_TIMEDOUT ? "Operation timed out" : "Unknown error";
}

const TYPE_A = 1;
const TYPE_CNAME = 5;
const TYPE_PTR = 12;
const TYPE_AAAA = 28;
/** nginx resends an unanswered query to the next server after this. */
const RESEND_MS = 5000;
/** nginx's NGX_RESOLVER_MAX_RECURSION for CNAME chains. */
const MAX_CNAMES = 50;

interface Answer {
  readonly rcode: number;
  /** rdata of matching records: names for PTR/CNAME, addresses for A/AAAA */
  readonly records: ReadonlyArray<{ readonly type: number; readonly value: string; readonly ttl: number }>;
}

type QueryResult = { ok: true; answer: Answer } | { ok: false; code: ResolveErrorCode };

interface Pending {
  readonly question: Buffer;
  readonly resolve: (answer: Answer) => void;
}

/** Encodes a dotted name as DNS labels; null if a label is empty or too long. */
function encodeName(name: string): Buffer | null {
  const parts: Buffer[] = [];
  for (const label of name.replace(/\.$/, "").split(".")) {
    const b = Buffer.from(label, "latin1");
    if (b.length === 0 || b.length > 63) return null;
    parts.push(Buffer.from([b.length]), b);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

/** Reads a (possibly compressed) name at `offset`; returns it and the offset after it. */
function readName(msg: Buffer, offset: number): { name: string; next: number } | null {
  const labels: string[] = [];
  let p = offset;
  let next = -1;
  for (let hops = 0; hops < 128; hops++) {
    if (p >= msg.length) return null;
    const n = msg[p]!;
    if (n === 0) {
      if (next < 0) next = p + 1;
      return { name: labels.join(".").toLowerCase(), next };
    }
    if ((n & 0xc0) === 0xc0) {
      if (p + 1 >= msg.length) return null;
      if (next < 0) next = p + 2;
      p = ((n & 0x3f) << 8) | msg[p + 1]!;
      continue;
    }
    if (n & 0xc0) return null;
    if (p + 1 + n > msg.length) return null;
    labels.push(msg.toString("latin1", p + 1, p + 1 + n));
    p += 1 + n;
  }
  return null;
}

function formatAddress(type: number, rdata: Buffer): string {
  if (type === TYPE_A) return `${rdata[0]}.${rdata[1]}.${rdata[2]}.${rdata[3]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(rdata.readUInt16BE(i).toString(16));
  return canonicalAddress(groups.join(":"));
}

/** Parses a response to one of our questions; null when it is not one. */
function parseResponse(msg: Buffer, question: Buffer): Answer | null {
  if (msg.length < 12) return null;
  const flags = msg.readUInt16BE(2);
  // a response (QR) to a standard query, not truncated
  if ((flags & 0xf870) !== 0x8000 || flags & 0x0200) return null;
  if (msg.readUInt16BE(4) !== 1) return null;
  const q = msg.subarray(12, 12 + question.length);
  if (q.length !== question.length || !q.equals(question)) {
    // names are case-insensitive; compare lowercased
    if (q.toString("latin1").toLowerCase() !== question.toString("latin1").toLowerCase()) return null;
  }
  const rcode = flags & 0xf;
  // nginx ignores RCODEs above REFUSED: the query then times out
  if (rcode > 5) return null;
  const count = msg.readUInt16BE(6);
  const records: Array<{ type: number; value: string; ttl: number }> = [];
  let p = 12 + question.length;
  for (let i = 0; i < count; i++) {
    const owner = readName(msg, p);
    if (!owner || owner.next + 10 > msg.length) return null;
    p = owner.next;
    const type = msg.readUInt16BE(p);
    const cls = msg.readUInt16BE(p + 2);
    const ttl = Math.max(0, msg.readInt32BE(p + 4));
    const len = msg.readUInt16BE(p + 8);
    p += 10;
    if (p + len > msg.length) return null;
    if (cls === 1) {
      if (type === TYPE_PTR || type === TYPE_CNAME) {
        const target = readName(msg, p);
        if (!target) return null;
        records.push({ type, value: target.name, ttl });
      } else if ((type === TYPE_A && len === 4) || (type === TYPE_AAAA && len === 16)) {
        records.push({ type, value: formatAddress(type, msg.subarray(p, p + len)), ttl });
      }
    }
    p += len;
  }
  return { rcode, records };
}

/** The reverse-lookup name of an address (in-addr.arpa or ip6.arpa). */
export function reverseName(address: string): string | null {
  // an IPv4-mapped IPv6 address is looked up as the IPv4 address it is
  const addr = canonicalAddress(address);
  if (isIPv4(addr)) return `${addr.split(".").reverse().join(".")}.in-addr.arpa`;
  const bytes = ipv6Bytes(addr);
  if (!bytes) return null;
  const nibbles: string[] = [];
  for (const b of bytes) nibbles.push((b >> 4).toString(16), (b & 15).toString(16));
  return `${nibbles.reverse().join(".")}.ip6.arpa`;
}

/** The 16 bytes of an IPv6 address (IPv4-suffixed forms included); null if not one. */
function ipv6Bytes(addr: string): Buffer | null {
  if (!isIPv6(addr)) return null;
  let text = addr.replace(/%.*$/, "");
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const o = v4[1]!.split(".").map(Number);
    text = text.slice(0, -v4[1]!.length) + `${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? text.split("::") as [string, string] : [text, undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** One canonical text form per address, so equal addresses compare equal. */
export function canonicalAddress(addr: string): string {
  const bytes = ipv6Bytes(addr);
  if (!bytes) return addr;
  // IPv4-mapped IPv6 is the IPv4 address (what a dual-stack socket reports)
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    return `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  }
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return groups.join(":");
}

/** A resolver for one `resolver` directive; shares its cache between sessions. */
export class Resolver {
  readonly #spec: ResolverSpec;
  readonly #sockets = new Map<"udp4" | "udp6", Socket>();
  readonly #pending = new Map<number, Pending>();
  readonly #cache: ExpiringLruCache<Answer>;
  #next = 0;

  constructor(spec: ResolverSpec) {
    this.#spec = spec;
    this.#cache = new ExpiringLruCache(DEFAULT_CACHE_ENTRIES);
  }

  /** PTR lookup of a client address. */
  async reverse(addr: string, timeoutMs: number): Promise<PtrResult> {
    const name = reverseName(addr);
    if (!name) return { ok: false, code: 1 };
    const r = await this.#query(name, TYPE_PTR, Date.now() + timeoutMs);
    if (!r.ok) return r;
    const { rcode, records } = r.answer;
    if (rcode !== 0) return { ok: false, code: rcode as ResolveErrorCode };
    const ptr = records.find((x) => x.type === TYPE_PTR);
    // nginx: an empty answer is NXDOMAIN
    return ptr ? { ok: true, name: ptr.value } : { ok: false, code: RESOLVE_NXDOMAIN };
  }

  /**
   * A and AAAA lookup (as `ipv4=`/`ipv6=` allow). As nginx: an error code
   * from either query fails the lookup; no address at all is NXDOMAIN.
   */
  async lookup(name: string, timeoutMs: number): Promise<AddressResult> {
    const deadline = Date.now() + timeoutMs;
    const types = [...(this.#spec.ipv4 ? [TYPE_A] : []), ...(this.#spec.ipv6 ? [TYPE_AAAA] : [])];
    const results = await Promise.all(types.map((t) => this.#addresses(name, t, deadline)));
    const failed = results.find((r): r is { ok: false; code: ResolveErrorCode } => !r.ok);
    if (failed) return failed;
    const addresses = results.flatMap((r) => (r.ok ? r.addresses : []));
    return addresses.length > 0 ? { ok: true, addresses } : { ok: false, code: RESOLVE_NXDOMAIN };
  }

  /** Closes the sockets; pending lookups time out. */
  close(): void {
    for (const s of this.#sockets.values()) s.close();
    this.#sockets.clear();
  }

  async #addresses(name: string, type: number, deadline: number): Promise<AddressResult> {
    let qname = name;
    for (let depth = 0; depth <= MAX_CNAMES; depth++) {
      const r = await this.#query(qname, type, deadline);
      if (!r.ok) return r;
      if (r.answer.rcode !== 0) return { ok: false, code: r.answer.rcode as ResolveErrorCode };
      const addresses = r.answer.records.filter((x) => x.type === type).map((x) => x.value);
      const cname = r.answer.records.find((x) => x.type === TYPE_CNAME);
      if (addresses.length > 0 || !cname) return { ok: true, addresses };
      qname = cname.value;
    }
    return { ok: false, code: 2 };
  }

  async #query(name: string, type: number, deadline: number): Promise<QueryResult> {
    const key = `${type}:${name.toLowerCase()}`;
    const cached = this.#cache.get(key);
    if (cached) return { ok: true, answer: cached };
    const encoded = encodeName(name);
    if (!encoded || this.#spec.servers.length === 0) return { ok: false, code: 1 };
    const question = Buffer.concat([encoded, Buffer.from([type >> 8, type & 0xff, 0, 1])]);
    const answer = await this.#exchange(question, deadline);
    if (!answer) return { ok: false, code: RESOLVE_TIMEDOUT };
    const found = answer.records.filter((x) => x.type === type);
    if (answer.rcode === 0 && found.length > 0) {
      const ttl = this.#spec.valid ?? Math.min(...found.map((x) => x.ttl));
      this.#cache.set(key, answer, ttl * 1000);
    }
    return { ok: true, answer };
  }

  /** Sends the question until an answer arrives or the deadline passes (then null). */
  #exchange(question: Buffer, deadline: number): Promise<Answer | null> {
    let id: number;
    // unpredictable ids (and a fresh source port per burst, see below): no cheap spoofing
    do id = randomInt(0x10000);
    while (this.#pending.has(id));
    const header = Buffer.alloc(12);
    header.writeUInt16BE(id, 0);
    header.writeUInt16BE(0x0100, 2); // RD
    header.writeUInt16BE(1, 4);
    const packet = Buffer.concat([header, question]);
    return new Promise((resolve) => {
      let resend: NodeJS.Timeout | undefined;
      const finish = (answer: Answer | null): void => {
        clearTimeout(timer);
        clearTimeout(resend);
        this.#pending.delete(id);
        // idle: close the sockets, so a resolver dropped on reload leaves nothing open
        if (this.#pending.size === 0) this.close();
        resolve(answer);
      };
      const timer = setTimeout(() => finish(null), Math.max(0, deadline - Date.now()));
      const send = (): void => {
        this.#send(packet);
        resend = setTimeout(send, RESEND_MS);
      };
      this.#pending.set(id, { question, resolve: finish });
      send();
    });
  }

  #send(packet: Buffer): void {
    const servers = this.#spec.servers;
    const server = servers[this.#next++ % servers.length]!;
    const family = isIPv6(server.host) ? "udp6" : "udp4";
    let socket = this.#sockets.get(family);
    if (!socket) {
      socket = createSocket(family);
      socket.on("message", (msg, peer) => this.#receive(msg, peer));
      socket.on("error", () => {
        // ICMP errors and the like: the query is resent or times out, as in nginx
      });
      socket.unref();
      this.#sockets.set(family, socket);
    }
    socket.send(packet, server.port, server.host, () => {
      // a send error is a lost packet: the resend or the deadline handles it
    });
  }

  /** nginx's UDP sockets are connected: only a configured server can answer. */
  #fromServer(peer: RemoteInfo): boolean {
    return this.#spec.servers.some((s) => s.port === peer.port && (!isIP(s.host) || canonicalAddress(s.host) === canonicalAddress(peer.address)));
  }

  #receive(msg: Buffer, peer: RemoteInfo): void {
    if (msg.length < 12 || !this.#fromServer(peer)) return;
    const pending = this.#pending.get(msg.readUInt16BE(0));
    if (!pending) return;
    const answer = parseResponse(msg, pending.question);
    if (answer) pending.resolve(answer);
  }
}

const resolvers = new WeakMap<ResolverSpec, Resolver>();

/** The shared resolver of a `resolver` directive (one cache per directive, as nginx). */
export function resolverFor(spec: ResolverSpec): Resolver {
  let r = resolvers.get(spec);
  if (!r) {
    r = new Resolver(spec);
    resolvers.set(spec, r);
  }
  return r;
}

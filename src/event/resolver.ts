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
 * Responses are read as nginx 1.22.1 reads them (resolver-response.ts): one
 * it finds wrong is logged and dropped, and the query keeps waiting; A and
 * AAAA answers are combined by nginx's rules (#resolveName).
 * Not done: TCP fallback for truncated A/AAAA answers (nginx retries over
 * TCP; here the query keeps waiting for a resend's answer or times out).
 */
import { randomInt } from "node:crypto";
import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { isIP, isIPv4, isIPv6 } from "node:net";
import { DEFAULT_CACHE_ENTRIES, ExpiringLruCache } from "./resolver-cache.js";
import {
  type AddressAnswer,
  type PtrAnswer,
  TYPE_A,
  TYPE_AAAA,
  TYPE_PTR,
  copyName,
  readAddressAnswer,
  readHeader,
  readPtrAnswer,
  resolverStrerror,
  reverseQuestion,
} from "./resolver-response.js";

export { resolverStrerror };

/** Where the resolver's own lines go (nginx: the cycle's log, at error, without a connection). */
export interface ResolverLog {
  error(message: string): void;
}

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

/** nginx resends an unanswered query to the next server after this. */
const RESEND_MS = 5000;
/** nginx's NGX_RESOLVER_MAX_RECURSION for CNAME chains. */
const MAX_CNAMES = 50;

type Answer = PtrAnswer | AddressAnswer;

/** One question in flight, shared by every lookup that asks it (nginx's resolver node). */
interface Query {
  readonly key: string;
  readonly name: string;
  readonly qtype: number;
  readonly id: number;
  readonly waiters: Set<(answer: Answer | null) => void>;
  resend?: NodeJS.Timeout;
}

/** What a name lookup came to: addresses, an error code, or a CNAME to follow. */
type NameStep = AddressResult | { readonly cname: string };

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
  const [head, tail] = text.includes("::") ? (text.split("::") as [string, string]) : [text, undefined];
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
  /** Questions in flight, by `type:name` (as nginx finds its node by the question). */
  readonly #pending = new Map<string, Query>();
  readonly #cache: ExpiringLruCache<Answer>;
  /** Names known to be a CNAME: followed without asking again, as nginx's name node with its cname. */
  readonly #cnames: ExpiringLruCache<string>;
  /** Questions given up, by key: their id, for a short while (see #forget). */
  readonly #givenUp = new Map<string, number>();
  #log: ResolverLog | undefined;
  #next = 0;

  constructor(spec: ResolverSpec) {
    this.#spec = spec;
    this.#cache = new ExpiringLruCache(DEFAULT_CACHE_ENTRIES);
    this.#cnames = new ExpiringLruCache(DEFAULT_CACHE_ENTRIES);
  }

  /** PTR lookup of a client address; the resolver's own lines go to `log`. */
  async reverse(addr: string, timeoutMs: number, log?: ResolverLog): Promise<PtrResult> {
    if (log) this.#log = log;
    const name = reverseName(addr);
    if (!name) return { ok: false, code: 1 };
    const answer = (await this.#ask(name, TYPE_PTR, Date.now() + timeoutMs)) as PtrAnswer | null;
    if (!answer) return { ok: false, code: RESOLVE_TIMEDOUT };
    return "code" in answer ? { ok: false, code: answer.code as ResolveErrorCode } : { ok: true, name: answer.name };
  }

  /**
   * A and AAAA lookup (as `ipv4=`/`ipv6=` allow), CNAMEs followed up to
   * nginx's limit (then NXDOMAIN); see #resolveName for how the two answers
   * make one result.
   */
  async lookup(name: string, timeoutMs: number, log?: ResolverLog): Promise<AddressResult> {
    if (log) this.#log = log;
    const deadline = Date.now() + timeoutMs;
    let qname = name;
    for (let recursion = 0; ; recursion++) {
      const known = this.#cnames.get(qname);
      const step = known !== undefined ? { cname: known } : await this.#resolveName(qname, deadline);
      if (!("cname" in step)) return step;
      if (recursion >= MAX_CNAMES) return { ok: false, code: RESOLVE_NXDOMAIN };
      qname = step.cname;
    }
  }

  /** Closes the sockets; pending lookups time out. */
  close(): void {
    for (const s of this.#sockets.values()) s.close();
    this.#sockets.clear();
  }

  /**
   * nginx's ngx_resolver_process_a for one name node: an error code from
   * either query fails the lookup (the first one waits for the other);
   * NOERROR without records counts as no address; addresses from both are
   * the result; a CNAME is followed once neither query is pending; an
   * answer with neither address nor CNAME is logged and leaves the lookup
   * waiting (in the end, for the timeout).
   */
  #resolveName(name: string, deadline: number): Promise<NameStep> {
    return new Promise((resolve) => {
      // undefined: that query is pending; a type not asked counts as answered with none
      const count: Record<number, number | undefined> = { [TYPE_A]: this.#spec.ipv4 ? undefined : 0, [TYPE_AAAA]: this.#spec.ipv6 ? undefined : 0 };
      const found: Record<number, readonly string[]> = { [TYPE_A]: [], [TYPE_AAAA]: [] };
      let pendingCode = 0;
      let done = false;
      const finish = (step: NameStep): void => {
        done = true;
        resolve(step);
      };
      const addresses = (): AddressResult => ({ ok: true, addresses: [...found[TYPE_A]!, ...found[TYPE_AAAA]!] });
      const answered = (type: number, answer: AddressAnswer | null): void => {
        if (done) return;
        if (!answer) return finish({ ok: false, code: RESOLVE_TIMEDOUT });
        const other = count[type === TYPE_A ? TYPE_AAAA : TYPE_A];
        let code = answer.kind === "code" ? answer.code : 0;
        if (code === 0 && pendingCode) code = pendingCode;
        if (code === 0 && answer.kind === "empty") {
          count[type] = 0;
          if (other === undefined) return;
          if (other > 0) return finish(addresses());
          code = RESOLVE_NXDOMAIN;
        }
        if (code !== 0 || answer.kind !== "records") {
          count[type] = 0;
          if (other === undefined) {
            pendingCode = code;
            return;
          }
          return finish({ ok: false, code: code as ResolveErrorCode });
        }
        count[type] = answer.addresses.length;
        found[type] = answer.addresses.map(canonicalAddress);
        if (answer.addresses.length > 0 && other === undefined) return;
        if (other !== undefined && answer.addresses.length + other > 0) return finish(addresses());
        if (answer.cname) {
          if (other === undefined) return;
          const target = answer.cname();
          if (!target.ok) return this.#log?.error(target.log);
          this.#cnames.set(name, target.value, (this.#spec.valid ?? answer.ttl) * 1000);
          return finish({ cname: target.value });
        }
        this.#log?.error("no A or CNAME types in DNS response");
      };
      for (const type of [TYPE_A, TYPE_AAAA]) {
        if (count[type] === undefined) void this.#ask(name, type, deadline).then((a) => answered(type, a as AddressAnswer | null));
      }
    });
  }

  /** The answer to one question: from the cache, from a query in flight, or asked now; null at the deadline. */
  #ask(name: string, qtype: number, deadline: number): Promise<Answer | null> {
    const key = `${qtype}:${name.toLowerCase()}`;
    const cached = this.#cache.get(key);
    if (cached) return Promise.resolve(cached);
    let query = this.#pending.get(key);
    if (!query) {
      const encoded = encodeName(name);
      if (!encoded || this.#spec.servers.length === 0) return Promise.resolve(qtype === TYPE_PTR ? { code: 1 } : { kind: "code", code: 1 });
      query = this.#start(key, name.toLowerCase(), qtype, Buffer.concat([encoded, Buffer.from([qtype >> 8, qtype & 0xff, 0, 1])]));
    }
    const q = query;
    return new Promise((resolve) => {
      const waiter = (answer: Answer | null): void => {
        clearTimeout(timer);
        q.waiters.delete(waiter);
        // nobody waits any more: forget the question (a late answer is then "unexpected")
        if (q.waiters.size === 0) this.#forget(q, true);
        resolve(answer);
      };
      const timer = setTimeout(() => waiter(null), Math.max(0, deadline - Date.now()));
      q.waiters.add(waiter);
    });
  }

  /** Sends a new question, resent to the next server every RESEND_MS while it is pending. */
  #start(key: string, name: string, qtype: number, question: Buffer): Query {
    let id: number;
    // unpredictable ids (and a fresh source port per burst, see below): no cheap spoofing
    do id = randomInt(0x10000);
    while ([...this.#pending.values()].some((q) => q.id === id));
    const header = Buffer.alloc(12);
    header.writeUInt16BE(id, 0);
    header.writeUInt16BE(0x0100, 2); // RD
    header.writeUInt16BE(1, 4);
    const packet = Buffer.concat([header, question]);
    const query: Query = { key, name, qtype, id, waiters: new Set() };
    this.#pending.set(key, query);
    const send = (): void => {
      this.#send(packet);
      query.resend = setTimeout(send, RESEND_MS);
    };
    send();
    return query;
  }

  /**
   * Ends a question. One given up (its lookups timed out) is remembered
   * until its resend would have been due: nginx keeps the node that long and
   * takes a late answer without a word, so a late answer is no
   * "unexpected DNS response" here either (it is dropped, not cached).
   */
  #forget(query: Query, givenUp = false): void {
    clearTimeout(query.resend);
    if (this.#pending.get(query.key) === query) this.#pending.delete(query.key);
    if (givenUp) {
      this.#givenUp.set(query.key, query.id);
      setTimeout(() => {
        if (this.#givenUp.get(query.key) === query.id) this.#givenUp.delete(query.key);
      }, RESEND_MS).unref();
    }
    // idle: close the sockets, so a resolver dropped on reload leaves nothing open
    if (this.#pending.size === 0) this.close();
  }

  /** Hands an answer to every lookup waiting for it; a good answer is cached by TTL (or `valid=`). */
  #answer(query: Query, answer: Answer): void {
    const ttl = "ttl" in answer && (!("addresses" in answer) || answer.addresses.length > 0) ? answer.ttl : undefined;
    if (ttl !== undefined) this.#cache.set(query.key, answer, (this.#spec.valid ?? ttl) * 1000);
    for (const waiter of [...query.waiters]) waiter(answer);
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

  /** nginx's ngx_resolver_process_response and the per-type handlers: each check, in nginx's order, with its line. */
  #receive(msg: Buffer, peer: RemoteInfo): void {
    if (!this.#fromServer(peer)) return;
    const drop = (line: string): void => this.#log?.error(line);
    const nameOfQuery = (id: number): string | undefined => [...this.#pending.values()].find((q) => q.id === id && q.qtype !== TYPE_PTR)?.name;
    const header = readHeader(msg, nameOfQuery);
    if (!header.ok) return drop(header.log);
    const h = header.value;
    const question = copyName(msg, 12);
    if (!question.ok) return drop(question.log);
    let key = `${h.qtype}:${question.value}`;
    if (h.qtype === TYPE_PTR) {
      const reverse = reverseQuestion(msg);
      if (!reverse) return drop("invalid in-addr.arpa or ip6.arpa name in DNS response");
      key = `${TYPE_PTR}:${reverse}`;
    }
    const query = this.#pending.get(key);
    if (!query) return this.#givenUp.get(key) === h.ident ? undefined : drop(`unexpected DNS response for ${question.value}`);
    if (h.ident !== query.id) return drop(`wrong ident ${h.ident} in DNS response for ${question.value}, expect ${query.id}`);
    // nginx asks again over TCP; without TCP, the query waits for a resend's answer or times out
    if (h.truncated && h.qtype !== TYPE_PTR) return;
    const { answer, log } = h.qtype === TYPE_PTR ? readPtrAnswer(msg, h) : readAddressAnswer(msg, h);
    for (const line of log) drop(line);
    if (answer) {
      this.#forget(query);
      this.#answer(query, answer);
    }
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

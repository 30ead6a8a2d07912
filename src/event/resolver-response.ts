/**
 * Reading a DNS response as nginx 1.22.1 does (ngx_resolver.c:
 * ngx_resolver_process_response, _process_ptr, _process_a, _copy), with
 * its error-log texts. A response nginx finds wrong is not an answer: it is
 * logged and dropped, and the query keeps waiting (for a good answer, a
 * resend, or resolver_timeout). So a PTR answered only with records of
 * another type, a FORMERR, a short packet or one with a wrong id ends in a
 * timeout (110: [TEMPUNAVAIL] for SMTP), never in "no such name".
 *
 * Every function here returns what it found and the lines to log; nothing
 * here sends or waits (resolver.ts does).
 */

const TYPE_A = 1;
const TYPE_CNAME = 5;
const TYPE_PTR = 12;
const TYPE_AAAA = 28;
const TYPE_SRV = 33;
const TYPE_DNAME = 39;
/** The size of a header, and of an answer's fixed part (type, class, ttl, length). */
const HEADER = 12;
const RR_FIXED = 10;

export { TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_PTR };

/** What the header and the question of a response say. */
export interface ResponseHeader {
  readonly ident: number;
  /** the RCODE (0 to 5; others are dropped) */
  readonly code: number;
  /** ANCOUNT */
  readonly answers: number;
  /** TC: the answer did not fit */
  readonly truncated: boolean;
  readonly qtype: number;
  /** where the answer section starts */
  readonly answersAt: number;
}

/** A result, or the line nginx logs when it drops the response. */
export type Read<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly log: string };

const drop = (log: string): { ok: false; log: string } => ({ ok: false, log });

/** ngx_resolver_strerror. */
export function resolverStrerror(code: number): string {
  const texts = ["Format error", "Server failure", "Host not found", "Unimplemented", "Operation refused"];
  if (code > 0 && code < 6) return texts[code - 1]!;
  return code === 110 ? "Operation timed out" : "Unknown error";
}

/**
 * ngx_resolver_process_response up to the switch on the question type.
 * `nameOfQuery` names a pending name (A/AAAA) query by its id, for the
 * FORMERR line, as nginx looks it up.
 */
export function readHeader(msg: Buffer, nameOfQuery: (ident: number) => string | undefined): Read<ResponseHeader> {
  const n = msg.length;
  if (n < HEADER) return drop("short DNS response");
  const ident = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  const nqs = msg.readUInt16BE(4);
  const answers = msg.readUInt16BE(6);
  // a response (QR) to a standard query
  if ((flags & 0xf870) !== 0x8000) return drop(`invalid UDP DNS response ${ident} fl:${flags.toString(16).toUpperCase().padStart(4, "0")}`);
  const code = flags & 0xf;
  if (code === 1) {
    const name = nameOfQuery(ident);
    const tail = name === undefined ? "" : `, name:"${name}"`;
    return drop(`DNS error (1: ${resolverStrerror(1)}), query id:${ident}${tail}`);
  }
  if (code > 5) return drop(`DNS error (${code}: ${resolverStrerror(code)}), query id:${ident}`);
  if (nqs !== 1) return drop("invalid number of questions in DNS response");
  let i = HEADER;
  for (;;) {
    if (i >= n) return drop("short DNS response");
    if (msg[i]! & 0xc0) return drop("unexpected compression pointer in DNS response");
    if (msg[i] === 0) break;
    i += 1 + msg[i]!;
  }
  if (i++ === HEADER) return drop("zero-length domain name in DNS response");
  if (i + 4 + answers * (2 + RR_FIXED) > n) return drop("short DNS response");
  const qtype = msg.readUInt16BE(i);
  const qclass = msg.readUInt16BE(i + 2);
  if (qclass !== 1) return drop(`unknown query class ${qclass} in DNS response`);
  if (qtype !== TYPE_A && qtype !== TYPE_AAAA && qtype !== TYPE_SRV && qtype !== TYPE_PTR) return drop(`unknown query type ${qtype} in DNS response`);
  return { ok: true, value: { ident, code, answers, truncated: (flags & 0x0200) !== 0, qtype, answersAt: i + 4 } };
}

/**
 * ngx_resolver_copy: the name at `at`, lowercased (ASCII only), without
 * the final dot; "" for the root. At most 128 labels and pointers.
 */
export function copyName(msg: Buffer, at: number): Read<string> {
  const last = msg.length;
  let p = at;
  for (let i = 0; i < 128; i++) {
    if (p >= last) return drop("name is out of DNS response");
    let n = msg[p++]!;
    if (n === 0) return { ok: true, value: labelsAt(msg, at) };
    if (n & 0xc0) {
      if ((n & 0xc0) !== 0xc0) return drop("invalid label type in DNS response");
      if (p >= last) return drop("name is out of DNS response");
      n = ((n & 0x3f) << 8) + msg[p]!;
      p = n;
    } else {
      p += n;
    }
    if (p >= last) return drop("name is out of DNS response");
  }
  return drop("compression pointers loop in DNS response");
}

/** The labels of a name copyName() checked, joined by dots, A-Z lowercased. */
function labelsAt(msg: Buffer, at: number): string {
  const labels: string[] = [];
  let p = at;
  for (;;) {
    const n = msg[p++]!;
    if (n === 0) return labels.join(".");
    if (n & 0xc0) {
      p = ((n & 0x3f) << 8) + msg[p]!;
      continue;
    }
    labels.push(msg.toString("latin1", p, p + n).replace(/[A-Z]+/g, (s) => s.toLowerCase()));
    p += n;
  }
}

/**
 * The address a PTR question is about, as nginx reads it from the labels
 * (four decimal labels and in-addr.arpa, or 32 hex nibbles and ip6.arpa),
 * in the form reverseName() gives; null when it is neither.
 */
export function reverseQuestion(msg: Buffer): string | null {
  let i = HEADER;
  const octets: number[] = [];
  for (let k = 0; k < 4; k++) {
    const len = msg[i++] ?? 0;
    const text = msg.toString("latin1", i, i + len);
    if (!/^\d+$/.test(text) || Number(text) > 255) {
      octets.length = 0;
      break;
    }
    octets.push(Number(text));
    i += len;
  }
  if (octets.length === 4 && /^\x07in-addr\x04arpa\x00/i.test(msg.toString("latin1", i, i + 14))) {
    return `${octets.join(".")}.in-addr.arpa`;
  }
  i = HEADER;
  const nibbles: string[] = [];
  for (let k = 0; k < 32; k++) {
    if (msg[i++] !== 1) return null;
    const c = String.fromCharCode(msg[i++] ?? 0);
    if (!/^[0-9a-fA-F]$/.test(c)) return null;
    nibbles.push(c.toLowerCase());
  }
  return /^\x03ip6\x04arpa\x00/i.test(msg.toString("latin1", i, i + 10)) ? `${nibbles.join(".")}.ip6.arpa` : null;
}

/** One answer record's fixed part, found as nginx walks the answer section. */
interface Record {
  readonly type: number;
  readonly cls: number;
  readonly ttl: number;
  readonly len: number;
  /** where the rdata starts */
  readonly data: number;
}

/** Walks the answer section as _process_ptr and _process_a do; stops (with the line) where they give up. */
function* records(msg: Buffer, h: ResponseHeader): Generator<Record, string | undefined> {
  const n = msg.length;
  let i = h.answersAt;
  for (let a = 0; a < h.answers; a++) {
    const start = i;
    let owner = false;
    while (i < n) {
      if (msg[i]! & 0xc0) {
        i += 2;
        owner = true;
        break;
      }
      if (msg[i] === 0) {
        i++;
        if (i - start < 2) return "invalid name in DNS response";
        owner = true;
        break;
      }
      i += 1 + msg[i]!;
    }
    if (!owner || i + RR_FIXED >= n) return "short DNS response";
    const record = {
      type: msg.readUInt16BE(i),
      cls: msg.readUInt16BE(i + 2),
      ttl: Math.max(0, msg.readInt32BE(i + 4)),
      len: msg.readUInt16BE(i + 8),
      data: i + RR_FIXED,
    };
    yield record;
    i = record.data + record.len;
  }
  return undefined;
}

/** A PTR query's answer: an error code (NOERROR without answers is NXDOMAIN), or the name. */
export type PtrAnswer = { readonly code: number } | { readonly name: string; readonly ttl: number };

/**
 * _process_ptr after the id check: `answer` is undefined when the response
 * is dropped (the query keeps waiting); `log` holds nginx's lines either way.
 */
export function readPtrAnswer(msg: Buffer, h: ResponseHeader): { answer?: PtrAnswer; log: string[] } {
  if (h.code === 0 && h.answers === 0) return { answer: { code: 3 }, log: [] };
  if (h.code !== 0) return { answer: { code: h.code }, log: [] };
  const log: string[] = [];
  const walk = records(msg, h);
  for (let r = walk.next(); ; r = walk.next()) {
    if (r.done) {
      log.push(r.value ?? "no PTR type in DNS response");
      return { log };
    }
    const rr = r.value;
    if (rr.cls !== 1) return { log: [...log, `unexpected RR class ${rr.cls} in DNS response`] };
    if (rr.type === TYPE_PTR) {
      const name = copyName(msg, rr.data);
      return name.ok ? { answer: { name: name.value, ttl: rr.ttl }, log } : { log: [...log, name.log] };
    }
    if (rr.type !== TYPE_CNAME) log.push(`unexpected RR type ${rr.type} in DNS response`);
  }
}

/** An A or AAAA query's answer, before nginx combines the two (resolver.ts). */
export type AddressAnswer =
  | { readonly kind: "code"; readonly code: number }
  /** NOERROR without any record */
  | { readonly kind: "empty" }
  /**
   * The addresses found (maybe none) and, if there was a CNAME, its target,
   * read (and a bad one logged) only when nginx would follow it.
   */
  | { readonly kind: "records"; readonly addresses: readonly string[]; readonly cname?: () => Read<string>; readonly ttl: number };

/** _process_a after the id and truncation checks; `answer` undefined: dropped, as readPtrAnswer. */
export function readAddressAnswer(msg: Buffer, h: ResponseHeader): { answer?: AddressAnswer; log: string[] } {
  if (h.code !== 0) return { answer: { kind: "code", code: h.code }, log: [] };
  if (h.answers === 0) return { answer: { kind: "empty" }, log: [] };
  const log: string[] = [];
  const addresses: string[] = [];
  let cnameAt: number | undefined;
  let ttl = 0x7fffffff;
  const walk = records(msg, h);
  for (let r = walk.next(); ; r = walk.next()) {
    if (r.done) {
      if (r.value !== undefined) return { log: [...log, r.value] };
      break;
    }
    const rr = r.value;
    if (rr.cls !== 1) return { log: [...log, `unexpected RR class ${rr.cls} in DNS response`] };
    ttl = Math.min(ttl, rr.ttl);
    if (rr.type === TYPE_A || rr.type === TYPE_AAAA) {
      const name = rr.type === TYPE_A ? "A" : "AAAA";
      const size = rr.type === TYPE_A ? 4 : 16;
      if (rr.type !== h.qtype) return { log: [...log, `unexpected ${name} record in DNS response`] };
      if (rr.len !== size) return { log: [...log, `invalid ${name} record in DNS response`] };
      if (rr.data + size > msg.length) return { log: [...log, "short DNS response"] };
      addresses.push(formatAddress(msg.subarray(rr.data, rr.data + size)));
    } else if (rr.type === TYPE_CNAME) {
      cnameAt = rr.data;
    } else if (rr.type !== TYPE_DNAME) {
      log.push(`unexpected RR type ${rr.type} in DNS response`);
    }
  }
  const at = cnameAt;
  return { answer: { kind: "records", addresses, ...(at === undefined ? {} : { cname: () => copyName(msg, at) }), ttl }, log };
}

/** An A (4 bytes) or AAAA (16 bytes) address in text form (IPv6: eight groups, canonicalAddress() shortens nothing). */
export function formatAddress(rdata: Buffer): string {
  if (rdata.length === 4) return `${rdata[0]}.${rdata[1]}.${rdata[2]}.${rdata[3]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(rdata.readUInt16BE(i).toString(16));
  return groups.join(":");
}

/** A tiny fake DNS server on 127.0.0.1 (UDP) for resolver tests. */
import { createSocket, type Socket } from "node:dgram";

/**
 * One answer record; `data` is an address (A/AAAA), a raw name (PTR/CNAME,
 * any bytes; MX: the exchange) or text (TXT).
 */
export interface FakeRecord {
  readonly type: "A" | "AAAA" | "PTR" | "CNAME" | "MX" | "TXT";
  readonly data: string;
  readonly ttl?: number;
  /** The owner name (default: the question's, as a compression pointer). */
  readonly owner?: string;
  /** The record's class (default 1, IN). */
  readonly class?: number;
}

/** What the server does for one question. */
export type FakeAnswer =
  | {
      readonly rcode?: number;
      readonly records?: readonly FakeRecord[];
      readonly delayMs?: number;
      /** answer from another port, as a spoofer would */
      readonly fromOtherPort?: true;
      /** the header flags as sent (default: QR RD RA and the rcode) */
      readonly flags?: number;
      /** answer with another id than the query's, as a blind spoofer would */
      readonly wrongId?: true;
      /** answer another question (the same type, this name) */
      readonly question?: string;
      /** QDCOUNT as sent (the question is still sent once) */
      readonly questions?: number;
      /** drop this many bytes from the end of the packet */
      readonly cut?: number;
      /** a second packet sent right after this one */
      readonly then?: FakeAnswer;
    }
  /** never answer */
  | "drop";

const TYPES = { A: 1, CNAME: 5, PTR: 12, MX: 15, TXT: 16, AAAA: 28 } as const;
const NAMES: Record<number, string> = { 1: "A", 5: "CNAME", 12: "PTR", 28: "AAAA" };

function encodeName(name: string): Buffer {
  const parts: Buffer[] = [];
  for (const label of name.split(".")) {
    if (label === "") continue;
    const b = Buffer.from(label, "latin1");
    parts.push(Buffer.from([b.length]), b);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

function rdata(r: FakeRecord): Buffer {
  if (r.type === "A") return Buffer.from(r.data.split(".").map(Number));
  if (r.type === "AAAA") {
    const [head, tail] = r.data.split("::") as [string, string | undefined];
    const h = head ? head.split(":") : [];
    const t = tail ? tail.split(":") : [];
    const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
    const out = Buffer.alloc(16);
    groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
    return out;
  }
  if (r.type === "MX") return Buffer.concat([Buffer.from([0, 10]), encodeName(r.data)]);
  if (r.type === "TXT") return Buffer.concat([Buffer.from([r.data.length]), Buffer.from(r.data, "latin1")]);
  return encodeName(r.data);
}

/** The fake server: `answers` maps `TYPE name` (e.g. `PTR 1.0.0.127.in-addr.arpa`) to behaviour. */
export class FakeDns {
  readonly #socket: Socket = createSocket("udp4");
  readonly #other: Socket = createSocket("udp4");
  readonly answers = new Map<string, FakeAnswer>();
  /** Behaviour for questions not in `answers` (default: NXDOMAIN); lets a test answer thousands of names. */
  fallback: ((key: string) => FakeAnswer | undefined) | undefined;
  /** Every question received, as `TYPE name`. */
  readonly queries: string[] = [];
  port = 0;

  async start(): Promise<this> {
    this.#socket.on("message", (msg, peer) => this.#reply(msg, peer.port, peer.address));
    await new Promise<void>((r) => this.#socket.bind(0, "127.0.0.1", () => r()));
    await new Promise<void>((r) => this.#other.bind(0, "127.0.0.1", () => r()));
    this.port = this.#socket.address().port;
    return this;
  }

  close(): Promise<void> {
    this.#other.close();
    return new Promise((r) => this.#socket.close(() => r()));
  }

  #reply(msg: Buffer, port: number, address: string): void {
    // question: labels from offset 12
    const labels: string[] = [];
    let p = 12;
    while (msg[p]! !== 0) {
      labels.push(msg.toString("latin1", p + 1, p + 1 + msg[p]!));
      p += 1 + msg[p]!;
    }
    const qtype = msg.readUInt16BE(p + 1);
    const question = msg.subarray(12, p + 5);
    const key = `${NAMES[qtype] ?? qtype} ${labels.join(".")}`;
    this.queries.push(key);
    const answer = this.answers.get(key) ?? this.fallback?.(key) ?? { rcode: 3 };
    this.#answer(answer, msg.readUInt16BE(0), question, port, address);
  }

  #answer(answer: FakeAnswer, id: number, asked: Buffer, port: number, address: string): void {
    if (answer === "drop") return;
    const records = answer.records ?? [];
    const question = answer.question === undefined ? asked : Buffer.concat([encodeName(answer.question), asked.subarray(-4)]);
    const header = Buffer.alloc(12);
    header.writeUInt16BE(answer.wrongId ? id ^ 0x5a5a : id, 0);
    header.writeUInt16BE(answer.flags ?? 0x8180 | (answer.rcode ?? 0), 2);
    header.writeUInt16BE(answer.questions ?? 1, 4);
    header.writeUInt16BE(records.length, 6);
    const rrs = records.map((r) => {
      const data = rdata(r);
      const owner = r.owner === undefined ? Buffer.from([0xc0, 0x0c]) : encodeName(r.owner);
      const fixed = Buffer.alloc(10);
      fixed.writeUInt16BE(TYPES[r.type], 0);
      fixed.writeUInt16BE(r.class ?? 1, 2);
      fixed.writeUInt32BE(r.ttl ?? 60, 4);
      fixed.writeUInt16BE(data.length, 8);
      return Buffer.concat([owner, fixed, data]);
    });
    const whole = Buffer.concat([header, question, ...rrs]);
    const packet = whole.subarray(0, whole.length - (answer.cut ?? 0));
    const from = answer.fromOtherPort ? this.#other : this.#socket;
    const send = (): void => {
      from.send(packet, port, address);
      if (answer.then) this.#answer(answer.then, id, asked, port, address);
    };
    if (answer.delayMs) setTimeout(send, answer.delayMs);
    else send();
  }
}

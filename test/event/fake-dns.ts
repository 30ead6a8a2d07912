/** A tiny fake DNS server on 127.0.0.1 (UDP) for resolver tests. */
import { createSocket, type Socket } from "node:dgram";

/** One answer record; `data` is an address (A/AAAA) or a raw name (PTR/CNAME, any bytes). */
export interface FakeRecord {
  readonly type: "A" | "AAAA" | "PTR" | "CNAME";
  readonly data: string;
  readonly ttl?: number;
}

/** What the server does for one question. */
export type FakeAnswer =
  | {
      readonly rcode?: number;
      readonly records?: readonly FakeRecord[];
      readonly delayMs?: number;
      /** answer from another port, as a spoofer would */
      readonly fromOtherPort?: true;
    }
  /** never answer */
  | "drop";

const TYPES = { A: 1, CNAME: 5, PTR: 12, AAAA: 28 } as const;
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
    this.port = (this.#socket.address()).port;
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
    if (answer === "drop") return;
    const records = answer.records ?? [];
    const header = Buffer.alloc(12);
    header.writeUInt16BE(msg.readUInt16BE(0), 0);
    header.writeUInt16BE(0x8180 | (answer.rcode ?? 0), 2);
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(records.length, 6);
    const rrs = records.map((r) => {
      const data = rdata(r);
      const fixed = Buffer.alloc(12);
      fixed.writeUInt16BE(0xc00c, 0); // owner: the question name
      fixed.writeUInt16BE(TYPES[r.type], 2);
      fixed.writeUInt16BE(1, 4);
      fixed.writeUInt32BE(r.ttl ?? 60, 6);
      fixed.writeUInt16BE(data.length, 10);
      return Buffer.concat([fixed, data]);
    });
    const packet = Buffer.concat([header, question, ...rrs]);
    const from = answer.fromOtherPort ? this.#other : this.#socket;
    const send = () => from.send(packet, port, address);
    if (answer.delayMs) setTimeout(send, answer.delayMs);
    else send();
  }
}

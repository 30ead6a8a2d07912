/**
 * A time-bounded random-bytes campaign against a RUNNING proxy: mutated
 * recorded sessions (and some pure noise) to every protocol's port, plain
 * and TLS, cut into random writes, several clients at once. Afterwards the
 * process must still run, serve a well-formed client on every port, and its
 * error log must hold no [alert] or [crit] line.
 *
 * POSTERN_FUZZ_SECONDS sets the budget (default 10), POSTERN_FUZZ_SEED replays.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { MailClient } from "../support/client.js";
import { PORTS, PASSWORD, USER, assertHealthy, goodSession, severeLines, startBed, type Bed, type Protocol } from "../hostile/env.js";
import { fuzzSeconds, mutateBytes } from "./fuzz-support.js";

const b64 = (s: string): string => Buffer.from(s, "latin1").toString("base64");

/** Recorded good sessions, one string per client write. */
const TRANSCRIPTS: Record<Protocol, string[][]> = {
  imap: [
    ["a1 CAPABILITY\r\n", `a2 LOGIN ${USER} ${PASSWORD}\r\n`, "a3 SELECT INBOX\r\n", "a4 FETCH 1 BODY[]\r\n", "a5 LOGOUT\r\n"],
    ["a1 AUTHENTICATE PLAIN\r\n", `${b64(`\0${USER}\0${PASSWORD}`)}\r\n`, "a2 NOOP\r\n", "a3 LOGOUT\r\n"],
    ["a1 AUTHENTICATE LOGIN\r\n", `${b64(USER)}\r\n`, `${b64(PASSWORD)}\r\n`, "a2 LOGOUT\r\n"],
    ["a1 LOGIN {12}\r\n", `${USER} {15}\r\n`, `${PASSWORD}\r\n`, "a2 LOGOUT\r\n"],
    ["a1 NOOP\r\n", "a2 STARTTLS\r\n", "a3 LOGOUT\r\n"],
  ],
  pop3: [
    ["CAPA\r\n", `USER ${USER}\r\n`, `PASS ${PASSWORD}\r\n`, "STAT\r\n", "RETR 1\r\n", "QUIT\r\n"],
    ["AUTH PLAIN\r\n", `${b64(`\0${USER}\0${PASSWORD}`)}\r\n`, "LIST\r\n", "QUIT\r\n"],
    [`AUTH PLAIN ${b64(`\0${USER}\0${PASSWORD}`)}\r\n`, "NOOP\r\n", "QUIT\r\n"],
    ["NOOP\r\n", "STLS\r\n", "QUIT\r\n"],
  ],
  smtp: [
    [
      "EHLO client.example\r\n",
      `AUTH PLAIN ${b64(`\0${USER}\0${PASSWORD}`)}\r\n`,
      "MAIL FROM:<a@example.com>\r\n",
      "RCPT TO:<b@example.com>\r\n",
      "DATA\r\n",
      "Subject: x\r\n\r\nhello\r\n.\r\n",
      "QUIT\r\n",
    ],
    ["HELO client.example\r\n", "AUTH LOGIN\r\n", `${b64(USER)}\r\n`, `${b64(PASSWORD)}\r\n`, "RSET\r\n", "QUIT\r\n"],
    ["EHLO x\r\n", "STARTTLS\r\n", "QUIT\r\n"],
    ["EHLO x\r\n", "MAIL FROM:<a@example.com> SIZE=10\r\n", "VRFY root\r\n", "NOOP\r\n", "QUIT\r\n"],
  ],
};

/** mulberry32: a small seeded PRNG, so a failing campaign replays with the same seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One hostile client: connect, send a mutated session in random writes, read a little between writes, leave. */
async function hostileClient(bed: Bed, rand: () => number): Promise<void> {
  const port = PORTS[Math.floor(rand() * PORTS.length)]!;
  let client: MailClient | undefined;
  try {
    client = await MailClient.connect({ port: bed.ports[port.name], timeoutMs: 2000, ...(port.tls ? { tls: {} } : {}) });
    const sessions = TRANSCRIPTS[port.protocol];
    const writes =
      rand() < 0.1
        ? [Buffer.from(Array.from({ length: 1 + Math.floor(rand() * 2000) }, () => Math.floor(rand() * 256)))]
        : sessions[Math.floor(rand() * sessions.length)]!.map((w) => (rand() < 0.35 ? mutateBytes(Buffer.from(w, "latin1"), rand) : Buffer.from(w, "latin1")));
    for (const w of writes) {
      // cut each write into up to three pieces
      const cut = Math.floor(rand() * (w.length + 1));
      for (const piece of rand() < 0.5 ? [w] : [w.subarray(0, cut), w.subarray(cut)]) {
        if (piece.length === 0 || client.closed) continue;
        await client.send(piece);
      }
      await client.readAll(rand() < 0.3 ? 30 : 5);
      if (client.closed) break;
    }
  } catch {
    // resets, refused TLS handshakes and closes are all fair answers to a hostile client
  } finally {
    client?.close();
  }
}

test("live campaign: mutated sessions on every port leave the proxy alive, serving and with a clean log", async () => {
  const seconds = fuzzSeconds(10);
  const seed =
    Number.isInteger(Number(process.env.POSTERN_FUZZ_SEED)) && process.env.POSTERN_FUZZ_SEED ? Number(process.env.POSTERN_FUZZ_SEED) : Date.now() & 0x7fffffff;
  const bed = await startBed({ timeout: "3s" });
  let clients = 0;
  try {
    const deadline = Date.now() + seconds * 1000;
    const worker = async (n: number): Promise<void> => {
      const rand = prng(seed + n);
      while (Date.now() < deadline) {
        await hostileClient(bed, rand);
        clients++;
        // now and then a good client must be served in the middle of the campaign
        if (clients % 50 === 0) await goodSession(bed, PORTS[clients % PORTS.length]!.name);
      }
    };
    await Promise.all([0, 1, 2, 3].map(worker));
    for (const { name } of PORTS) await goodSession(bed, name);
    assertHealthy(bed);
    assert.ok(clients >= 20, `only ${clients} hostile clients ran`);
  } catch (e) {
    throw new Error(`campaign seed ${seed} (replay with POSTERN_FUZZ_SEED=${seed}), ${clients} clients: ${(e as Error).message}`, { cause: e });
  } finally {
    await bed.stop();
  }
  assert.deepEqual(severeLines(bed.proxy.errorLog(), bed.proxy.kind), []);
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, connect, type Socket } from "node:net";
import { once } from "node:events";
import { ConnectionLog, ErrorLog, MemorySink } from "../../src/core/log.js";
import { readProxyProtocol, type ProxyReadOutcome } from "../../src/event/proxy-protocol-reader.js";

/** A real connection whose accepted side is being read by readProxyProtocol. */
interface Connection {
  readonly client: Socket;
  readonly outcome: Promise<ProxyReadOutcome>;
  readonly sink: MemorySink;
  /** The accepted side, which the reader reads. */
  readonly side: Socket;
  close(): Promise<void>;
}

async function openConnection(timeoutMs: number): Promise<Connection> {
  const sink = new MemorySink(1 << 16, "debug");
  const log = new ConnectionLog(new ErrorLog([sink]), 3, { client: "127.0.0.1", server: "127.0.0.1:143" });
  let side: Socket | undefined;
  let started!: (reader: { outcome: Promise<ProxyReadOutcome> }) => void;
  const reading = new Promise<{ outcome: Promise<ProxyReadOutcome> }>((r) => {
    started = r;
  });
  const server = createServer({ pauseOnConnect: true }, (s) => {
    side = s;
    started({ outcome: readProxyProtocol(s, timeoutMs, log) });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const client = connect((server.address() as { port: number }).port, "127.0.0.1");
  client.on("error", () => {});
  await once(client, "connect");
  // Resolves once the reader runs (its timer is then armed), to the reader's outcome.
  const { outcome } = await reading;
  return {
    client,
    outcome,
    sink,
    side: side!,
    async close(): Promise<void> {
      client.destroy();
      side?.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function withConnection(send: (c: Socket) => void, timeoutMs = 2000): Promise<{ outcome: ProxyReadOutcome; logs: string }> {
  const conn = await openConnection(timeoutMs);
  send(conn.client);
  const outcome = await conn.outcome;
  await conn.close();
  return { outcome, logs: conn.sink.contents };
}

/** Lets pending I/O and promise callbacks run (setImmediate is not mocked). */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

test("v1 header with pipelined bytes: addresses and the rest", async () => {
  const { outcome } = await withConnection((c) => c.write("PROXY TCP4 192.0.2.1 127.0.0.1 5000 143\r\na1 CAPABILITY\r\n"));
  assert.deepEqual(outcome, {
    kind: "ok",
    addresses: { srcAddr: "192.0.2.1", dstAddr: "127.0.0.1", srcPort: 5000, dstPort: 143 },
    tlvs: undefined,
    rest: Buffer.from("a1 CAPABILITY\r\n"),
  });
});

test("UNKNOWN: no addresses", async () => {
  const { outcome } = await withConnection((c) => c.write("PROXY UNKNOWN\r\n"));
  assert.deepEqual(outcome, { kind: "ok", rest: Buffer.alloc(0) });
});

test("broken headers: logged, closed", async () => {
  const a = await withConnection((c) => c.write("HELLO\r\n"));
  assert.deepEqual(a.outcome, { kind: "close" });
  assert.match(a.logs, /\[error\] .*\*3 broken header: "HELLO" while reading PROXY protocol, client: 127\.0\.0\.1, server: 127\.0\.0\.1:143\n/);
});

test("a header split across reads is judged on its first part, at once", { timeout: 20_000 }, async (t) => {
  // nginx peeks once. The reader's timer is mocked and never advanced, so a
  // reader that waited for the rest of the header would never answer.
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const conn = await openConnection(2000);
  conn.client.write("PROXY TCP4 1.2.3.4 ");
  const outcome = await conn.outcome;
  conn.client.write("5.6.7.8 1 2\r\n");
  await conn.close();
  assert.deepEqual(outcome, { kind: "close" });
  assert.match(conn.sink.contents, /broken header: "PROXY TCP4 1\.2\.3\.4 " while reading PROXY protocol/);
});

test("nothing sent: client timed out, after the timeout and not before", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const conn = await openConnection(200);
  let settled = false;
  void conn.outcome.then(() => {
    settled = true;
  });
  t.mock.timers.tick(199);
  await settle();
  assert.equal(settled, false, "still waiting 1 ms before the timeout");
  t.mock.timers.tick(1);
  const outcome = await conn.outcome;
  await conn.close();
  assert.deepEqual(outcome, { kind: "close" });
  assert.match(conn.sink.contents, /\[info\] .*client timed out \(110: Connection timed out\) while reading PROXY protocol/);
});

test(
  "a connection destroyed while its header is awaited (worker shutdown) ends the wait: no timer left to log a timeout later (mock timers)",
  { timeout: 10_000 },
  async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    const conn = await openConnection(150);
    conn.side.destroy();
    assert.deepEqual(await conn.outcome, { kind: "close" });
    t.mock.timers.tick(1000);
    assert.doesNotMatch(conn.sink.contents, /timed out/);
    await conn.close();
  },
);

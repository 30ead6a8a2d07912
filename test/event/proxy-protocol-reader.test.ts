import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, connect, type Socket } from "node:net";
import { once } from "node:events";
import { ConnectionLog, ErrorLog, MemorySink } from "../../src/core/log.js";
import { readProxyProtocol, type ProxyReadOutcome } from "../../src/event/proxy-protocol-reader.js";

async function withConnection(send: (c: Socket) => void, timeoutMs = 2000): Promise<{ outcome: ProxyReadOutcome; logs: string }> {
  const sink = new MemorySink(1 << 16, "debug");
  const log = new ConnectionLog(new ErrorLog([sink]), 3, { client: "127.0.0.1", server: "127.0.0.1:143" });
  let result!: Promise<ProxyReadOutcome>;
  let side!: Socket;
  const server = createServer({ pauseOnConnect: true }, (s) => { side = s; result = readProxyProtocol(s, timeoutMs, log); });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const c = connect((server.address() as { port: number }).port, "127.0.0.1");
  c.on("error", () => {});
  await once(c, "connect");
  send(c);
  while (result === undefined) await new Promise((r) => setTimeout(r, 5));
  const outcome = await result;
  c.destroy();
  side.destroy();
  await new Promise<void>((r) => server.close(() => r()));
  return { outcome, logs: sink.contents };
}

test("v1 header with pipelined bytes: addresses and the rest", async () => {
  const { outcome } = await withConnection((c) => c.write("PROXY TCP4 192.0.2.1 127.0.0.1 5000 143\r\na1 CAPABILITY\r\n"));
  assert.deepEqual(outcome, { kind: "ok", addresses: { srcAddr: "192.0.2.1", dstAddr: "127.0.0.1", srcPort: 5000, dstPort: 143 }, tlvs: undefined, rest: Buffer.from("a1 CAPABILITY\r\n") });
});

test("UNKNOWN: no addresses", async () => {
  const { outcome } = await withConnection((c) => c.write("PROXY UNKNOWN\r\n"));
  assert.deepEqual(outcome, { kind: "ok", rest: Buffer.alloc(0) });
});

test("broken and split headers: logged, closed", async () => {
  const a = await withConnection((c) => c.write("HELLO\r\n"));
  assert.deepEqual(a.outcome, { kind: "close" });
  assert.match(a.logs, /\[error\] .*\*3 broken header: "HELLO" while reading PROXY protocol, client: 127\.0\.0\.1, server: 127\.0\.0\.1:143\n/);
  const b = await withConnection((c) => { c.write("PROXY TCP4 1.2.3.4 "); setTimeout(() => c.write("5.6.7.8 1 2\r\n"), 50); });
  assert.deepEqual(b.outcome, { kind: "close" });
  assert.match(b.logs, /broken header: "PROXY TCP4 1\.2\.3\.4 " while reading PROXY protocol/);
});

test("nothing sent: client timed out", async () => {
  const t0 = Date.now();
  const { outcome, logs } = await withConnection(() => {}, 200);
  assert.ok(Date.now() - t0 >= 190);
  assert.deepEqual(outcome, { kind: "close" });
  assert.match(logs, /\[info\] .*client timed out \(110: Connection timed out\) while reading PROXY protocol/);
});

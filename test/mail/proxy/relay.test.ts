import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { Socket } from "node:net";
import { execFileSync } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect, createServer as createTlsServer } from "node:tls";
import { ConnectionLog, ErrorLog, MemorySink } from "../../../src/core/log.js";
import { proxySession } from "../../../src/mail/proxy/proxy.js";
import { fakeBackend, runProxy, serverConf, until } from "./fake.js";
import { proxyTimeout } from "../../../src/mail/proxy/module.js";
import { pop3LoginSteps } from "../../../src/mail/proxy/login-pop3.js";
import type { Directive } from "../../../src/conf/directive.js";

const d = <T>(x: Directive<T>, v: T): readonly [Directive<unknown>, unknown] => [x, v];
const POP3_OK = ["+OK\r\n", "+OK in\r\n"] as const;

/** Deterministic pseudo-random 64 KiB blocks (xorshift), so both ends can hash the same stream. */
function block(i: number): Buffer {
  const b = Buffer.alloc(65536);
  let x = ((i + 1) * 2654435761) >>> 0;
  for (let k = 0; k < b.length; k += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b.writeUInt32LE(x, k);
  }
  return b;
}

/** Writes `blocks` blocks respecting backpressure; resolves with the hash of what was sent. */
async function pump(s: Socket, blocks: number, progress: { sent: number }): Promise<string> {
  const h = createHash("sha256");
  for (let i = 0; i < blocks; i++) {
    const b = block(i % 16);
    h.update(b);
    progress.sent += b.length;
    if (!s.write(b)) await new Promise<void>((r) => s.once("drain", () => r()));
  }
  return h.digest("hex");
}

test("backend -> slow client: 50 MB byte-exact, proxy holds a bounded amount", { timeout: 60000 }, async () => {
  const blocks = 800; // 50 MiB
  const progress = { sent: 0 };
  let sentHash: Promise<string> | undefined;
  // The backend starts streaming on RETR, as data right behind "+OK in" would be a too long login reply.
  const be = await fakeBackend("+OK\r\n", [...POP3_OK, undefined], (s) => {
    sentHash = pump(s, blocks, progress);
  });
  const run = await runProxy({ protocol: "pop3", backendPort: be.port, manualRead: true });
  run.client.write("RETR 1\r\n");
  const side = await run.serverSide;
  const h = createHash("sha256");
  let got = 0;
  let prefix = Buffer.alloc(0);
  let maxHeld = 0;
  let maxLag = 0;
  let sawPaused = false;
  const sample = setInterval(() => {
    maxHeld = Math.max(maxHeld, side.writableLength);
    maxLag = Math.max(maxLag, progress.sent - got);
  }, 5);
  const total = "+OK in\r\n".length + blocks * 65536;
  // A slow reader: read a little, then sleep.
  while (got < total) {
    const chunk = (run.client.read(256 * 1024) as Buffer | null) ?? (run.client.read() as Buffer | null);
    if (chunk === null) {
      await new Promise((r) => setTimeout(r, 2));
      continue;
    }
    if (got < 8) {
      prefix = Buffer.concat([prefix, chunk]);
      if (prefix.length >= 8) {
        assert.equal(prefix.subarray(0, 8).toString(), "+OK in\r\n");
        h.update(prefix.subarray(8));
      }
    } else h.update(chunk);
    got += chunk.length;
    if (side.isPaused() || side.writableLength > 0) sawPaused = true;
    if ((got >> 20) % 4 === 0) await new Promise((r) => setTimeout(r, 1));
  }
  clearInterval(sample);
  assert.equal(h.digest("hex"), await sentHash);
  // Node's socket buffer (highWaterMark 16 KiB) plus one read chunk (64 KiB) at most.
  assert.ok(maxHeld <= 128 * 1024, `proxy held ${maxHeld} bytes for the client`);
  // The backend cannot run ahead by more than the kernel socket buffers and those few chunks.
  assert.ok(maxLag < 24 * 1024 * 1024, `backend ran ${maxLag} bytes ahead of the client`);
  assert.ok(sawPaused);
  await run.close();
  await be.close();
});

test("client -> slow backend: 8 MB byte-exact, client reading pauses", { timeout: 60000 }, async () => {
  const h = createHash("sha256");
  let got = 0;
  let backendSock: Socket | undefined;
  const be = await fakeBackend("+OK\r\n", POP3_OK, (s) => {
    backendSock = s;
  });
  const run = await runProxy({ protocol: "pop3", backendPort: be.port });
  await until(() => run.text().includes("+OK in") && backendSock !== undefined);
  const bs = backendSock!;
  const before = be.received[0]!.length;
  bs.pause();
  const side = await run.serverSide;
  const progress = { sent: 0 };
  const sentHash = pump(run.client, 128, progress);
  await until(() => side.isPaused(), 5000, "proxy to pause reading the client");
  // Now drain slowly.
  const sawPaused = true;
  bs.removeAllListeners("data");
  bs.on("data", (c: Buffer) => {
    h.update(c);
    got += c.length;
    bs.pause();
    setTimeout(() => bs.resume(), 1);
  });
  bs.resume();
  await until(() => got >= 128 * 65536, 30000, "all bytes");
  assert.equal(before, "USER user\r\nPASS secret\r\n".length);
  assert.equal(h.digest("hex"), await sentHash);
  assert.ok(sawPaused);
  await run.close();
  await be.close();
});

test("client EOF closes both sides (no half-close), log proxied session done", async () => {
  let backendClosed = false;
  const be = await fakeBackend("+OK\r\n", POP3_OK, (s) =>
    s.on("close", () => {
      backendClosed = true;
    }),
  );
  const run = await runProxy({ protocol: "pop3", backendPort: be.port, login: "user" });
  await until(() => run.text().includes("+OK in"));
  run.client.end("QUIT\r\n");
  await run.clientClosed;
  await until(() => backendClosed);
  assert.ok(be.received[0]!.toString().endsWith("QUIT\r\n"));
  await run.finished;
  assert.match(run.logs.contents, /\[info\] .*\*1 proxied session done, client: 127\.0\.0\.1, server: [^,]+, login: "user", upstream: 127\.0\.0\.1:\d+\n/);
  await run.close();
  await be.close();
});

test("backend EOF: its last bytes are delivered, then the client is closed", async () => {
  const tail = Buffer.alloc(300000, 0x61);
  const be = await fakeBackend("+OK\r\n", [...POP3_OK, undefined], (s) => {
    s.end(Buffer.concat([Buffer.from("+OK bye\r\n"), tail]));
  });
  const run = await runProxy({ protocol: "pop3", backendPort: be.port });
  await until(() => run.text().includes("+OK in"));
  run.client.write("QUIT\r\n");
  await run.clientClosed;
  assert.equal(run.bytes().length, "+OK in\r\n+OK bye\r\n".length + tail.length);
  await run.finished;
  await run.close();
  await be.close();
});

test("client reset: logged at info, backend closed", async () => {
  let backendClosed = false;
  const be = await fakeBackend("+OK\r\n", POP3_OK, (s) =>
    s.on("close", () => {
      backendClosed = true;
    }),
  );
  const run = await runProxy({ protocol: "pop3", backendPort: be.port });
  await until(() => run.text().includes("+OK in"));
  run.client.resetAndDestroy();
  await until(() => backendClosed);
  await run.finished;
  assert.match(run.logs.contents, /\[info\] .*recv\(\) failed \(104: Connection reset by peer\) while proxying and reading from client/);
  await run.close();
  await be.close();
});

/** Waits for real I/O under mock timers: polls with setImmediate, which is not mocked. */
async function untilIo(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r));
}

const count = (text: string, word: string): number => text.split(word).length - 1;

// proxy_timeout runs on mocked time (setTimeout and Date.now): the sockets
// are real, but no assertion depends on how fast the machine is. The relay
// closes the client socket synchronously when its timer fires, so the
// accepted socket's `destroyed` tells at once whether the timeout fired.
test("proxy_timeout: idle session closed, client activity re-arms, backend activity does not", { timeout: 20000 }, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const be = await fakeBackend("+OK\r\n", POP3_OK);
  const run = await runProxy({ protocol: "pop3", backendPort: be.port, conf: serverConf([d(proxyTimeout, 400)]) });
  const side = await run.serverSide;
  // "+OK in" is written by the relay once its timer is armed.
  await untilIo(() => run.text().includes("+OK in"));
  t.mock.timers.tick(399);
  assert.equal(side.destroyed, false, "idle session still open 1 ms before proxy_timeout");
  t.mock.timers.tick(1);
  assert.equal(side.destroyed, true, "idle session closed at proxy_timeout");
  await run.clientClosed;
  assert.match(run.logs.contents, /\[info\] .*client timed out \(110: Connection timed out\) while proxying, client: /);
  await run.close();
  await be.close();

  // Client sends something every 150 ms for 900 ms: each NOOP re-arms the timer.
  const be2 = await fakeBackend("+OK\r\n", POP3_OK);
  const run2 = await runProxy({ protocol: "pop3", backendPort: be2.port, conf: serverConf([d(proxyTimeout, 400)]) });
  const side2 = await run2.serverSide;
  await untilIo(() => run2.text().includes("+OK in"));
  for (let i = 1; i <= 7; i++) {
    if (i > 1) t.mock.timers.tick(150);
    assert.equal(side2.destroyed, false, `open at NOOP ${i}`);
    run2.client.write("NOOP\r\n");
    // Once the backend has it, the relay has read it (and re-armed).
    await untilIo(() => count(be2.received[0]!.toString("latin1"), "NOOP") === i);
  }
  t.mock.timers.tick(399);
  assert.equal(side2.destroyed, false, "open 399 ms after the last NOOP");
  t.mock.timers.tick(1);
  assert.equal(side2.destroyed, true, "closed 400 ms after the last NOOP");
  await run2.clientClosed;
  await run2.close();
  await be2.close();

  // The backend streams to an idle (reading) client every 80 ms: cut off at 400 ms anyway.
  let backendSide: Socket | undefined;
  const be3 = await fakeBackend("+OK\r\n", POP3_OK, (s) => {
    backendSide = s;
  });
  const run3 = await runProxy({ protocol: "pop3", backendPort: be3.port, conf: serverConf([d(proxyTimeout, 400)]) });
  const side3 = await run3.serverSide;
  await untilIo(() => run3.text().includes("+OK in") && backendSide !== undefined);
  for (const [i, step] of [80, 80, 80, 80, 79].entries()) {
    t.mock.timers.tick(step);
    backendSide!.write("* tick\r\n");
    // Once the client has it, the relay has handled the backend's bytes.
    await untilIo(() => count(run3.text(), "* tick") === i + 1);
  }
  assert.equal(side3.destroyed, false, "open at 399 ms");
  t.mock.timers.tick(1);
  assert.equal(side3.destroyed, true, "closed at 400 ms although the backend kept sending");
  await run3.clientClosed;
  await run3.close();
  await be3.close();
});

test("backend reset while proxying: logged at error, client closed", async () => {
  const be = await fakeBackend("+OK\r\n", [...POP3_OK, undefined], (s) => s.resetAndDestroy());
  const run = await runProxy({ protocol: "pop3", backendPort: be.port });
  await until(() => run.text().includes("+OK in"));
  run.client.write("STAT\r\n");
  await run.clientClosed;
  await run.finished;
  assert.match(run.logs.contents, /\[error\] .*recv\(\) failed \(104: Connection reset by peer\) while proxying and reading from upstream/);
  await run.close();
  await be.close();
});

test("shutdown signal closes a proxied session with shutdown timeout", async () => {
  let backendClosed = false;
  const be = await fakeBackend("+OK\r\n", POP3_OK, (s) =>
    s.on("close", () => {
      backendClosed = true;
    }),
  );
  const ac = new AbortController();
  const run = await runProxy({ protocol: "pop3", backendPort: be.port, shutdown: ac.signal });
  await until(() => run.text().includes("+OK in"));
  ac.abort();
  await run.clientClosed;
  await until(() => backendClosed);
  assert.match(run.logs.contents, /\[info\] .*shutdown timeout while proxying, client: /);
  assert.doesNotMatch(run.logs.contents, /proxied session done/);
  await run.close();
  await be.close();
});

test("TLS client socket: login and relay work over tls.TLSSocket", { timeout: 20000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "postern-relay-tls-"));
  try {
    execFileSync(
      "openssl",
      ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", join(dir, "k.pem"), "-out", join(dir, "c.pem"), "-days", "1", "-subj", "/CN=localhost"],
      { stdio: "ignore" },
    );
    const be = await fakeBackend("+OK\r\n", [...POP3_OK, "+OK 1 2\r\n"], undefined);
    const logs = new MemorySink(1 << 16, "debug");
    let finished!: Promise<void>;
    const server = createTlsServer({ key: readFileSync(join(dir, "k.pem")), cert: readFileSync(join(dir, "c.pem")) }, (s) => {
      s.pause();
      s.on("error", () => {});
      finished = proxySession({
        client: s,
        pending: Buffer.alloc(0),
        session: { id: 1, protocol: "pop3", clientAddr: "127.0.0.1", clientPort: 1, localAddr: "127.0.0.1", localPort: 2, unixClient: false },
        loginSteps: () => pop3LoginSteps({ login: Buffer.from("u"), password: Buffer.from("p") }),
        backend: { host: "127.0.0.1", port: be.port },
        conf: serverConf(),
        timeoutMs: 5000,
        log: new ConnectionLog(new ErrorLog([logs]), 1, { client: "127.0.0.1", server: "127.0.0.1:2" }),
        internalError: () => s.destroy(),
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const c = tlsConnect({ port: (server.address() as { port: number }).port, host: "127.0.0.1", rejectUnauthorized: false });
    let text = "";
    c.on("data", (x: Buffer) => {
      text += x.toString();
    });
    await once(c, "secureConnect");
    await until(() => text === "+OK in\r\n");
    c.write("STAT\r\n");
    await until(() => text.endsWith("+OK 1 2\r\n"));
    c.end();
    await finished;
    assert.match(logs.contents, /proxied session done/);
    c.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    await be.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

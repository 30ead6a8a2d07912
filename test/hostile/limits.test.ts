/**
 * Limits against a running proxy: overlong lines and literals (the exact
 * invalid reply, then close), max_errors, the `timeout` deadline against a
 * client dripping one byte every 300 ms (measured), worker_connections (past
 * the cap refused cleanly, others untouched), and many idle connections
 * (worker RSS per connection measured and bounded).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { MailClient } from "../support/client.js";
import { GREETING, PORTS, assertHealthy, connectTo, goodSession, logLines, rssBytes, sleep, startBed, workerPids, type Bed, type Protocol } from "./env.js";

const INVALID: Record<Protocol, string> = {
  imap: "BAD invalid command\r\n",
  pop3: "-ERR invalid command\r\n",
  smtp: "500 5.5.1 Invalid command\r\n",
};

describe("overlong input, max_errors and the timeout deadline", () => {
  let bed: Bed;
  before(async () => {
    bed = await startBed({ extra: "  max_errors 3;", timeout: "2s" });
  });
  after(async () => {
    await bed?.stop();
  });

  /** Sends `data`, expects exactly `reply` and then the close. */
  async function expectReplyThenClose(name: "imap" | "pop3" | "smtp", data: string, reply: string, before = ""): Promise<void> {
    const c = await connectTo(bed, name);
    try {
      assert.match(await c.readLine(), GREETING[PORTS.find((p) => p.name === name)!.protocol]);
      if (before) {
        await c.send(before);
        await c.readLine();
      }
      await c.send(data);
      assert.equal(await c.expectClosed(3000), reply, c.transcriptText());
    } finally {
      c.close();
    }
  }

  test("a line that fills the 4k IMAP buffer: tagged BAD, then close; logged at info by tag and command name only", async () => {
    await expectReplyThenClose("imap", `a1 LOGIN ${"x".repeat(4096 - 9)}`, `a1 ${INVALID.imap}`);
    // nginx quotes the whole buffer, password included; Postern stops at an authentication command's name
    const quoted = bed.proxy.kind === "nginx" ? 'client sent too long command "a1 LOGIN xxx' : 'client sent too long command "a1 LOGIN" while in auth state';
    assert.ok(logLines(bed, "info", quoted).length > 0, bed.proxy.errorLog().slice(-2000));
  });

  test("an IMAP literal larger than the buffer: Postern answers tagged BAD at once (no + OK) and goes on; nginx says + OK, then BAD and close once the buffer is full", async () => {
    const head = "a2 LOGIN {5000}\r\n";
    if (bed.proxy.kind === "nginx") {
      await expectReplyThenClose("imap", "y".repeat(4096 - head.length), `a2 ${INVALID.imap}`, head);
      return;
    }
    const c = await connectTo(bed, "imap");
    try {
      assert.match(await c.readLine(), GREETING.imap);
      await c.send(head);
      assert.equal(await c.readLine(), `a2 ${INVALID.imap}`, c.transcriptText());
      await c.send("a3 NOOP\r\n");
      assert.equal(await c.readLine(), "a3 OK completed\r\n", c.transcriptText());
    } finally {
      c.close();
    }
  });

  test("POP3: 128 bytes without a line end (its fixed buffer): -ERR, then close", async () => {
    await expectReplyThenClose("pop3", `USER ${"x".repeat(128 - 5)}`, INVALID.pop3);
  });

  test("SMTP: a line that fills the 4k buffer: 500, then close", async () => {
    await expectReplyThenClose("smtp", `EHLO ${"x".repeat(4096 - 5)}`, INVALID.smtp);
  });

  test("max_errors 3: three invalid commands in one packet get three replies, then close; the fourth is never answered", async () => {
    const cases: Array<[PortNameLimited, string, string]> = [
      ["imap", "x1 FOO\r\nx2 FOO\r\nx3 FOO\r\nx4 NOOP\r\n", `x1 ${INVALID.imap}x2 ${INVALID.imap}x3 ${INVALID.imap}`],
      ["pop3", "FOO1\r\nFOO2\r\nFOO3\r\nNOOP\r\n", INVALID.pop3.repeat(3)],
      ["smtp", "FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n", INVALID.smtp.repeat(3)],
    ];
    for (const [name, data, reply] of cases) await expectReplyThenClose(name, data, reply);
    assert.ok(logLines(bed, "info", "client sent too many invalid commands").length >= 3);
  });

  test("timeout 2s is a deadline: a client sending one byte every 300 ms is cut off 2 s after the greeting", async () => {
    const measure = async (name: PortNameLimited): Promise<number> => {
      const c = await connectTo(bed, name, 6000);
      try {
        await c.readLine();
        const start = Date.now();
        const drip = Buffer.from(name === "imap" ? "a1 NOOP\r\n" : "NOOP\r\n", "latin1");
        for (let i = 0; !c.closed && Date.now() - start < 5000; i++) {
          await c.send(drip.subarray(i % drip.length, (i % drip.length) + 1)).catch(() => undefined);
          await c.readAll(300);
        }
        assert.ok(c.closed, `${name}: still open after 5 s`);
        return Date.now() - start;
      } finally {
        c.close();
      }
    };
    const times = await Promise.all((["imap", "pop3", "smtp"] as const).map(measure));
    console.log(`# timeout 2s deadline, drip client closed after: imap ${times[0]} ms, pop3 ${times[1]} ms, smtp ${times[2]} ms`);
    for (const [i, ms] of times.entries()) {
      // the close is noticed at the next 300 ms read at the latest
      assert.ok(ms >= 1900 && ms <= 2700, `${["imap", "pop3", "smtp"][i]}: closed after ${ms} ms, expected about 2000`);
    }
    assert.ok(logLines(bed, "info", "client timed out (110: Connection timed out) while in auth state").length >= 3);
  });

  test("after the limits the proxy serves every port and logged no alert/crit", async () => {
    for (const { name } of PORTS) await goodSession(bed, name);
    assertHealthy(bed);
  });
});

type PortNameLimited = "imap" | "pop3" | "smtp";

test("worker_connections 12 (6 listening + the master channel): connections past the cap are closed without a greeting, the others are untouched", async () => {
  const bed = await startBed({ proxyOptions: { events: "worker_connections 12;" } });
  const idle: MailClient[] = [];
  try {
    // nginx counts the 6 listening sockets and its channel to the master: 5 are free; hold 5 greeted sessions
    for (let i = 0; i < 5; i++) {
      const c = await connectTo(bed, "imap");
      assert.match(await c.readLine(), GREETING.imap);
      idle.push(c);
    }
    const extra = await connectTo(bed, "pop3");
    const got = await extra.expectClosed(3000).catch((e: Error) => `still open: ${e.message}`);
    extra.close();
    assert.equal(got, "", "a connection past worker_connections was served or left hanging");
    // the held sessions still work
    for (const [i, c] of idle.entries()) {
      await c.send(`h${i} NOOP\r\n`);
      assert.equal(await c.readLine(), `h${i} OK completed\r\n`);
    }
    // freeing three connections lets a full session (client, auth_http, backend) through
    for (const c of idle.splice(0, 3)) c.close();
    await sleep(100);
    await sleep(200);
    await goodSession(bed, "pop3");
    // nginx: `[alert] ... 12 worker_connections are not enough`
    assert.ok(logLines(bed, "alert", "12 worker_connections are not enough").length > 0, "the refusal was not logged as nginx does");
  } finally {
    for (const c of idle) c.close();
    await bed.stop();
  }
});

test("many idle connections: worker RSS grows by a bounded amount per connection (plain and TLS)", async () => {
  const bed = await startBed({ proxyOptions: { events: "worker_connections 2048;" } });
  const held: MailClient[] = [];
  try {
    const [worker] = workerPids(bed.proxy.pid);
    const pid = worker ?? bed.proxy.pid;
    // warm up (first TLS handshake, code paths), then measure from there
    for (const { name } of PORTS) await goodSession(bed, name);
    await sleep(300);
    const base = rssBytes(pid);
    const plain = 300,
      secure = 100;
    const opens: Array<Promise<MailClient>> = [];
    for (let i = 0; i < plain; i++) opens.push(connectTo(bed, (["imap", "pop3", "smtp"] as const)[i % 3]!, 10000));
    for (let i = 0; i < secure; i++) opens.push(connectTo(bed, (["imaps", "pop3s", "smtps"] as const)[i % 3]!, 10000));
    for (const c of await Promise.all(opens)) held.push(c);
    await Promise.all(held.map((c) => c.readLine(10000)));
    await sleep(500);
    const perConnection = (rssBytes(pid) - base) / (plain + secure);
    console.log(
      `# idle connections: ${plain} plain + ${secure} TLS, worker RSS ${(base / 1048576).toFixed(1)} MiB -> +${(perConnection / 1024).toFixed(1)} KiB per connection`,
    );
    assert.ok(perConnection < 256 * 1024, `${(perConnection / 1024).toFixed(1)} KiB per idle connection`);
    // and every held connection still answers
    await Promise.all(
      held.slice(0, 30).map(async (c, i) => {
        const name = i < 300 ? (["imap", "pop3", "smtp"] as const)[i % 3]! : "imap";
        await c.send(name === "imap" ? "n1 NOOP\r\n" : "NOOP\r\n");
        assert.match(await c.readLine(), name === "imap" ? /^n1 OK/ : name === "pop3" ? /^\+OK/ : /^250 /);
      }),
    );
    assertHealthy(bed);
  } finally {
    for (const c of held) c.close();
    await bed.stop();
  }
});

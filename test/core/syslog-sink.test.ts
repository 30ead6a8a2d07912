/**
 * The syslog target of `error_log`, against nginx's ngx_syslog_writer
 * (1.22.1): `<PRI>Mmm dd hh:mm:ss HOST TAG: ` followed by the whole
 * error-log line, PRI from the line's level (`severity=` only applies to
 * access logs), lines capped at nginx's 2047 bytes, and a peer that is down
 * reported as `send() failed (111: Connection refused)` in the other logs.
 * The differential test against nginx is test/process/syslog.test.ts.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createSocket, type Socket } from "node:dgram";
import { hostname } from "node:os";
import { ConnectionLog, ErrorLog, LOG_LEVELS, MemorySink, SyslogSink, type SyslogTarget } from "../../src/core/log.js";
import { freePort } from "../support/ports.js";

const PID = `${process.pid}#${process.pid}`;
/** gethostname(), lower-cased as nginx's cycle keeps it. */
const HOST = hostname().toLowerCase();

/** A UDP receiver: the datagrams as text, in arrival order. */
async function receiver(port?: number): Promise<{ port: number; socket: Socket; got: string[]; next(n: number): Promise<string[]> }> {
  const socket = createSocket("udp4");
  const got: string[] = [];
  let wake: (() => void) | undefined;
  socket.on("message", (m) => {
    got.push(m.toString("latin1"));
    wake?.();
  });
  await new Promise<void>((resolve) => socket.bind(port ?? 0, "127.0.0.1", resolve));
  return {
    port: socket.address().port,
    socket,
    got,
    async next(n: number): Promise<string[]> {
      while (got.length < n) await new Promise<void>((resolve) => (wake = resolve));
      return got.splice(0, n);
    },
  };
}

function target(port: number, extra: Partial<SyslogTarget> = {}): SyslogTarget {
  return { host: "127.0.0.1", port, facility: 23, severity: undefined, tag: "nginx", nohostname: false, ...extra };
}

/** 2026/12/02 03:04:13 local time, as a mock clock. */
function fixedClock(t: { mock: { timers: { enable(o: { apis: "Date"[]; now: number }): void } } }): void {
  t.mock.timers.enable({ apis: ["Date"], now: new Date(2026, 11, 2, 3, 4, 13).getTime() });
}

test("every level: PRI is facility*8 + the line's level (severity= ignored), then the whole error-log line", async (t) => {
  fixedClock(t);
  const rx = await receiver();
  const log = new ErrorLog([new SyslogSink(target(rx.port, { facility: 2, severity: "crit", tag: "mail_tag" }), "debug")]);
  try {
    for (const level of LOG_LEVELS) log.write(level, `message at ${level}`);
    const got = await rx.next(LOG_LEVELS.length);
    assert.deepEqual(
      got,
      LOG_LEVELS.map((level, i) => `<${2 * 8 + i}>Dec  2 03:04:13 ${HOST} mail_tag: 2026/12/02 03:04:13 [${level}] ${PID}: message at ${level}`),
    );
  } finally {
    log.close();
    rx.socket.close();
  }
});

test("defaults and nohostname: local7, tag nginx, no host field; the sink's level filters", async (t) => {
  fixedClock(t);
  const rx = await receiver();
  const log = new ErrorLog([new SyslogSink(target(rx.port, { nohostname: true }), "notice")]);
  try {
    log.info("not sent: below notice");
    log.notice("nginx/1.22.1");
    log.error("after");
    assert.deepEqual(await rx.next(2), [
      `<189>Dec  2 03:04:13 nginx: 2026/12/02 03:04:13 [notice] ${PID}: nginx/1.22.1`,
      `<187>Dec  2 03:04:13 nginx: 2026/12/02 03:04:13 [error] ${PID}: after`,
    ]);
  } finally {
    log.close();
    rx.socket.close();
  }
});

test("a session line carries *N and the context, as in the file", async (t) => {
  fixedClock(t);
  const rx = await receiver();
  const memory = new MemorySink(1 << 16, "debug");
  const log = new ErrorLog([memory, new SyslogSink(target(rx.port), "info")]);
  try {
    const conn = new ConnectionLog(log, 7, { client: "127.0.0.1", server: "0.0.0.0:993", login: "bob" });
    conn.action = "in http auth state";
    conn.error("auth http server 127.0.0.1:9000 did not send server or port");
    const [got] = await rx.next(1);
    const fileLine = memory.contents.trimEnd();
    assert.equal(
      fileLine,
      `2026/12/02 03:04:13 [error] ${PID}: *7 auth http server 127.0.0.1:9000 did not send server or port while in http auth state, client: 127.0.0.1, server: 0.0.0.0:993, login: "bob"`,
    );
    assert.equal(got, `<187>Dec  2 03:04:13 ${HOST} nginx: ${fileLine}`);
  } finally {
    log.close();
    rx.socket.close();
  }
});

test("a line longer than nginx's buffer is cut at 2047 bytes, in the file and in syslog alike", async (t) => {
  fixedClock(t);
  const rx = await receiver();
  const memory = new MemorySink(1 << 16, "debug");
  const log = new ErrorLog([memory, new SyslogSink(target(rx.port), "info")]);
  try {
    log.error(`login: "${"x".repeat(3000)}"`);
    const line = `2026/12/02 03:04:13 [error] ${PID}: login: "${"x".repeat(3000)}"`.slice(0, 2047);
    assert.equal(memory.contents, `${line}\n`);
    assert.deepEqual(await rx.next(1), [`<187>Dec  2 03:04:13 ${HOST} nginx: ${line}`]);
    // never half a UTF-8 character: the cut backs off to a character boundary
    // "2026/12/02 03:04:13 [error] PID: " is 30 bytes plus the pid pair; é takes bytes 2047 and 2048
    log.error(`${"y".repeat(2047 - 30 - PID.length - 1)}é`);
    assert.equal(memory.contents.split("\n")[1], `2026/12/02 03:04:13 [error] ${PID}: ${"y".repeat(2047 - 30 - PID.length - 1)}`);
  } finally {
    log.close();
    rx.socket.close();
  }
});

test("a peer that is down: the failure is logged at error in the other sinks, the message is lost, the next socket sends again", async () => {
  const port = await freePort();
  const memory = new MemorySink(1 << 16, "debug");
  const log = new ErrorLog([memory, new SyslogSink(target(port), "info")]);
  try {
    // the first datagram draws an ICMP "port unreachable"; a later send fails with ECONNREFUSED
    for (let i = 0; i < 50 && !memory.contents.includes("send() failed"); i++) {
      log.notice(`line ${i}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.match(
      memory.contents,
      new RegExp(`^\\d{4}/\\d\\d/\\d\\d \\d\\d:\\d\\d:\\d\\d \\[error\\] ${PID}: send\\(\\) failed \\(111: Connection refused\\)$`, "m"),
    );
    const failures = memory.contents.split("\n").filter((l) => l.includes("send() failed"));
    assert.equal(failures.length, 1, "one failure, one line; the failing sink does not log to itself");
    // the peer comes back: the next line goes out on a new socket
    const rx = await receiver(port);
    try {
      log.notice("back");
      assert.match((await rx.next(1))[0]!, new RegExp(`^<189>\\w{3} [ \\d]\\d \\d\\d:\\d\\d:\\d\\d ${HOST} nginx: \\S+ \\S+ \\[notice\\] ${PID}: back$`));
    } finally {
      rx.socket.close();
    }
  } finally {
    log.close();
  }
});

test("a closed log sends nothing more", async () => {
  const rx = await receiver();
  const log = new ErrorLog([new SyslogSink(target(rx.port), "info")]);
  log.notice("before");
  await rx.next(1);
  log.close();
  log.notice("after close");
  await new Promise((resolve) => setTimeout(resolve, 50));
  rx.socket.close();
  assert.deepEqual(rx.got, []);
});

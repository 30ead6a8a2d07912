/**
 * Debug lines cost nothing when debug is off: with every sink at `info`, the
 * helpers of src/mail/debug-log.ts return before reading what they would
 * format (the spies below are never called) and never reach the log's
 * formatting; with a sink at `debug` the same calls do read it and write
 * nginx's lines, so the spies are live.
 * Rule: docs/behaviour/cli.md#cli-10-debug-lines.
 */
import assert from "node:assert/strict";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { test, type TestContext } from "node:test";
import { ConnectionLog, ErrorLog, MemorySink, type LogLevel } from "../../src/core/log.js";
import {
  armTimer,
  debugAccept,
  debugAuthRequest,
  debugAuthResponse,
  debugClose,
  debugCommand,
  debugCommandState,
  debugHandshake,
  debugLoginStep,
  debugRelayEnd,
  debugSaslResponse,
  debugStage,
  disarmTimer,
} from "../../src/mail/debug-log.js";
import type { LoginStep } from "../../src/mail/proxy/login-step.js";
import type { SessionTls } from "../../src/mail/session-services.js";

/** Counts every read of what a helper would format. */
class Reads {
  count = 0;
  /** An object whose every property read counts (and then answers `value`). */
  object<T>(value: Record<string, unknown>): T {
    return new Proxy(value, {
      get: (target, key) => {
        this.count++;
        return target[key as string];
      },
    }) as T;
  }
}

function logAt(level: LogLevel): { log: ConnectionLog; sink: MemorySink } {
  const sink = new MemorySink(1 << 16, level);
  return { log: new ConnectionLog(new ErrorLog([sink]), 7, { client: "127.0.0.1", server: "127.0.0.1:143" }), sink };
}

/** Every helper once, with inputs that count their reads. */
function everyHelper(t: TestContext, log: ConnectionLog, reads: Reads): void {
  const socket = reads.object<Socket>({ remoteAddress: "127.0.0.1", remotePort: 40000 });
  debugAccept(log, socket, false, "127.0.0.1:143");
  debugStage(log, "greeting", "auth");
  const tls = reads.object<TLSSocket>({
    getProtocol: () => "TLSv1.3",
    getCipher: () => ({ name: "TLS_AES_128_GCM_SHA256" }),
    isSessionReused: () => false,
    servername: "mail.example",
  });
  const sessionTls = reads.object<SessionTls>({ describe: () => ({ protocol: "TLSv1.3", cipher: "x", verify: "SUCCESS" }) });
  debugHandshake(log, tls, sessionTls);
  debugCommand(log, "imap", reads.object<string>({ toUpperCase: () => "LOGIN" }));
  debugSaslResponse(log, "imap", "plain");
  debugCommandState(log, "pop3", "start", "user");
  const request = Buffer.from("GET /auth HTTP/1.0\r\nAuth-User: alice\r\nAuth-Pass: secret\r\n\r\n");
  t.mock.method(request, "toString", () => {
    reads.count++;
    return "GET /auth HTTP/1.0\r\n\r\n";
  });
  debugAuthRequest(log, "127.0.0.1:9000", request);
  const response = Buffer.from("HTTP/1.0 200 OK\r\nAuth-Status: OK\r\n\r\n");
  t.mock.method(response, "toString", () => {
    reads.count++;
    return "HTTP/1.0 200 OK\r\n\r\n";
  });
  debugAuthResponse(log, response);
  debugLoginStep(log, reads.object<LoginStep>({ state: "user", next: { kind: "send", action: "sending password to upstream" } }), true);
  debugRelayEnd(log, "client closed connection", 10, 20);
  debugClose(log, "client quit");
  const timer = armTimer(log, "timeout", 1000, () => {});
  disarmTimer(log, "timeout", timer);
}

test("at info, no helper reads its inputs nor formats a line", (t) => {
  const { log, sink } = logAt("info");
  const plain = t.mock.method(log, "plain");
  const write = t.mock.method(log.log, "write");
  const reads = new Reads();
  everyHelper(t, log, reads);
  assert.equal(reads.count, 0, "a helper read what it would format");
  assert.equal(plain.mock.callCount(), 0);
  assert.equal(write.mock.callCount(), 0);
  assert.equal(sink.contents, "");
});

test("at debug, the same calls write nginx-format lines with the connection number", (t) => {
  const { log, sink } = logAt("debug");
  const reads = new Reads();
  everyHelper(t, log, reads);
  assert.ok(reads.count > 0);
  const lines = sink.contents.trimEnd().split("\n");
  for (const line of lines) assert.match(line, /^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d \[debug\] (\d+)#\1: \*7 /);
  const text = lines.map((l) => l.replace(/^.*?\*7 /, ""));
  assert.deepEqual(text, [
    "accept: 127.0.0.1:40000 on 127.0.0.1:143",
    "mail stage: greeting -> auth",
    'SSL: TLSv1.3, cipher: "TLS_AES_128_GCM_SHA256"',
    "SSL new session",
    'SSL server name: "mail.example"',
    "SSL client certificate: SUCCESS",
    "imap auth command: LOGIN",
    "imap auth sasl response for step plain",
    "pop3 state: start -> user",
    'mail auth http request to 127.0.0.1:9000: "GET /auth HTTP/1.0"',
    'mail auth http status: "HTTP/1.0 200 OK"',
    "mail auth http header done",
    "mail proxy user state: sending password to upstream",
    "close mail proxy connection: client closed connection, client sent 10 bytes, upstream sent 20 bytes",
    "close mail connection: client quit",
    "event timer add: timeout: 1000",
    "event timer del: timeout",
  ]);
});

test("auth_http headers: secrets masked, peer text escaped", () => {
  const { log, sink } = logAt("debug");
  debugAuthRequest(
    log,
    "auth",
    Buffer.from('GET /auth HTTP/1.0\r\nAuth-User: al"ice\x01\r\nAuth-Pass: pw1\r\nX-Auth-Key: k1\r\nX-Api-Token: t1\r\nAuth-Salt: <1.2@host>\r\n\r\n'),
  );
  debugAuthResponse(log, Buffer.from("HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-User: b\\ob\r\nAuth-Pass: pw2\r\n\r\nbody"));
  const text = sink.contents;
  for (const secret of ["pw1", "k1", "t1", "pw2", "body"]) assert.ok(!text.includes(secret), `${secret} in\n${text}`);
  assert.match(text, /request header: "Auth-User: al\\x22ice\\x01"/);
  assert.match(text, /request header: "X-Auth-Key: \(masked\)"/);
  assert.match(text, /request header: "X-Api-Token: \(masked\)"/);
  assert.match(text, /request header: "Auth-Salt: <1\.2@host>"/);
  assert.match(text, /mail auth http header: "Auth-User: b\\x5Cob"/);
  assert.match(text, /mail auth http header: "Auth-Pass: \(masked\)"/);
});

test("a timer that fires logs its expiry and no del after it", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { log, sink } = logAt("debug");
  let fired = false;
  const timer = armTimer(log, "proxy_timeout", 500, () => {
    fired = true;
    disarmTimer(log, "proxy_timeout", timer);
  });
  t.mock.timers.tick(500);
  assert.ok(fired);
  assert.deepEqual(
    sink.contents
      .trimEnd()
      .split("\n")
      .map((l) => l.replace(/^.*?\*7 /, "")),
    ["event timer add: proxy_timeout: 500", "event timer expired: proxy_timeout"],
  );
});

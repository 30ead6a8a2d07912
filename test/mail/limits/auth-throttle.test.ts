/**
 * The throttle's rule and its wrapper around auth_http, with mock timers:
 * no delay below delay_after, a delay doubling per failure up to
 * max_delay, a refusal from refuse_after on without calling auth_http, a
 * session gone during the delay never reaching auth_http, failures counted
 * only for refusals, and a count forgotten when its window has passed.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfiguration } from "../../../src/conf/engine.js";
import { ConnectionLog, ErrorLog, MemorySink } from "../../../src/core/log.js";
import { mailDirective } from "../../../src/mail/block.js";
import { Cancellation } from "../../../src/mail/cancel.js";
import { THROTTLE_OFF } from "../../../src/mail/limits/auth-fail-module.js";
import { throttleDecision, throttled } from "../../../src/mail/limits/auth-throttle.js";
import { sessionLimitHit } from "../../../src/mail/limits/limit-events.js";
import type { MailServer } from "../../../src/mail/server.js";
import type { AuthOutcome, SessionInfo } from "../../../src/mail/types.js";
import { confModules } from "../../../src/modules.js";

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), "postern-throttle-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function servers(mail: string): readonly MailServer[] {
  const file = join(dir, `t${Math.random().toString(36).slice(2)}.conf`);
  writeFileSync(file, `events {}\nmail {\nauth_http 127.0.0.1:9/a;\n${mail}\n}\n`);
  return parseConfiguration({ prefix: `${dir}/`, file }, confModules(), () => {}).main.own(mailDirective)!.servers;
}

test("the rule: go, then delays doubling up to max_delay, then refuse", () => {
  const conf = { ...THROTTLE_OFF, zone: "z", delayAfter: 3, delayMs: 1000, maxDelayMs: 5000, refuseAfter: 8 };
  assert.deepEqual(
    [0, 2, 3, 4, 5, 6, 7, 8, 50].map((n) => throttleDecision(n, conf)),
    [
      { kind: "go" },
      { kind: "go" },
      { kind: "delay", ms: 1000 },
      { kind: "delay", ms: 2000 },
      { kind: "delay", ms: 4000 },
      { kind: "delay", ms: 5000 },
      { kind: "delay", ms: 5000 },
      { kind: "refuse" },
      { kind: "refuse" },
    ],
  );
  assert.deepEqual(throttleDecision(1000, { ...conf, refuseAfter: 0 }), { kind: "delay", ms: 5000 });
});

const REFUSED: AuthOutcome = { kind: "refused", message: "Invalid login" };

test("the wrapper: delays before auth_http, refuses without it, forgets after the window (mock timers)", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: 5_000_000 });
  const [server] = servers(
    `auth_fail_zone zone=unit:32k window=1m;\nauth_fail_throttle unit delay_after=2 delay=1s max_delay=2s refuse_after=4;\nserver { listen 127.0.0.1:1; protocol imap; }`,
  );
  const calls: string[] = [];
  const authenticate = throttled((_s, _i, credentials) => {
    calls.push(credentials.login.toString());
    return Promise.resolve(REFUSED);
  });
  const sink = new MemorySink(1 << 16, "debug");
  const log = new ConnectionLog(new ErrorLog([sink]), 1, { client: "192.0.2.1", server: "127.0.0.1:1" });
  const info = { id: 1, protocol: "imap", clientAddr: "192.0.2.1", clientPort: 1, localAddr: "127.0.0.1", localPort: 1, unixClient: false } as SessionInfo;
  const attempt = (login: string, signal = new Cancellation()): Promise<AuthOutcome> =>
    authenticate(server!, info, { method: "plain", login: Buffer.from(login), password: Buffer.from("x") } as never, 1, log, signal);
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  };

  assert.deepEqual(await attempt("u1"), REFUSED);
  assert.deepEqual(await attempt("u2"), REFUSED);
  // third: a 1 s delay before auth_http
  let done = false;
  const third = attempt("u3").then((o) => ((done = true), o));
  await settle();
  assert.deepEqual([calls.length, done], [2, false]);
  t.mock.timers.tick(999);
  await settle();
  assert.equal(calls.length, 2);
  t.mock.timers.tick(1);
  assert.deepEqual(await third, REFUSED);
  assert.equal(calls.length, 3);
  assert.equal(sessionLimitHit(log), "auth_delay");
  // fourth: 2 s, and the client leaves meanwhile: auth_http is never asked
  const gone = new Cancellation();
  const fourth = attempt("u4", gone);
  await settle();
  gone.cancel();
  assert.deepEqual(await fourth, { kind: "error" });
  assert.equal(calls.length, 3);
  // a fifth and a sixth, then refused without auth_http
  const fifth = attempt("u5");
  await settle();
  t.mock.timers.tick(2000);
  await fifth;
  assert.equal(calls.length, 4);
  const refused = await attempt("u6");
  assert.deepEqual(refused, { kind: "refused", message: "[UNAVAILABLE] Too many authentication failures, try later", throttled: true });
  assert.equal(calls.length, 4);
  assert.equal(sessionLimitHit(log), "auth_refuse");
  assert.match(sink.contents, /\[error\] \d+#\d+: \*1 limiting authentication, failures: 4 by zone "unit", client: 192\.0\.2\.1/);
  assert.match(sink.contents, /\[warn\] \d+#\d+: \*1 delaying authentication for 1000ms, failures: 2 by zone "unit"/);
  // a minute after the last failure everything is forgotten
  t.mock.timers.tick(60_000);
  assert.deepEqual(await attempt("u7"), REFUSED);
  assert.equal(calls.length, 5);
});

test("a server without auth_fail_throttle (or with it off) calls auth_http straight through", async () => {
  const list = servers(
    `auth_fail_zone zone=off:32k;\nauth_fail_throttle off;\nserver { listen 127.0.0.1:1; protocol imap; }\nserver { listen 127.0.0.1:2; protocol pop3; auth_fail_throttle off; }`,
  );
  let calls = 0;
  const authenticate = throttled(() => (calls++, Promise.resolve(REFUSED)));
  const log = new ConnectionLog(new ErrorLog([]), 1, { client: "192.0.2.9", server: "x" });
  const info = { clientAddr: "192.0.2.9" } as SessionInfo;
  for (let i = 0; i < 30; i++) for (const s of list) await authenticate(s, info, { login: Buffer.from("u") } as never, 1, log, new Cancellation());
  assert.equal(calls, 60);
});

test("the login count: an empty login counts for its address only, `smtp_auth none` is not throttled, ASCII case is one login", async () => {
  const [server] = servers(
    `auth_fail_zone zone=keys:32k window=1m;\nauth_fail_throttle keys delay_after=100 refuse_after=2;\nserver { listen 127.0.0.1:1; protocol smtp; smtp_auth none plain; }`,
  );
  let calls = 0;
  const authenticate = throttled(() => (calls++, Promise.resolve(REFUSED)));
  const log = new ConnectionLog(new ErrorLog([]), 1, { client: "x", server: "x" });
  const from = (clientAddr: string): SessionInfo => ({
    id: 1,
    protocol: "smtp",
    clientAddr,
    clientPort: 1,
    localAddr: "127.0.0.1",
    localPort: 1,
    unixClient: false,
  });
  const attempt = (addr: string, method: string, login: string): Promise<AuthOutcome> =>
    authenticate(server!, from(addr), { method, login: Buffer.from(login), password: Buffer.from("x") } as never, 1, log, new Cancellation());
  const throttledReply = { kind: "refused", message: "Too many authentication failures, try later", errorCode: "454 4.7.0", throttled: true };

  // two failures with an empty login from one address: that address is refused, another one with an empty login is not
  await attempt("192.0.2.1", "plain", "");
  await attempt("192.0.2.1", "plain", "");
  assert.deepEqual(await attempt("192.0.2.1", "plain", ""), throttledReply);
  assert.deepEqual(await attempt("192.0.2.2", "plain", ""), REFUSED, "an empty login is no shared key");
  // RCPT-started sessions (`none`, no login) pass whatever their address has failed
  assert.deepEqual(await attempt("192.0.2.1", "none", ""), REFUSED);
  assert.deepEqual(await attempt("192.0.2.1", "none", ""), REFUSED);
  // `Alice` and `ALICE` from two addresses are one login
  await attempt("192.0.2.3", "plain", "Alice");
  await attempt("192.0.2.4", "plain", "ALICE");
  assert.deepEqual(await attempt("192.0.2.5", "plain", "alice"), throttledReply);
  assert.equal(calls, 7, "auth_http asked for every attempt but the two refused by the throttle");
});

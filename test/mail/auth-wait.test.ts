/**
 * Auth-Wait (issue 10, item 9): Node.js runs a timer of more than 2^31 - 1 ms
 * after 1 ms, so a huge Auth-Wait meant no wait at all. The parser clamps
 * the value to MAX_AUTH_WAIT_SECONDS and every wait timer is started through
 * startAuthWait; mock timers show it neither fires early nor never.
 */
import { test, mock } from "node:test";
import assert from "node:assert/strict";
import { MAX_AUTH_WAIT_SECONDS, parseAuthWait, startAuthWait } from "../../src/mail/auth-wait.js";
import { parseAuthResponse } from "../../src/mail/auth-http/response.js";
import { MailClient } from "../support/client.js";
import { refuse, startFakeAuth } from "../support/fake-auth.js";
import { startFakePop3 } from "../support/fake-backend.js";
import { freePorts } from "../support/ports.js";
import { startPostern } from "../support/postern.js";

const sleepOf = (text: string): number => {
  const r = parseAuthResponse(Buffer.from(text, "latin1"));
  assert.ok(r.kind === "done");
  return r.response.sleep;
};

test("the maximum is the longest Node.js timer, in whole seconds (24 days 20 h 31 min)", () => {
  assert.equal(MAX_AUTH_WAIT_SECONDS, 2_147_483);
  assert.ok(MAX_AUTH_WAIT_SECONDS * 1000 <= 2 ** 31 - 1);
});

test("parseAuthWait: digits only, clamped to the maximum however long", () => {
  assert.equal(parseAuthWait("0"), 0);
  assert.equal(parseAuthWait("3"), 3);
  assert.equal(parseAuthWait("2147483"), MAX_AUTH_WAIT_SECONDS);
  assert.equal(parseAuthWait("2147484"), MAX_AUTH_WAIT_SECONDS, "one past the maximum");
  assert.equal(parseAuthWait("3000000"), MAX_AUTH_WAIT_SECONDS, "34 days: 3e9 ms wrapped to 1 ms before");
  assert.equal(parseAuthWait("9007199254740993"), MAX_AUTH_WAIT_SECONDS, "past Number precision");
  assert.equal(parseAuthWait("99999999999999999999999999"), MAX_AUTH_WAIT_SECONDS, "past 2^64 (nginx ignores it)");
  assert.equal(parseAuthWait("0000000000000000000000005"), MAX_AUTH_WAIT_SECONDS, "over 10 digits is over the maximum");
  for (const bad of ["", "-1", "1.5", "1e3", " 3", "0x10"]) assert.equal(parseAuthWait(bad), undefined, bad);
});

test("the response parser applies the clamp to Auth-Wait", () => {
  assert.equal(sleepOf("Auth-Status: Invalid\r\nAuth-Wait: 99999999999\r\n\r\n"), MAX_AUTH_WAIT_SECONDS);
  assert.equal(sleepOf("Auth-Status: Invalid\r\nAuth-Wait: 18446744073709551617\r\n\r\n"), MAX_AUTH_WAIT_SECONDS);
  assert.equal(sleepOf("Auth-Status: Invalid\r\nAuth-Wait: 7\r\n\r\n"), 7);
});

test("startAuthWait with a huge wait fires at the maximum, not early (mock timers)", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const fired = mock.fn();
  startAuthWait(1e12, fired);
  t.mock.timers.tick(1);
  assert.equal(fired.mock.callCount(), 0, "fired after 1 ms: the 2^31 wrap");
  t.mock.timers.tick(MAX_AUTH_WAIT_SECONDS * 1000 - 2);
  assert.equal(fired.mock.callCount(), 0, "fired before the maximum");
  t.mock.timers.tick(1);
  assert.equal(fired.mock.callCount(), 1, "the wait is honoured: it ends at the maximum");
});

test("startAuthWait with an ordinary wait fires after exactly that many seconds (mock timers)", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const fired = mock.fn();
  startAuthWait(3, fired);
  t.mock.timers.tick(2999);
  assert.equal(fired.mock.callCount(), 0);
  t.mock.timers.tick(1);
  assert.equal(fired.mock.callCount(), 1);
});

test("over a socket: a refusal with Auth-Wait 3000000 (34 days) is not answered at once; Auth-Wait 1 is answered after 1 s", async () => {
  const backend = await startFakePop3();
  const auth = await startFakeAuth(refuse("Invalid login", 3_000_000));
  const [port] = await freePorts(1);
  const proxy = await startPostern([`  auth_http ${auth.url};`, `  server { listen 127.0.0.1:${port}; protocol pop3; }`].join("\n"));
  try {
    const c = await MailClient.connect({ port: port!, timeoutMs: 5000 });
    await c.readLine();
    await c.send("USER u\r\n");
    await c.readLine();
    await c.send("PASS p\r\n");
    await auth.waitForRequests(1);
    // before the clamp the 3e9 ms timer wrapped to 1 ms and -ERR came at once
    assert.equal(await c.readAll(1000), "", "the refusal came without the wait");
    c.close();
    auth.setHandler(refuse("Invalid login", 1));
    const d = await MailClient.connect({ port: port!, timeoutMs: 5000 });
    await d.readLine();
    await d.send("USER u\r\n");
    await d.readLine();
    const started = Date.now();
    await d.send("PASS p\r\n");
    assert.equal(await d.readLine(), "-ERR Invalid login\r\n");
    assert.ok(Date.now() - started >= 900, `answered after ${Date.now() - started} ms`);
    d.close();
    assert.ok(!/\[(alert|crit|emerg)\]/.test(proxy.errorLog()), proxy.errorLog());
  } finally {
    await proxy.stop();
    await auth.close();
    await backend.close();
  }
});

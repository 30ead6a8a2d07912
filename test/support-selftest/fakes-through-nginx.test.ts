/** Proves the fakes' scripted and misbehaving modes are what real nginx sees and reacts to. */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { MailClient } from "../support/client.js";
import { okTo, refuse, startFakeAuth, type AuthHandler, type FakeAuth } from "../support/fake-auth.js";
import { makeMessage, startFakeImap, type FakeBackend, type FakeBackendOptions } from "../support/fake-backend.js";
import type { MailProxyProcess } from "../support/mail-proxy.js";
import { startNginx } from "../support/nginx.js";
import { freePorts } from "../support/ports.js";

let nginx: MailProxyProcess;
let auth: FakeAuth;
let port: number;
const backends: FakeBackend[] = [];

before(async () => {
  auth = await startFakeAuth(refuse("not configured"));
  [port] = (await freePorts(1)) as [number];
  nginx = await startNginx(`
    server { listen 127.0.0.1:${port}; protocol imap; auth_http ${auth.url}; timeout 700ms;
             auth_http_timeout 300ms; }
  `);
});

after(async () => {
  await nginx?.stop();
  await auth?.close();
  await Promise.all(backends.map((b) => b.close()));
});

/** Points the auth server at a fresh fake IMAP backend with `options`. */
async function useBackend(options: FakeBackendOptions): Promise<FakeBackend> {
  const b = await startFakeImap(options);
  backends.push(b);
  auth.setHandler(okTo(b.port));
  return b;
}

/** Logs in and returns the client after the greeting and the LOGIN command. */
async function login(): Promise<MailClient> {
  const c = await MailClient.connect({ port });
  assert.equal(await c.readLine(), "* OK IMAP4 ready\r\n");
  await c.send("a1 LOGIN user secret\r\n");
  return c;
}

/** Waits until the error log contains `pattern` (nginx writes it around the close). */
async function logHas(pattern: RegExp): Promise<void> {
  const deadline = Date.now() + 2000;
  while (!pattern.test(nginx.errorLog())) {
    if (Date.now() > deadline) assert.fail(`error.log lacks ${pattern}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const internalError = "* BAD internal server error\r\n";

test("scripted backend: FETCH literal, IDLE, LOGOUT are relayed; slow replies still arrive in order", async () => {
  const b = await useBackend({ message: 5000, delayMs: 30 });
  const c = await login();
  assert.equal(await c.readLine(), "a1 OK LOGIN completed\r\n");
  await c.send("a2 SELECT INBOX\r\na3 FETCH 1 BODY[]\r\n");
  assert.equal(await c.read(/a2 .*\r\n/), "* 1 EXISTS\r\na2 OK [READ-WRITE] SELECT completed\r\n");
  assert.equal(await c.read(/a3 .*\r\n/), `* 1 FETCH (BODY[] {5000}\r\n${makeMessage(5000)})\r\na3 OK FETCH completed\r\n`);
  await c.send("a4 IDLE\r\n");
  assert.equal(await c.read(/EXISTS\r\n/), "+ idling\r\n* 1 EXISTS\r\n");
  await c.send("DONE\r\n");
  assert.equal(await c.readLine(), "a4 OK IDLE terminated\r\n");
  await c.send("a5 LOGOUT\r\n");
  assert.equal(await c.expectClosed(), "* BYE fake imap\r\na5 OK LOGOUT completed\r\n");
  assert.deepEqual(b.connections[0]!.commands, ["a1 LOGIN {4}user {6}secret", "a2 SELECT INBOX", "a3 FETCH 1 BODY[]", "a4 IDLE", "DONE", "a5 LOGOUT"]);
});

test("backend greeting garbage: nginx reports an invalid upstream response", async () => {
  await useBackend({ garbage: "garbage\r\n" });
  const c = await login();
  assert.equal(await c.expectClosed(), internalError);
  await logHas(/upstream sent invalid response: "garbage"/);
});

test("backend rejecting the credentials: nginx logs its NO line", async () => {
  await useBackend({ accept: (l, p) => l === "user" && p === "other" });
  const c = await login();
  assert.equal(await c.expectClosed(), internalError);
  // nginx logs the reply after the tag.
  await logHas(/upstream sent invalid response: "NO \[AUTHENTICATIONFAILED\] invalid credentials"/);
});

test("backend closing during login and never greeting: internal error", async () => {
  await useBackend({ closeDuringLogin: true });
  const c = await login();
  assert.equal(await c.expectClosed(), internalError);

  await useBackend({ neverGreet: true });
  const d = await login();
  assert.equal(await d.expectClosed(3000), internalError);
  await logHas(/upstream timed out/);
});

test("fake auth replies: refusal text, closed connection, invalid header, missing blank line", async () => {
  // An auth server closing before the blank line gets no error-level log line from nginx 1.22.1.
  const cases: Array<[AuthHandler, string, RegExp | undefined]> = [
    [refuse("go away"), "a1 NO go away\r\n", /client login failed: "go away"/],
    [() => ({ headers: [], close: "beforeReply" }), internalError, undefined],
    [
      () => ({ headers: [["Auth-Status", "OK"]], garbage: "Bad_Header: x\r\n" }),
      internalError,
      /auth http server 127\.0\.0\.1:\d+ sent invalid header in response/,
    ],
    [() => ({ headers: [["Auth-Status", "OK"]], close: "afterHeaders" }), internalError, undefined],
  ];
  for (const [handler, reply, log] of cases) {
    auth.setHandler(handler);
    const c = await login();
    assert.equal(await c.expectClosed(), reply);
    if (log) await logHas(log);
  }
  assert.match(auth.requests.at(-1)!, /^GET \/auth HTTP\/1\.0\r\nHost: 127\.0\.0\.1\r\nAuth-Method: plain\r\n[\s\S]*\r\n\r\n$/);
});

test("fake auth delay beyond auth_http_timeout, and Auth-Wait letting the client retry", async () => {
  auth.setHandler(() => ({ headers: [["Auth-Status", "OK"]], delayMs: 600 }));
  const c = await login();
  assert.equal(await c.expectClosed(), internalError);
  await logHas(/auth http server 127\.0\.0\.1:\d+ timed out/);

  const before = auth.parsed.length;
  auth.setHandler(refuse("try again", 1));
  const d = await login();
  const started = Date.now();
  assert.equal(await d.readLine(), "a1 NO try again\r\n");
  assert.ok(Date.now() - started >= 900, "the reply waited for Auth-Wait");
  const b = await useBackend({});
  await d.send("a2 LOGIN user secret\r\n");
  assert.equal(await d.readLine(), "a2 OK LOGIN completed\r\n");
  d.close();
  assert.deepEqual(
    auth.parsed.slice(before).map((r) => r.header("Auth-Login-Attempt")),
    ["1", "2"],
  );
  assert.equal(b.connections.length, 1);
});

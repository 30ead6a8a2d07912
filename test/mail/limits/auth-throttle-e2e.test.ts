/**
 * Authentication failure throttling against a running Postern with two
 * workers: a client spraying logins from one address is delayed, then
 * refused with its protocol's temporary failure before auth_http is asked;
 * another address is unaffected; one login failed from many addresses is
 * throttled too. The client addresses come from PROXY headers through
 * realip, so the real client's address is the one counted.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { MailClient } from "../../support/client.js";
import { type FakeAuth, refuse, startFakeAuth } from "../../support/fake-auth.js";
import type { MailProxyProcess } from "../../support/mail-proxy.js";
import { freePorts } from "../../support/ports.js";
import { startPostern } from "../../support/postern.js";

let auth: FakeAuth;
let proxy: MailProxyProcess;
let ports: { imap: number; pop3: number; smtp: number };

before(async () => {
  auth = await startFakeAuth(refuse("Invalid login or password"));
  const [imap, pop3, smtp] = (await freePorts(3)) as [number, number, number];
  ports = { imap, pop3, smtp };
  proxy = await startPostern(
    [
      `auth_http ${auth.url};`,
      "auth_fail_zone zone=fails:32k window=1m;",
      "auth_fail_throttle fails delay_after=2 delay=300ms max_delay=600ms refuse_after=4;",
      "auth_fail_log_level warn;",
      `server { listen 127.0.0.1:${imap} proxy_protocol; protocol imap; set_real_ip_from 127.0.0.1; }`,
      `server { listen 127.0.0.1:${pop3}; protocol pop3; }`,
      `server { listen 127.0.0.1:${smtp}; protocol smtp; smtp_auth plain; }`,
    ].join("\n"),
    { workerProcesses: 2 },
  );
});

after(async () => {
  await proxy?.stop();
  await auth?.close();
});

/** One IMAP LOGIN from `source` (PROXY header): the tagged reply and how long it took. */
async function imapLogin(source: string, login: string): Promise<{ reply: string; ms: number }> {
  const c = await MailClient.connect({ port: ports.imap });
  try {
    await c.send(`PROXY TCP4 ${source} 127.0.0.1 40000 143\r\n`);
    assert.match(await c.readLine(), /^\* OK/);
    const start = Date.now();
    await c.send(`a1 LOGIN ${login} wrong-password\r\n`);
    const reply = await c.read(/^a1 .*\r\n/m);
    const ms = Date.now() - start;
    await c.expectClosed(3000);
    return { reply, ms };
  } finally {
    c.close();
  }
}

const usersAsked = (): string[] => auth.parsed.map((r) => r.header("Auth-User") ?? "");

test("a client spraying logins from one address is delayed, then refused before auth_http is asked; another address is not", async () => {
  const first = await imapLogin("10.1.1.1", "spray1");
  const second = await imapLogin("10.1.1.1", "spray2");
  assert.equal(first.reply, "a1 NO Invalid login or password\r\n");
  assert.equal(second.reply, "a1 NO Invalid login or password\r\n");
  const third = await imapLogin("10.1.1.1", "spray3");
  const fourth = await imapLogin("10.1.1.1", "spray4");
  assert.equal(fourth.reply, "a1 NO Invalid login or password\r\n");
  assert.ok(third.ms >= 300, `third attempt delayed 300 ms (took ${third.ms})`);
  assert.ok(fourth.ms >= 600, `fourth attempt delayed 600 ms (took ${fourth.ms})`);
  assert.deepEqual(usersAsked(), ["spray1", "spray2", "spray3", "spray4"]);
  // refused: the temporary failure, auth_http never asked, on either worker
  for (const login of ["spray5", "spray6", "spray7"]) {
    const refused = await imapLogin("10.1.1.1", login);
    assert.equal(refused.reply, "a1 NO [UNAVAILABLE] Too many authentication failures, try later\r\n");
  }
  assert.deepEqual(usersAsked(), ["spray1", "spray2", "spray3", "spray4"]);
  // another address goes straight to auth_http
  const other = await imapLogin("10.2.2.2", "someone");
  assert.equal(other.reply, "a1 NO Invalid login or password\r\n");
  assert.ok(other.ms < 300, `another address is not delayed (took ${other.ms})`);
  assert.equal(usersAsked().at(-1), "someone");
  assert.equal(
    proxy
      .errorLog()
      .match(/\[warn\] .*limiting authentication, failures: 4 by zone "fails" while in http auth state, client: 10\.1\.1\.1, server: [^,]+, login: "spray\d"/g)
      ?.length,
    3,
  );
  assert.match(proxy.errorLog(), /\[notice\] .*delaying authentication for 300ms, failures: 2 by zone "fails" while in http auth state, client: 10\.1\.1\.1/);
  assert.match(proxy.errorLog(), /\[notice\] .*delaying authentication for 600ms, failures: 3 by zone "fails" while in http auth state, client: 10\.1\.1\.1/);
});

test("one login failed from many addresses is throttled too; POP3 and SMTP get their temporary failures", async () => {
  const asked = auth.parsed.length;
  for (let i = 1; i <= 4; i++) assert.equal((await imapLogin(`10.3.3.${i}`, "victim")).reply, "a1 NO Invalid login or password\r\n");
  assert.equal(auth.parsed.length, asked + 4);
  assert.equal((await imapLogin("10.3.3.9", "victim")).reply, "a1 NO [UNAVAILABLE] Too many authentication failures, try later\r\n");
  assert.equal(auth.parsed.length, asked + 4);

  // POP3 and SMTP from 127.0.0.1: four failures, then the refusal in each protocol's words
  for (let i = 1; i <= 4; i++) {
    const c = await MailClient.connect({ port: ports.pop3 });
    await c.readLine();
    await c.send(`USER p${i}\r\nPASS wrong\r\n`);
    assert.equal(await c.expectClosed(5000), "+OK\r\n-ERR Invalid login or password\r\n");
    c.close();
  }
  const pop3 = await MailClient.connect({ port: ports.pop3 });
  await pop3.readLine();
  await pop3.send("USER p5\r\nPASS wrong\r\n");
  assert.equal(await pop3.expectClosed(5000), "+OK\r\n-ERR [SYS/TEMP] Too many authentication failures, try later\r\n");
  pop3.close();
  const smtp = await MailClient.connect({ port: ports.smtp });
  await smtp.readLine();
  await smtp.send("EHLO client.example\r\n");
  await smtp.read(/^250 .*\r\n/m);
  await smtp.send(`AUTH PLAIN ${Buffer.from("\0s1\0wrong").toString("base64")}\r\n`);
  assert.equal(await smtp.expectClosed(5000), "454 4.7.0 Too many authentication failures, try later\r\n");
  smtp.close();
  assert.equal(auth.parsed.length, asked + 8);
});

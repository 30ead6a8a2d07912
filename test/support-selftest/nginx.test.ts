/** Proves the harness against the real nginx: fake auth + fake backends, one login per protocol. */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { MailClient } from "../support/client.js";
import { startFakeAuth, okTo, type FakeAuth } from "../support/fake-auth.js";
import { startFakeImap, startFakePop3, startFakeSmtp, type FakeBackend } from "../support/fake-backend.js";
import { nginxAvailable, startNginx } from "../support/nginx.js";
import type { MailProxyProcess } from "../support/mail-proxy.js";
import { freePorts } from "../support/ports.js";

let nginx: MailProxyProcess;
let imapAuth: FakeAuth, popAuth: FakeAuth, smtpAuth: FakeAuth;
let imap: FakeBackend, pop3: FakeBackend, smtp: FakeBackend;
let ports: { imap: number; pop3: number; smtp: number };

before(async () => {
  assert.ok(nginxAvailable(), "nginx with the mail module must be installed");
  imap = await startFakeImap({ mode: "echo" });
  pop3 = await startFakePop3({ message: "Subject: x\r\n\r\n.dot line\r\nbody\r\n" });
  smtp = await startFakeSmtp();
  imapAuth = await startFakeAuth(okTo(imap.port));
  popAuth = await startFakeAuth(okTo(pop3.port));
  smtpAuth = await startFakeAuth(okTo(smtp.port));
  const [i, p, s] = await freePorts(3);
  ports = { imap: i!, pop3: p!, smtp: s! };
  nginx = await startNginx(`
    server { listen 127.0.0.1:${ports.imap}; protocol imap; auth_http ${imapAuth.url}; }
    server { listen 127.0.0.1:${ports.pop3}; protocol pop3; auth_http ${popAuth.url}; }
    server { listen 127.0.0.1:${ports.smtp}; protocol smtp; auth_http ${smtpAuth.url};
             server_name mx.example.test; xclient off; smtp_auth login plain; }
  `);
});

after(async () => {
  const exit = await nginx?.stop();
  await Promise.all([imap, pop3, smtp, imapAuth, popAuth, smtpAuth].map((x) => x?.close()));
  if (exit) assert.equal(exit.code, 0, "nginx exits 0 after QUIT");
  assert.doesNotMatch(nginx?.errorLog() ?? "", /\[alert\]/);
});

test("IMAP login through nginx reaches the fake backend with literals, then bytes are relayed", async () => {
  const c = await MailClient.connect({ port: ports.imap });
  try {
    assert.equal(await c.readLine(), "* OK IMAP4 ready\r\n");
    await c.send("a1 LOGIN test@example.com secret\r\n");
    assert.equal(await c.readLine(), "a1 OK LOGIN completed\r\n");
    await c.send("hello relay\r\n");
    assert.equal(await c.readLine(), "hello relay\r\n", "echo backend answers through nginx");

    const [req] = await imapAuth.waitForRequests(1);
    assert.deepEqual(req!.headers.slice(0, 5), [
      ["Host", "127.0.0.1"],
      ["Auth-Method", "plain"],
      ["Auth-User", "test@example.com"],
      ["Auth-Pass", "secret"],
      ["Auth-Protocol", "imap"],
    ]);
    assert.equal(req!.header("Auth-Login-Attempt"), "1");
    assert.equal(req!.header("Client-IP"), "127.0.0.1");
    assert.equal(req!.requestLine, "GET /auth HTTP/1.0");

    const [conn] = await imap.waitForConnections(1);
    assert.equal(conn!.received.toString("latin1"), "a1 LOGIN {16}\r\ntest@example.com {6}\r\nsecret\r\nhello relay\r\n");
    assert.equal(conn!.login, "test@example.com");
    assert.equal(conn!.password, "secret");
  } finally {
    c.close();
  }
});

test("POP3 login through nginx sends USER/PASS to the backend, RETR is relayed", async () => {
  const c = await MailClient.connect({ port: ports.pop3 });
  try {
    assert.equal(await c.readLine(), "+OK POP3 ready\r\n");
    await c.send("USER test@example.com\r\n");
    assert.equal(await c.readLine(), "+OK\r\n");
    await c.send("PASS secret\r\n");
    assert.equal(await c.readLine(), "+OK logged in\r\n");
    await c.send("RETR 1\r\n");
    assert.equal(await c.read(/\r\n\.\r\n/), "+OK 31 octets\r\nSubject: x\r\n\r\n..dot line\r\nbody\r\n.\r\n");
    await c.send("QUIT\r\n");
    assert.equal(await c.readLine(), "+OK bye\r\n");
    await c.expectClosed();

    const [req] = await popAuth.waitForRequests(1);
    assert.equal(req!.header("Auth-Protocol"), "pop3");
    assert.equal(req!.header("Auth-Method"), "plain");
    const [conn] = await pop3.waitForConnections(1);
    assert.equal(conn!.received.toString("latin1"), "USER test@example.com\r\nPASS secret\r\nRETR 1\r\nQUIT\r\n");
  } finally {
    c.close();
  }
});

test("SMTP AUTH PLAIN through nginx: backend gets EHLO server_name, then the client's mail", async () => {
  const c = await MailClient.connect({ port: ports.smtp });
  try {
    assert.equal(await c.readLine(), "220 mx.example.test ESMTP ready\r\n");
    await c.send("EHLO client.test\r\n");
    assert.equal(await c.read(/^250 .*\r\n/m), "250-mx.example.test\r\n250 AUTH PLAIN LOGIN\r\n");
    await c.send(`AUTH PLAIN ${Buffer.from("\0test@example.com\0secret").toString("base64")}\r\n`);
    assert.equal(await c.readLine(), "235 2.0.0 OK\r\n");
    await c.send("MAIL FROM:<a@example.com>\r\n");
    assert.equal(await c.readLine(), "250 2.1.0 Ok\r\n");
    await c.send("RCPT TO:<b@example.com>\r\n");
    assert.equal(await c.readLine(), "250 2.1.5 Ok\r\n");
    await c.send("DATA\r\n");
    assert.match(await c.readLine(), /^354 /);
    await c.send("Subject: hi\r\n\r\n..leading dot\r\n.\r\n");
    assert.equal(await c.readLine(), "250 2.0.0 Ok: queued\r\n");
    await c.send("QUIT\r\n");
    assert.equal(await c.readLine(), "221 2.0.0 Bye\r\n");
    await c.expectClosed();

    const [req] = await smtpAuth.waitForRequests(1);
    assert.equal(req!.header("Auth-Protocol"), "smtp");
    assert.equal(req!.header("Auth-Method"), "plain");
    assert.equal(req!.header("Client-Host"), "[UNAVAILABLE]");
    const [conn] = await smtp.waitForConnections(1);
    assert.equal(conn!.commands[0], "EHLO mx.example.test");
    assert.deepEqual(
      conn!.messages.map((m) => m.toString("latin1")),
      ["Subject: hi\r\n\r\n.leading dot\r\n"],
    );
  } finally {
    c.close();
  }
});

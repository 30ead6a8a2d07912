import { test } from "node:test";
import assert from "node:assert/strict";
import { closedPort, fakeBackend, runProxy, serverConf, until } from "./fake.js";
import { proxyBuffer, proxyPassErrorMessage, proxyProtocol, proxySmtpAuth, xclient } from "../../../src/mail/proxy/module.js";
import type { Directive } from "../../../src/conf/directive.js";

const d = <T>(x: Directive<T>, v: T): readonly [Directive<unknown>, unknown] => [x, v];

test("IMAP: LOGIN with literals, tagged OK relayed, then proxying", async () => {
  const be = await fakeBackend("* OK ready\r\n", ["+ go\r\n", "+ go\r\n", "a7 OK done\r\n", "* BYE\r\n"]);
  const run = await runProxy({ protocol: "imap", backendPort: be.port, imapTag: "a7", login: 'us er"x', password: 'p{w} "d' });
  await until(() => run.text().includes("a7 OK done"));
  assert.equal(run.text(), "a7 OK done\r\n");
  assert.equal(be.received[0]!.toString("latin1"), 'a7 LOGIN {7}\r\nus er"x {7}\r\np{w} "d\r\n');
  run.client.write("a8 LOGOUT\r\n");
  await until(() => run.text().includes("* BYE"));
  assert.ok(be.received[0]!.toString().endsWith("a8 LOGOUT\r\n"));
  assert.match(
    run.logs.contents,
    /\[info\] .*\*1 client logged in, client: 127\.0\.0\.1, server: 127\.0\.0\.1:\d+, login: "us er\\x22x", upstream: 127\.0\.0\.1:\d+\n/,
  );
  await run.close();
  await be.close();
});

test("IMAP: one untagged line before the tagged OK is relayed too", async () => {
  const be = await fakeBackend("* OK ready\r\n", ["+ \r\n", "+ \r\n", "* CAPABILITY IMAP4rev1\r\na1 OK hi\r\n"]);
  const run = await runProxy({ protocol: "imap", backendPort: be.port });
  await until(() => run.text().includes("a1 OK hi"));
  assert.equal(run.text(), "* CAPABILITY IMAP4rev1\r\na1 OK hi\r\n");
  await run.close();
  await be.close();
});

test("IMAP: untagged line arriving alone waits for the tagged reply in the same buffer", async () => {
  const be = await fakeBackend("* OK ready\r\n", ["+ \r\n", "+ \r\n", undefined], (s) => {
    s.write("* CAPABILITY X\r\n");
    setTimeout(() => s.write("a1 OK later\r\n"), 50);
  });
  const run = await runProxy({ protocol: "imap", backendPort: be.port });
  await until(() => run.text().includes("a1 OK later"));
  assert.equal(run.text(), "* CAPABILITY X\r\na1 OK later\r\n");
  await run.close();
  await be.close();
});

for (const pass of [false, true]) {
  test(`IMAP: tagged NO with proxy_pass_error_message ${pass ? "on" : "off"}`, async () => {
    const be = await fakeBackend("* OK ready\r\n", ["+ \r\n", "+ \r\n", "a1 NO [AUTHENTICATIONFAILED] backend says no\r\n"]);
    const run = await runProxy({ protocol: "imap", backendPort: be.port, conf: serverConf([d(proxyPassErrorMessage, pass)]) });
    await run.clientClosed;
    if (pass) {
      assert.equal(run.text(), "a1 NO [AUTHENTICATIONFAILED] backend says no\r\n");
      assert.match(
        run.logs.contents,
        /\[info\] .*upstream sent invalid response: "NO \[AUTHENTICATIONFAILED\] backend says no" while reading response from upstream, client: /,
      );
    } else {
      assert.equal(run.text(), "* BAD internal server error\r\n");
      assert.match(
        run.logs.contents,
        /\[error\] .*upstream sent invalid response: "NO \[AUTHENTICATIONFAILED\] backend says no" while reading response from upstream/,
      );
    }
    await run.close();
    await be.close();
  });
}

test("IMAP: bad greeting, and bad continuation, fail", async () => {
  const be = await fakeBackend("* BYE go away\r\n", []);
  const run = await runProxy({ protocol: "imap", backendPort: be.port });
  await run.clientClosed;
  assert.equal(run.text(), "* BAD internal server error\r\n");
  assert.match(run.logs.contents, /upstream sent invalid response: "\* BYE go away" while reading response from upstream/);
  await run.close();
  await be.close();
  const be2 = await fakeBackend("* OK\r\n", ["a1 BAD no literals\r\n"]);
  const run2 = await runProxy({ protocol: "imap", backendPort: be2.port, conf: serverConf([d(proxyPassErrorMessage, true)]) });
  await run2.clientClosed;
  assert.equal(run2.text(), "a1 BAD no literals\r\n");
  await run2.close();
  await be2.close();
});

test("POP3: USER/PASS, PASS reply relayed", async () => {
  const be = await fakeBackend("+OK pop\r\n", ["+OK user\r\n", "+OK logged in\r\n", "+OK bye\r\n"], (s) => s.end());
  const run = await runProxy({ protocol: "pop3", backendPort: be.port, login: "bob", password: "pw" });
  await until(() => run.text().includes("logged in"));
  assert.equal(be.received[0]!.toString(), "USER bob\r\nPASS pw\r\n");
  assert.equal(run.text(), "+OK logged in\r\n");
  run.client.write("QUIT\r\n");
  await run.clientClosed;
  assert.equal(run.text(), "+OK logged in\r\n+OK bye\r\n");
  assert.match(run.logs.contents, /\[info\] .*proxied session done, client: /);
  await run.close();
  await be.close();
});

test("POP3: -ERR to PASS with pass_error_message on reaches the client", async () => {
  const be = await fakeBackend("+OK pop\r\n", ["+OK\r\n", "-ERR [AUTH] nope\r\n"]);
  const run = await runProxy({ protocol: "pop3", backendPort: be.port, conf: serverConf([d(proxyPassErrorMessage, true)]) });
  await run.clientClosed;
  assert.equal(run.text(), "-ERR [AUTH] nope\r\n");
  await run.close();
  await be.close();
});

test("extra bytes after a login reply are discarded; reply split across packets is accumulated", async () => {
  const be = await fakeBackend("", ["+OK\r\nJUNK\r\n", "+OK in\r\n"], undefined);
  const srv = be.sockets;
  const run = await runProxy({ protocol: "pop3", backendPort: be.port });
  await until(() => srv.length === 1);
  srv[0]!.write("+O");
  await new Promise((r) => setTimeout(r, 30));
  srv[0]!.write("K hello\r\n");
  await until(() => run.text().includes("+OK in"));
  assert.equal(run.text(), "+OK in\r\n");
  assert.equal(be.received[0]!.toString(), "USER user\r\nPASS secret\r\n");
  await run.close();
  await be.close();
});

test("too long backend reply: logged with the buffer minus its last byte, internal error", async () => {
  const be = await fakeBackend("+OK " + "x".repeat(100), []);
  const run = await runProxy({ protocol: "pop3", backendPort: be.port, conf: serverConf([d(proxyBuffer, 32)]) });
  await run.clientClosed;
  assert.equal(run.text(), "-ERR internal server error\r\n");
  assert.match(
    run.logs.contents,
    new RegExp(`\\[error\\] .*upstream sent too long response line: "\\+OK ${"x".repeat(27)}" while reading response from upstream`),
  );
  await run.close();
  await be.close();
});

test("backend closing during login, and connection refused, give the internal error", async () => {
  const be = await fakeBackend("+OK\r\n", [], (s) => s.on("data", () => s.destroy()));
  const run = await runProxy({ protocol: "pop3", backendPort: be.port });
  await run.clientClosed;
  assert.equal(run.text(), "-ERR internal server error\r\n");
  await run.close();
  await be.close();
  const port = await closedPort();
  const run2 = await runProxy({ protocol: "smtp", backendPort: port, smtp: { helo: "c", esmtp: true, clientHost: "[UNAVAILABLE]" } });
  await run2.clientClosed;
  assert.equal(run2.text(), "451 4.3.2 Internal server error\r\n");
  assert.match(run2.logs.contents, /\[error\] .*connect\(\) failed \(111: Connection refused\) while connecting to upstream, .*upstream: 127\.0\.0\.1:\d+/);
  await run2.close();
});

test("timeout covers connect + login: silent backend -> upstream timed out", async () => {
  const be = await fakeBackend("* OK\r\n", [undefined]);
  const t0 = Date.now();
  const run = await runProxy({ protocol: "imap", backendPort: be.port, timeoutMs: 400 });
  await run.clientClosed;
  const took = Date.now() - t0;
  assert.ok(took >= 380 && took < 2000, `took ${took}`);
  assert.equal(run.text(), "* BAD internal server error\r\n");
  assert.match(run.logs.contents, /\[info\] .*upstream timed out \(110: Connection timed out\) while sending LOGIN command to upstream/);
  await run.close();
  await be.close();
});

const smtpInfo = { helo: "client.example", esmtp: true, clientHost: "host.example" };

test("SMTP xclient on: EHLO, XCLIENT, client EHLO; client gets 235 2.0.0 OK", async () => {
  const be = await fakeBackend("220 mx\r\n", ["250-mx\r\n250-XCLIENT ADDR NAME\r\n250 8BITMIME\r\n", "220 mx ok\r\n", "250 mx\r\n", "250 2.1.0 ok\r\n"]);
  const run = await runProxy({
    protocol: "smtp",
    backendPort: be.port,
    smtp: smtpInfo,
    login: Buffer.from("us er+=é", "utf8"),
    serverName: "front.example",
    pending: "MAIL FROM:<a@b>\r\n",
  });
  await until(() => run.text().includes("250 2.1.0"));
  assert.equal(run.text(), "235 2.0.0 OK\r\n250 2.1.0 ok\r\n");
  assert.equal(
    be.received[0]!.toString("latin1"),
    "EHLO front.example\r\nXCLIENT ADDR=127.0.0.1 LOGIN=us+20er+2B+3D+C3+A9 NAME=host.example\r\nEHLO client.example\r\nMAIL FROM:<a@b>\r\n",
  );
  await run.close();
  await be.close();
});

test("SMTP multi-line reply is complete only at its last line", async () => {
  const be = await fakeBackend("220 mx\r\n", [undefined, "250 x\r\n", "250 y\r\n"], undefined);
  const run = await runProxy({ protocol: "smtp", backendPort: be.port, smtp: smtpInfo });
  await until(() => be.received[0]?.toString().includes("EHLO") === true);
  be.sockets[0]!.write("250-first\r\n");
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(!be.received[0]!.toString().includes("XCLIENT"));
  be.sockets[0]!.write("250 last\r\n");
  await until(() => run.text().includes("235"));
  await run.close();
  await be.close();
});

test("SMTP XCLIENT: IPv6 address, no LOGIN with proxy_smtp_auth, HELO client", async () => {
  const be = await fakeBackend("220 mx\r\n", ["250 mx\r\n", "250 ok\r\n", "250 mx\r\n", "235 2.7.0 Authentication successful\r\n"]);
  const run = await runProxy({
    protocol: "smtp",
    backendPort: be.port,
    smtp: { helo: "h", esmtp: false, clientHost: "[TEMPUNAVAIL]" },
    clientAddr: "2001:db8::5",
    login: "u",
    password: "p",
    conf: serverConf([d(proxySmtpAuth, true)]),
  });
  await until(() => run.text().includes("235"));
  assert.equal(run.text(), "235 2.0.0 OK\r\n");
  const plain = Buffer.from("\0u\0p").toString("base64");
  assert.equal(be.received[0]!.toString(), `EHLO proxy.test\r\nXCLIENT ADDR=IPV6:2001:db8::5 NAME=[TEMPUNAVAIL]\r\nHELO h\r\nAUTH PLAIN ${plain}\r\n`);
  await run.close();
  await be.close();
});

test("SMTP xclient off: only HELO server_name for a HELO client; no LOGIN when login empty", async () => {
  const be = await fakeBackend("220 mx\r\n", ["250 mx\r\n"]);
  const run = await runProxy({
    protocol: "smtp",
    backendPort: be.port,
    smtp: { helo: "h", esmtp: false, clientHost: "x" },
    conf: serverConf([d(xclient, false)]),
  });
  await until(() => run.text().includes("235"));
  assert.equal(be.received[0]!.toString(), "HELO proxy.test\r\n");
  await run.close();
  await be.close();
  const be2 = await fakeBackend("220 mx\r\n", ["250 mx\r\n", "250 ok\r\n"]);
  const run2 = await runProxy({ protocol: "smtp", backendPort: be2.port, smtp: { helo: "", esmtp: false, clientHost: "n" }, login: "" });
  await until(() => run2.text().includes("235"));
  assert.equal(be2.received[0]!.toString(), "EHLO proxy.test\r\nXCLIENT ADDR=127.0.0.1 NAME=n\r\n");
  await run2.close();
  await be2.close();
});

test("SMTP smtp_auth none: MAIL and RCPT replayed, RCPT reply (even 550) relayed, pipelined input follows", async () => {
  const be = await fakeBackend("220 mx\r\n", [
    "250 mx\r\n",
    "250 ok\r\n",
    "250 mx\r\n",
    "250 2.1.0 ok\r\n",
    "550 5.1.1 no such user\r\n",
    "250 ok2\r\n",
    "354 go\r\n",
  ]);
  const run = await runProxy({
    protocol: "smtp",
    backendPort: be.port,
    authMethod: "none",
    login: "",
    smtp: { helo: "c", esmtp: true, clientHost: "n", from: "MAIL FROM:<a@b>", to: "RCPT TO:<x@y>" },
    pending: "RCPT TO:<BAD@d>\r\nDATA\r\n",
  });
  await until(() => run.text().includes("354"));
  assert.equal(run.text(), "550 5.1.1 no such user\r\n250 ok2\r\n354 go\r\n");
  assert.equal(
    be.received[0]!.toString(),
    "EHLO proxy.test\r\nXCLIENT ADDR=127.0.0.1 NAME=n\r\nEHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nRCPT TO:<BAD@d>\r\nDATA\r\n",
  );
  await run.close();
  await be.close();
});

for (const pass of [false, true]) {
  test(`SMTP: AUTH rejected by backend, proxy_pass_error_message ${pass ? "on" : "off"}`, async () => {
    const be = await fakeBackend("220 mx\r\n", ["250 mx\r\n", "250 ok\r\n", "250 mx\r\n", "535 5.7.8 bad\r\n"]);
    const run = await runProxy({
      protocol: "smtp",
      backendPort: be.port,
      smtp: smtpInfo,
      conf: serverConf([d(proxySmtpAuth, true), d(proxyPassErrorMessage, pass)]),
    });
    await run.clientClosed;
    assert.equal(run.text(), pass ? "535 5.7.8 bad\r\n" : "451 4.3.2 Internal server error\r\n");
    assert.match(
      run.logs.contents,
      new RegExp(`\\[${pass ? "info" : "error"}\\] .*upstream sent invalid response: "535 5.7.8 bad" while reading response from upstream`),
    );
    await run.close();
    await be.close();
  });
}

test("SMTP proxy_smtp_auth without a password: no password available", async () => {
  const be = await fakeBackend("220 mx\r\n", ["250 mx\r\n", "250 ok\r\n", "250 mx\r\n"]);
  const run = await runProxy({
    protocol: "smtp",
    backendPort: be.port,
    smtp: smtpInfo,
    authMethod: "external",
    password: "",
    conf: serverConf([d(proxySmtpAuth, true)]),
  });
  await run.clientClosed;
  assert.equal(run.text(), "451 4.3.2 Internal server error\r\n");
  assert.match(run.logs.contents, /\[error\] .*no password available while sending AUTH to upstream/);
  assert.ok(!be.received[0]!.toString().includes("AUTH"));
  await run.close();
  await be.close();
});

test("SMTP XCLIENT refused (5xx) fails; 220 and 250 are both accepted", async () => {
  const be = await fakeBackend("220 mx\r\n", ["250 mx\r\n", "550 no xclient for you\r\n"]);
  const run = await runProxy({ protocol: "smtp", backendPort: be.port, smtp: smtpInfo });
  await run.clientClosed;
  assert.equal(run.text(), "451 4.3.2 Internal server error\r\n");
  assert.match(run.logs.contents, /upstream sent invalid response: "550 no xclient for you"/);
  await run.close();
  await be.close();
});

test("PROXY protocol v1 and v2 headers reach the backend first", async () => {
  const be = await fakeBackend("+OK\r\n", ["+OK\r\n", "+OK in\r\n"]);
  const run = await runProxy({ protocol: "pop3", backendPort: be.port, conf: serverConf([d(proxyProtocol, "on")]) });
  await until(() => run.text().includes("+OK in"));
  const side = await run.serverSide;
  assert.equal(be.received[0]!.toString(), `PROXY TCP4 127.0.0.1 127.0.0.1 ${side.remotePort} ${side.localPort}\r\nUSER user\r\nPASS secret\r\n`);
  await run.close();
  await be.close();
  const be2 = await fakeBackend("+OK\r\n", ["+OK\r\n", "+OK in\r\n"]);
  const run2 = await runProxy({ protocol: "pop3", backendPort: be2.port, conf: serverConf([d(proxyProtocol, "v2")]) });
  await until(() => run2.text().includes("+OK in"));
  const side2 = await run2.serverSide;
  const got = be2.received[0]!;
  assert.deepEqual(got.subarray(0, 16), Buffer.from([13, 10, 13, 10, 0, 13, 10, 0x51, 0x55, 0x49, 0x54, 10, 0x21, 0x11, 0, 19]));
  assert.deepEqual(got.subarray(16, 24), Buffer.from([127, 0, 0, 1, 127, 0, 0, 1]));
  assert.equal(got.readUInt16BE(24), side2.remotePort);
  assert.equal(got.readUInt16BE(26), side2.localPort);
  assert.equal(got.subarray(35).toString(), "USER user\r\nPASS secret\r\n");
  await run2.close();
  await be2.close();
});

test("client bytes sent during the login are forwarded after it, in order", async () => {
  const be = await fakeBackend("+OK\r\n", ["+OK\r\n", "+OK in\r\n"]);
  const run = await runProxy({ protocol: "pop3", backendPort: be.port, pending: "STAT\r\n", early: "LIST\r\n" });
  await until(() => be.received[0]?.toString().includes("LIST") === true);
  assert.equal(be.received[0]!.toString(), "USER user\r\nPASS secret\r\nSTAT\r\nLIST\r\n");
  await run.close();
  await be.close();
});

// Auth-User / Auth-Pass reach the proxy from the auth server: a CR, LF or NUL
// in them must never become a line (or a SASL field) of its own at the backend.
const UNSAFE_CREDENTIALS: ReadonlyArray<{
  protocol: "imap" | "pop3" | "smtp";
  login: string;
  password: string;
  conf?: ReturnType<typeof serverConf>;
  what: string;
}> = [
  { protocol: "pop3", login: "user\r\nDELE 1", password: "secret", what: "login" },
  { protocol: "pop3", login: "user", password: "pw\r\nDELE 1", what: "password" },
  { protocol: "pop3", login: "us\0er", password: "secret", what: "login" },
  { protocol: "imap", login: "user", password: "pw\r\na2 DELETE INBOX", what: "password" },
  { protocol: "imap", login: "us\0er", password: "secret", what: "login" },
  { protocol: "smtp", login: "victim\0x", password: "secret", conf: serverConf([d(proxySmtpAuth, true)]), what: "login" },
  { protocol: "smtp", login: "user", password: "pw\0extra", conf: serverConf([d(proxySmtpAuth, true)]), what: "password" },
];

for (const c of UNSAFE_CREDENTIALS) {
  test(`${c.protocol}: a ${c.what} with CR, LF or NUL (${JSON.stringify(c.login)} / ${JSON.stringify(c.password)}) never reaches the backend: internal error, logged`, async () => {
    const be = await fakeBackend(c.protocol === "imap" ? "* OK ready\r\n" : c.protocol === "pop3" ? "+OK ready\r\n" : "220 ready\r\n", [
      "+OK\r\n",
      "+OK\r\n",
      "+OK\r\n",
    ]);
    const run = await runProxy({ protocol: c.protocol, backendPort: be.port, login: c.login, password: c.password, ...(c.conf ? { conf: c.conf } : {}) });
    // (bounded: before the guard the login went on and the client stayed open)
    await Promise.race([run.clientClosed, new Promise((r) => setTimeout(r, 2000))]);
    const internal = { imap: "* BAD internal server error\r\n", pop3: "-ERR internal server error\r\n", smtp: "451 4.3.2 Internal server error\r\n" }[
      c.protocol
    ];
    assert.equal(run.text(), internal);
    // the backend was never even connected to
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(be.received.length, 0, be.received.map(String).join("|"));
    assert.match(run.logs.contents, new RegExp(`\\[error\\] .*refused to send ${c.what} with CR, LF or NUL to upstream while sending login to upstream`));
    await run.close();
    await be.close();
  });
}

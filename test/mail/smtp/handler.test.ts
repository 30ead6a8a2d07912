import { test } from "node:test";
import assert from "node:assert/strict";
import { SmtpFrontEnd } from "../../../src/mail/smtp/handler.js";
import {
  smtpAuthDirective,
  smtpCapabilitiesDirective,
  smtpClientBufferDirective,
  smtpGreetingDelayDirective,
  smtpModule,
  smtpWire,
} from "../../../src/mail/smtp/module.js";
import { smtpProtocol } from "../../../src/mail/smtp/protocol.js";
import { maxErrorsDirective, serverNameDirective } from "../../../src/mail/core-module.js";
import type { StarttlsMode } from "../../../src/mail/front-end.js";
import { FakeSession, type Setting, set, smtpServer } from "../fake-session.js";

const b64 = (s: string) => Buffer.from(s, "latin1").toString("base64");
const OK = "250 2.0.0 OK\r\n";
const INVALID = "500 5.5.1 Invalid command\r\n";
const GREETING = "220 mx.example.test ESMTP ready\r\n";

type Method = "plain" | "login" | "cram-md5" | "external" | "none";

/** A started session; `settings` are server-level directive values. */
async function open(settings: readonly Setting[] = [], starttls: StarttlsMode = "off"): Promise<{ s: FakeSession; fe: SmtpFrontEnd }> {
  const s = new FakeSession(smtpServer(settings));
  s.starttls = starttls;
  const fe = new SmtpFrontEnd(s);
  s.frontEnd = fe;
  s.busy = true;
  await fe.start();
  s.busy = false;
  s.process();
  return { s, fe };
}

function auth(...methods: Method[]): Setting {
  return set(smtpAuthDirective, new Set(methods));
}

/** Sends one chunk and returns what came back. */
function say(s: FakeSession, text: string): string {
  s.receive(text);
  return s.output();
}

test("greeting, deadline armed when it is sent, and the protocol's fixed replies", async () => {
  const { s } = await open();
  assert.equal(s.output(), GREETING);
  assert.equal(s.deadlineArmed, 1);
  assert.deepEqual(smtpProtocol.replies, {
    internalError: "451 4.3.2 Internal server error\r\n",
    certError: "421 4.7.1 SSL certificate error\r\n",
    noCert: "421 4.7.1 No required SSL certificate\r\n",
  });
  assert.equal(smtpProtocol.name, "smtp");
  assert.equal(smtpProtocol.alpn, "smtp");
  assert.equal(smtpProtocol.bufferSize(smtpServer()), 4096);
  assert.equal(smtpProtocol.bufferSize(smtpServer([set(smtpClientBufferDirective, 64)])), 64);
});

test("EHLO replies in every variant", async () => {
  const server = smtpServer([auth("plain", "login", "cram-md5", "external"), set(smtpCapabilitiesDirective, ["SIZE 10485760", "8BITMIME"])]);
  const w = smtpWire(server);
  assert.equal(smtpWire(smtpServer()).ehlo, "250-mx.example.test\r\n250 AUTH PLAIN LOGIN\r\n");
  assert.equal(w.ehloStarttls, "250-mx.example.test\r\n250-SIZE 10485760\r\n250-8BITMIME\r\n250-AUTH PLAIN LOGIN CRAM-MD5 EXTERNAL\r\n250 STARTTLS\r\n");
  assert.equal(w.ehloStarttlsOnly, "250-mx.example.test\r\n250-SIZE 10485760\r\n250-8BITMIME\r\n250 STARTTLS\r\n");
  const none = smtpWire(smtpServer([auth("none")]));
  assert.equal(none.ehloStarttlsOnly, "250-mx.example.test\r\n250 STARTTLS\r\n");
  assert.equal(none.ehlo, "250 mx.example.test\r\n");
  assert.equal(none.ehloStarttls, "250-mx.example.test\r\n250 STARTTLS\r\n");
  const capsOnly = smtpWire(smtpServer([auth("none"), set(smtpCapabilitiesDirective, ["PIPELINING"])]));
  assert.equal(capsOnly.ehlo, "250-mx.example.test\r\n250 PIPELINING\r\n");
  assert.equal(w.greeting, GREETING);
  assert.equal(w.helo, "250 mx.example.test\r\n");

  const { s, fe } = await open([auth("plain", "cram-md5")], "on");
  s.output();
  assert.equal(say(s, "EHLO a\r\n"), "250-mx.example.test\r\n250-AUTH PLAIN CRAM-MD5\r\n250 STARTTLS\r\n");
  assert.equal(fe.authFacts().esmtp, true);
  assert.equal(say(s, "HELO b\r\n"), "250 mx.example.test\r\n");
  assert.equal(fe.authFacts().esmtp, true, "a later HELO does not unmark ESMTP");
  assert.equal(fe.authFacts().helo, "b");
});

test("server_name comes from the mail block; directives merge as nginx's", () => {
  const server = smtpServer([], [set(serverNameDirective, ["outer.example"]), set(smtpCapabilitiesDirective, ["X-OUTER"])]);
  assert.equal(smtpWire(server).greeting, "220 outer.example ESMTP ready\r\n");
  assert.equal(smtpWire(server).ehlo, "250-outer.example\r\n250-X-OUTER\r\n250 AUTH PLAIN LOGIN\r\n");
  assert.deepEqual(
    smtpModule.directives.map((d) => [d.name, d.defaultText]),
    [
      ["smtp_client_buffer", "4k|8k"],
      ["smtp_greeting_delay", "0"],
      ["smtp_capabilities", "—"],
      ["smtp_auth", "plain login"],
    ],
  );
});

test("HELO/EHLO need exactly one argument and forget MAIL", async () => {
  const { s, fe } = await open([auth("none")]);
  s.output();
  assert.equal(say(s, "HELO\r\n"), "501 5.5.4 Invalid argument\r\n");
  assert.equal(say(s, "EHLO a b\r\n"), "501 5.5.4 Invalid argument\r\n");
  assert.equal(say(s, "MAIL FROM:<a>\r\n"), OK);
  assert.equal(fe.authFacts().from, "MAIL FROM:<a>");
  assert.equal(say(s, "HELO x\r\n"), "250 mx.example.test\r\n");
  assert.equal(fe.authFacts().from, undefined);
  assert.equal(say(s, "RCPT TO:<b>\r\n"), "503 5.5.1 Bad sequence of commands\r\n");
  assert.equal(s.errors, 0, "none of these are syntax errors");
});

test("NOOP, RSET, QUIT; VRFY/EXPN/HELP refused without counting", async () => {
  const { s } = await open([set(maxErrorsDirective, 1)]);
  s.output();
  assert.equal(say(s, "NOOP\r\nRSET\r\nVRFY x\r\nEXPN y\r\nHELP\r\n"), OK + OK + INVALID + INVALID + INVALID);
  assert.equal(s.errors, 0);
  assert.equal(s.closed, false);
  assert.equal(say(s, "QUIT\r\nNOOP\r\n"), "221 2.0.0 Bye\r\n");
  assert.equal(s.closed, true);
});

test("syntax errors count toward max_errors; the last reply is still sent", async () => {
  const { s } = await open([set(maxErrorsDirective, 3)]);
  s.output();
  assert.equal(say(s, "DATA\r\nXCLIENT A=b\r\nNOOP\r\nBDAT 1\r\nNOOP\r\n"), INVALID + INVALID + OK + INVALID);
  assert.equal(s.closed, true);
  assert.equal(s.errors, 3);
});

test("MAIL without smtp_auth none: 530, logged with CR/LF as _", async () => {
  const { s } = await open();
  s.output();
  assert.equal(say(s, "MAIL FROM:<a@example.com>\r\n"), "530 5.7.1 Authentication required\r\n");
  assert.ok(
    s.logged().some((l) => l.includes('[info] *1 client was rejected: "MAIL FROM:<a@example.com>__", client: 127.0.0.1')),
    s.logged().join("\n"),
  );
});

test("smtp_auth none: MAIL, RCPT -> authenticate with method none, raw lines kept", async () => {
  const { s, fe } = await open([auth("none")]);
  s.output();
  assert.equal(say(s, "EHLO mta.example\r\n"), "250 mx.example.test\r\n");
  assert.equal(say(s, "RCPT TO:<b>\r\n"), "503 5.5.1 Bad sequence of commands\r\n");
  assert.equal(say(s, "MAIL\r\n"), "501 5.5.4 Invalid argument\r\n");
  assert.equal(say(s, "mail FROM:<a@example.com>  SIZE=10 \r\n"), OK);
  assert.equal(say(s, "MAIL FROM:<c>\r\n"), "503 5.5.1 Bad sequence of commands\r\n");
  assert.equal(say(s, "RCPT\r\n"), "501 5.5.4 Invalid argument\r\n");
  assert.equal(say(s, "RCPT TO:<b@example.com>\r\nNOOP\r\n"), "");
  assert.deepEqual(
    s.credentials.map((c) => [c.method, c.login.length, c.password.length]),
    [["none", 0, 0]],
  );
  assert.deepEqual(fe.authFacts(), {
    helo: "mta.example",
    esmtp: true,
    from: "mail FROM:<a@example.com>  SIZE=10",
    to: "RCPT TO:<b@example.com>",
    clientHost: "[UNAVAILABLE]",
  });
  // refused with Auth-Wait: HELO and MAIL kept, a new RCPT is enough; the pipelined NOOP runs first
  s.refuse("Temporary failure", "451 4.3.0");
  assert.equal(s.output(), "451 4.3.0 Temporary failure\r\n" + OK);
  assert.equal(say(s, "RCPT TO:<c>\r\n"), "");
  assert.equal(s.credentials.length, 2);
  assert.equal(fe.authFacts().to, "RCPT TO:<c>");
  assert.equal(fe.authFacts().helo, "mta.example");
});

test("smtp_auth none never sends credentials typed in an earlier AUTH", async () => {
  const { s } = await open([auth("none", "plain")]);
  s.output();
  say(s, "MAIL FROM:<a>\r\n");
  say(s, `AUTH PLAIN ${b64("\0user\0secret")}\r\n`);
  s.refuse("Invalid login or password");
  assert.equal(s.output(), "535 5.7.0 Invalid login or password\r\n");
  say(s, "RCPT TO:<b>\r\n");
  const last = s.credentials.at(-1)!;
  assert.equal(last.method, "none");
  assert.equal(last.login.length + last.password.length, 0);
});

test("AUTH PLAIN: challenge, initial response, errors logged and not counted", async () => {
  const { s } = await open([set(maxErrorsDirective, 1)]);
  s.output();
  assert.equal(say(s, "AUTH\r\n"), "501 5.5.4 Invalid argument\r\n");
  assert.equal(say(s, "AUTH PLAIN\r\n"), "334 \r\n");
  assert.equal(say(s, `${b64("nonul")}\r\n`), INVALID);
  assert.equal(say(s, "AUTH PLAIN !!\r\n"), INVALID);
  assert.equal(say(s, `AUTH PLAIN ${b64("a\0b")}\r\n`), INVALID);
  assert.equal(say(s, "AUTH PLAIN a b\r\n"), INVALID);
  // the commands' debug lines are test/mail/debug-log.test.ts's
  assert.deepEqual(
    s
      .logged()
      .filter((l) => !l.startsWith("[debug]"))
      .map((l) => l.replace(/, client: .*/, "")),
    [
      "[info] *1 client sent invalid login in AUTH PLAIN command",
      "[info] *1 client sent invalid base64 encoding in AUTH PLAIN command",
      "[info] *1 client sent invalid password in AUTH PLAIN command",
    ],
  );
  assert.equal(s.errors, 0);
  assert.equal(say(s, "auth plain\r\n"), "334 \r\n");
  assert.equal(say(s, `${b64("authz\0us er\0pa ss")}\r\n`), "");
  const c = s.credentials[0]!;
  assert.deepEqual([c.method, c.login.toString(), c.password.toString()], ["plain", "us er", "pa ss"]);
  s.refuse("Nope", "550 5.7.1");
  assert.equal(s.output(), "550 5.7.1 Nope\r\n");
  assert.equal(say(s, "NOOP\r\n"), OK, "back in the command state");
});

test("AUTH LOGIN: both challenges, initial response, any line is a response", async () => {
  const { s } = await open();
  s.output();
  assert.equal(say(s, "AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
  assert.equal(say(s, "QUIT\r\n"), "334 UGFzc3dvcmQ6\r\n", "QUIT is base64 for a user name here");
  assert.equal(say(s, "*\r\n"), INVALID);
  assert.ok(s.logged().at(-1)!.includes("client sent invalid base64 encoding in AUTH LOGIN command"));
  assert.equal(s.closed, false);
  assert.equal(say(s, `AUTH LOGIN ${b64("user")}\r\n`), "334 UGFzc3dvcmQ6\r\n");
  assert.equal(say(s, `${b64("pw")} ignored words\r\n`), "");
  const c = s.credentials[0]!;
  assert.deepEqual([c.method, c.login.toString(), c.password.toString()], ["plain", "user", "pw"]);
  assert.equal(say(s, "AUTH LOGIN a b\r\n"), "", "input waits while authenticating");
  s.refuse("Go away");
  assert.equal(s.output(), "535 5.7.0 Go away\r\n" + INVALID);
});

test("AUTH CRAM-MD5 and EXTERNAL only when enabled; the salt challenge", async () => {
  const off = await open();
  off.s.output();
  assert.equal(say(off.s, "AUTH CRAM-MD5\r\n"), INVALID);
  assert.equal(say(off.s, "AUTH EXTERNAL\r\n"), INVALID);
  assert.equal(say(off.s, `AUTH EXTERNAL ${b64("x")}\r\n`), INVALID, "Postern: EXTERNAL with an initial response needs `external` too");
  assert.equal(off.s.credentials.length, 0);

  const { s } = await open([auth("cram-md5", "external")]);
  s.output();
  const challenge = `334 ${b64("<1216429426.1795804744@mx.example.test>")}\r\n`;
  assert.equal(say(s, "AUTH CRAM-MD5 x\r\n"), INVALID);
  assert.equal(say(s, "AUTH CRAM-MD5\r\n"), challenge);
  assert.equal(say(s, `${b64("user short")}\r\n`), INVALID);
  assert.ok(s.logged().at(-1)!.includes("client sent invalid CRAM-MD5 hash in AUTH CRAM-MD5 command"));
  assert.equal(say(s, "AUTH CRAM-MD5\r\n"), challenge);
  assert.equal(say(s, `${b64("user 0123456789abcdef0123456789abcdef")}\r\n`), "");
  let c = s.credentials.at(-1)!;
  assert.deepEqual(
    [c.method, c.login.toString(), c.password.toString(), c.salt],
    ["cram-md5", "user", "0123456789abcdef0123456789abcdef", "<1216429426.1795804744@mx.example.test>"],
  );
  s.refuse("No");
  s.output();
  assert.equal(say(s, "AUTH EXTERNAL\r\n"), "334 VXNlcm5hbWU6\r\n");
  assert.equal(say(s, "!\r\n"), INVALID);
  assert.equal(say(s, `AUTH EXTERNAL ${b64("id")}\r\n`), "");
  c = s.credentials.at(-1)!;
  assert.deepEqual([c.method, c.login.toString(), c.password.length, c.salt], ["external", "id", 0, undefined]);
});

test("starttls only: AUTH refused; MAIL and RCPT refused before TLS (Postern), fine after", async () => {
  const { s, fe } = await open([auth("none", "plain")], "only");
  s.output();
  assert.equal(say(s, "EHLO x\r\n"), "250-mx.example.test\r\n250 STARTTLS\r\n");
  assert.equal(say(s, "AUTH PLAIN\r\n"), INVALID);
  assert.equal(say(s, "AUTH\r\n"), INVALID, "starttls-only check comes before the argument check");
  assert.equal(say(s, "MAIL FROM:<a>\r\n"), "530 5.7.0 Must issue a STARTTLS command first\r\n");
  assert.equal(say(s, "RCPT TO:<a>\r\n"), "503 5.5.1 Bad sequence of commands\r\n");
  assert.equal(s.errors, 0);
  assert.equal(say(s, "STARTTLS\r\nNOOP\r\n"), "220 2.0.0 Start TLS\r\n");
  assert.equal(s.startTlsCalls, 1);
  assert.equal(fe.authFacts().helo, "", "HELO forgotten at STARTTLS");
  s.finishStartTls();
  assert.equal(s.output(), "", "pipelined plaintext dropped, no new greeting");
  assert.equal(say(s, "EHLO x\r\n"), "250-mx.example.test\r\n250 AUTH PLAIN\r\n");
  assert.equal(say(s, "STARTTLS\r\n"), INVALID, "not twice");
  assert.equal(say(s, "MAIL FROM:<a>\r\n"), OK);
  assert.equal(s.deadlineArmed, 1, "STARTTLS does not restart the deadline");
});

test("STARTTLS without starttls configured is invalid; with `on`, MAIL is forgotten", async () => {
  const { s } = await open([auth("none")]);
  s.output();
  assert.equal(say(s, "STARTTLS\r\n"), INVALID);
  assert.equal(s.errors, 0);
  const on = await open([auth("none")], "on");
  on.s.output();
  say(on.s, "MAIL FROM:<a>\r\n");
  assert.equal(say(on.s, "STARTTLS extra\r\n"), "220 2.0.0 Start TLS\r\n");
  on.s.finishStartTls();
  assert.equal(on.fe.authFacts().from, undefined);
  assert.equal(say(on.s, "RCPT TO:<b>\r\n"), "503 5.5.1 Bad sequence of commands\r\n");
});

test("a too long command gets the invalid reply (the core closes)", async () => {
  const { s } = await open([set(smtpClientBufferDirective, 16)]);
  s.output();
  assert.equal(say(s, "NOOP 0123456789ab"), INVALID);
  assert.equal(s.closed, true);
});

test("auth_http refusal reply", async () => {
  const { fe } = await open();
  assert.equal(fe.authFailedReply("Invalid login or password", undefined), "535 5.7.0 Invalid login or password\r\n");
  assert.equal(fe.authFailedReply("Try later", "451 4.3.0"), "451 4.3.0 Try later\r\n");
});

/** Lets pending promise callbacks run (setImmediate is not mocked, so it still runs). */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

test("greeting delay: an early talker gets 503 and is closed, logged with CR/LF as _", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const s = new FakeSession(smtpServer([set(smtpGreetingDelayDirective, 200)]));
  const fe = new SmtpFrontEnd(s);
  s.frontEnd = fe;
  s.busy = true;
  let finished = false;
  const done = fe.start().then(() => {
    finished = true;
  });
  await settle();
  t.mock.timers.tick(50);
  await settle();
  assert.equal(s.output(), "", "nothing is sent during the delay");
  assert.equal(finished, false);
  s.receive("EHLO early\r\nNOOP\r\n");
  // No more mocked time passes: the rejection must come from the data, not the 200 ms timer.
  await done;
  assert.equal(s.output(), "503 5.5.0 Improper use of SMTP command pipelining\r\n");
  assert.equal(s.closed, true);
  assert.equal(s.deadlineArmed, 0);
  assert.ok(
    s.logged().some((l) => l.includes('[info] *1 client was rejected before greeting: "EHLO early__NOOP__" while in delay pipelining state')),
    s.logged().join("\n"),
  );
});

test("greeting delay: a patient client gets the greeting after the delay, then the deadline starts", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const s = new FakeSession(smtpServer([set(smtpGreetingDelayDirective, 150)]));
  const fe = new SmtpFrontEnd(s);
  s.frontEnd = fe;
  let finished = false;
  const done = fe.start().then(() => {
    finished = true;
  });
  await settle();
  t.mock.timers.tick(149);
  await settle();
  assert.equal(finished, false, "no greeting before the delay is over");
  assert.equal(s.output(), "");
  assert.equal(s.deadlineArmed, 0);
  t.mock.timers.tick(1);
  await done;
  assert.equal(s.output(), GREETING);
  assert.equal(s.deadlineArmed, 1);
});

test("rejection logs never carry SASL data pipelined with them", async () => {
  const { s } = await open();
  s.output();
  const secret = b64("\0user\0hunter2");
  assert.equal(say(s, `MAIL FROM:<a>\r\nAUTH PLAIN ${secret}\r\n`), "530 5.7.1 Authentication required\r\n");
  // nginx (at log level info) would log the whole buffer and then lose the pipelined command
  assert.equal(s.credentials.length, 1, "the pipelined AUTH still runs");
  const early = new FakeSession(smtpServer([set(smtpGreetingDelayDirective, 100)]));
  const fe = new SmtpFrontEnd(early);
  early.frontEnd = fe;
  early.busy = true; // the core takes no command while the front end starts
  early.receive(`EHLO x\r\nauth plain ${secret}\r\nNOOP\r\n`);
  await fe.start();
  assert.equal(early.output(), "503 5.5.0 Improper use of SMTP command pipelining\r\n");
  const lines = [...s.logged(), ...early.logged()];
  assert.ok(
    lines.some((l) => l.includes('client was rejected: "MAIL FROM:<a>__"')),
    lines.join("\n"),
  );
  assert.ok(
    lines.some((l) => l.includes('client was rejected before greeting: "EHLO x__auth plain" while in delay pipelining state')),
    lines.join("\n"),
  );
  assert.equal(
    lines.some((l) => l.includes(secret)),
    false,
  );
});

/**
 * Differential test: what the backend receives during login from the real
 * nginx 1.22.1 versus from our login code, for the same client inputs.
 * Known 1.22.1-vs-latest differences (docs/compat.md, "Mail protocols") are asserted explicitly.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { connect } from "node:net";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { once } from "node:events";
import { closedPort, fakeBackend, runProxy, serverConf, until, type FakeBackend, type Script } from "./fake.js";
import { proxyPassErrorMessage, proxySmtpAuth } from "../../../src/mail/proxy/module.js";
import { xtext } from "../../../src/mail/proxy/login-smtp.js";
import type { Directive } from "../../../src/conf/directive.js";

const d = <T>(x: Directive<T>, v: T): readonly [Directive<unknown>, unknown] => [x, v];

let dir = "";
let nginx: ChildProcess | undefined;
let auth: HttpServer | undefined;
let backendPort = 0;
const ports = { imap: 0, pop3: 0, smtpXclient: 0, smtpAuth: 0, imapNoPass: 0, smtpNone: 0 };

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "postern-nginx-diff-"));
  // One backend port, swapped per test: the auth server always names it.
  auth = createHttpServer((_req, res) => {
    res.setHeader("Auth-Status", "OK");
    res.setHeader("Auth-Server", "127.0.0.1");
    res.setHeader("Auth-Port", String(backendPort));
    res.end();
  });
  auth.listen(0, "127.0.0.1");
  await once(auth, "listening");
  const authPort = (auth.address() as { port: number }).port;
  for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = await closedPort();
  writeFileSync(
    join(dir, "nginx.conf"),
    `
load_module /usr/lib/nginx/modules/ngx_mail_module.so;
daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events {}
mail {
  auth_http 127.0.0.1:${authPort}/auth;
  server_name front.example;
  server { listen 127.0.0.1:${ports.imap}; protocol imap; proxy_pass_error_message on; }
  server { listen 127.0.0.1:${ports.imapNoPass}; protocol imap; }
  server { listen 127.0.0.1:${ports.pop3}; protocol pop3; }
  server { listen 127.0.0.1:${ports.smtpXclient}; protocol smtp; smtp_auth login plain; xclient on; }
  server { listen 127.0.0.1:${ports.smtpAuth}; protocol smtp; smtp_auth login plain; xclient on; proxy_smtp_auth on; }
  server { listen 127.0.0.1:${ports.smtpNone}; protocol smtp; smtp_auth none; }
}
`,
  );
  nginx = spawn("/usr/sbin/nginx", ["-p", `${dir}/`, "-c", "nginx.conf", "-e", `${dir}/error.log`], { stdio: "ignore" });
  // Wait until nginx accepts on the last listener.
  const deadline = Date.now() + 5000;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = connect(ports.smtpAuth, "127.0.0.1", () => {
        s.destroy();
        r(true);
      });
      s.on("error", () => r(false));
    });
    if (ok) break;
    if (Date.now() > deadline) throw new Error("nginx did not start");
    await new Promise((r) => setTimeout(r, 50));
  }
});

after(async () => {
  nginx?.kill("SIGTERM");
  if (nginx && nginx.exitCode === null) await once(nginx, "exit");
  await new Promise<void>((r) => (auth ? auth.close(() => r()) : r()));
  rmSync(dir, { recursive: true, force: true });
});

/** Talks to nginx as a client: sends each line after the previous reply; returns all it read. */
async function nginxClient(port: number, lines: string[], until_: string): Promise<string> {
  const s = connect(port, "127.0.0.1");
  let text = "";
  s.on("data", (c: Buffer) => {
    text += c.toString("latin1");
  });
  s.on("error", () => {});
  await once(s, "connect");
  await until(() => text.includes("\n"), 3000, "greeting");
  for (const line of lines) {
    const before = text.length;
    s.write(line);
    await until(() => text.length > before, 3000, `reply to ${line.trim()}`);
    // SMTP EHLO replies come in several lines; wait for the last one.
    await new Promise((r) => setTimeout(r, 30));
  }
  await until(() => text.includes(until_), 3000, until_);
  s.destroy();
  return text;
}

async function withBackend(greeting: string, script: Script): Promise<FakeBackend> {
  const be = await fakeBackend(greeting, script);
  backendPort = be.port;
  return be;
}

const IMAP_SCRIPT: Script = ["+ go\r\n", "+ go\r\n", "a1 OK logged\r\n"];

test("IMAP login bytes: identical to nginx 1.22.1", async () => {
  const be1 = await withBackend("* OK hi\r\n", IMAP_SCRIPT);
  const seen = await nginxClient(ports.imap, ['a1 LOGIN "us er" {3}\r\n', 'p"w\r\n'], "a1 OK logged");
  assert.ok(seen.endsWith("a1 OK logged\r\n"));
  await until(() => be1.received[0]?.toString().includes('p"w\r\n') === true);
  const theirs = be1.received[0]!.toString("latin1");
  await be1.close();
  const be2 = await fakeBackend("* OK hi\r\n", IMAP_SCRIPT);
  const run = await runProxy({ protocol: "imap", backendPort: be2.port, imapTag: "a1", login: "us er", password: 'p"w' });
  await until(() => run.text().includes("a1 OK logged"));
  assert.equal(be2.received[0]!.toString("latin1"), theirs);
  assert.equal(theirs, 'a1 LOGIN {5}\r\nus er {3}\r\np"w\r\n');
  await run.close();
  await be2.close();
});

test("IMAP tagged NO: same client bytes and log text as nginx 1.22.1 (pass_error_message on and off)", async () => {
  const script: Script = ["+ go\r\n", "+ go\r\n", "a1 NO [AUTHENTICATIONFAILED] nope\r\n"];
  const be1 = await withBackend("* OK hi\r\n", script);
  const seenOn = await nginxClient(ports.imap, ["a1 LOGIN u p\r\n"], "nope");
  await be1.close();
  const be2 = await withBackend("* OK hi\r\n", script);
  const seenOff = await nginxClient(ports.imapNoPass, ["a1 LOGIN u p\r\n"], "internal");
  await be2.close();
  const log = readFileSync(join(dir, "error.log"), "utf8");
  for (const pass of [true, false]) {
    const be = await fakeBackend("* OK hi\r\n", script);
    const run = await runProxy({ protocol: "imap", backendPort: be.port, login: "u", password: "p", conf: serverConf([d(proxyPassErrorMessage, pass)]) });
    await run.clientClosed;
    const greetingLess = (pass ? seenOn : seenOff).replace(/^\* OK[^\n]*\n/, "");
    assert.equal(run.text(), greetingLess);
    const ours = /upstream sent invalid response: "[^"]*"/.exec(run.logs.contents)![0];
    assert.ok(log.includes(ours), `nginx logged ${ours}`);
    await run.close();
    await be.close();
  }
});

test("POP3 login bytes: identical to nginx 1.22.1", async () => {
  const script: Script = ["+OK\r\n", "+OK in\r\n"];
  const be1 = await withBackend("+OK pop\r\n", script);
  await nginxClient(ports.pop3, ["USER bob\r\n", "PASS pw x\r\n"], "+OK in");
  const theirs = be1.received[0]!.toString("latin1");
  await be1.close();
  const be2 = await fakeBackend("+OK pop\r\n", script);
  const run = await runProxy({ protocol: "pop3", backendPort: be2.port, login: "bob", password: "pw x" });
  await until(() => run.text().includes("+OK in"));
  assert.equal(be2.received[0]!.toString("latin1"), theirs);
  await run.close();
  await be2.close();
});

const SMTP_SCRIPT: Script = ["250-mx\r\n250 XCLIENT NAME ADDR LOGIN\r\n", "220 mx\r\n", "250-mx\r\n250 OK\r\n"];
const LOGIN = "us er+=x";

test("SMTP xclient on: nginx 1.22.1 bytes, except latest's xtext LOGIN", async () => {
  const plain = Buffer.from(`\0${LOGIN}\0pw`).toString("base64");
  const be1 = await withBackend("220 mx\r\n", SMTP_SCRIPT);
  const seen = await nginxClient(ports.smtpXclient, ["EHLO client.example\r\n", `AUTH PLAIN ${plain}\r\n`], "235");
  assert.ok(seen.endsWith("235 2.0.0 OK\r\n"));
  await until(() => be1.received[0]?.toString().includes("EHLO client.example") === true);
  const theirs = be1.received[0]!.toString("latin1");
  await be1.close();
  const be2 = await fakeBackend("220 mx\r\n", SMTP_SCRIPT);
  const run = await runProxy({
    protocol: "smtp",
    backendPort: be2.port,
    login: LOGIN,
    password: "pw",
    serverName: "front.example",
    smtp: { helo: "client.example", esmtp: true, clientHost: "[UNAVAILABLE]" },
  });
  await until(() => run.text().includes("235"));
  assert.equal(run.text(), "235 2.0.0 OK\r\n");
  // 1.22.1 writes LOGIN raw; latest (1.29.2) xtext-encodes it.
  assert.ok(theirs.includes(`LOGIN=${LOGIN} NAME=`));
  const expected = theirs.replace(`LOGIN=${LOGIN}`, `LOGIN=${xtext(Buffer.from(LOGIN)).toString()}`);
  assert.equal(be2.received[0]!.toString("latin1"), expected);
  assert.equal(expected, "EHLO front.example\r\nXCLIENT ADDR=127.0.0.1 LOGIN=us+20er+2B+3Dx NAME=[UNAVAILABLE]\r\nEHLO client.example\r\n");
  await run.close();
  await be2.close();
});

test("SMTP xclient on + proxy_smtp_auth: identical to nginx 1.22.1 (no LOGIN=, AUTH PLAIN)", async () => {
  const script: Script = [...SMTP_SCRIPT, "235 2.7.0 ok\r\n"];
  const plain = Buffer.from(`\0${LOGIN}\0pw`).toString("base64");
  const be1 = await withBackend("220 mx\r\n", script);
  const seen = await nginxClient(ports.smtpAuth, ["HELO client.example\r\n", `AUTH PLAIN ${plain}\r\n`], "235");
  assert.ok(seen.endsWith("235 2.0.0 OK\r\n"));
  await until(() => be1.received[0]?.toString().includes("AUTH PLAIN") === true);
  const theirs = be1.received[0]!.toString("latin1");
  await be1.close();
  const be2 = await fakeBackend("220 mx\r\n", script);
  const run = await runProxy({
    protocol: "smtp",
    backendPort: be2.port,
    login: LOGIN,
    password: "pw",
    serverName: "front.example",
    smtp: { helo: "client.example", esmtp: false, clientHost: "[UNAVAILABLE]" },
    conf: serverConf([d(proxySmtpAuth, true)]),
  });
  await until(() => run.text().includes("235"));
  assert.equal(run.text(), "235 2.0.0 OK\r\n");
  assert.equal(be2.received[0]!.toString("latin1"), theirs);
  assert.equal(theirs, `EHLO front.example\r\nXCLIENT ADDR=127.0.0.1 NAME=[UNAVAILABLE]\r\nHELO client.example\r\nAUTH PLAIN ${plain}\r\n`);
  await run.close();
  await be2.close();
});

test("SMTP smtp_auth none: MAIL/RCPT replay and the relayed RCPT reply match nginx 1.22.1", async () => {
  const script: Script = [...SMTP_SCRIPT, "250 2.1.0 ok\r\n", "550 5.1.1 unknown\r\n"];
  const be1 = await withBackend("220 mx\r\n", script);
  const seen = await nginxClient(ports.smtpNone, ["EHLO c.example\r\n", "MAIL FROM:<a@b> SIZE=10\r\n", "RCPT TO:<x@y>\r\n"], "550");
  await until(() => be1.received[0]?.toString().includes("RCPT") === true);
  const theirs = be1.received[0]!.toString("latin1");
  await be1.close();
  const be2 = await fakeBackend("220 mx\r\n", script);
  const run = await runProxy({
    protocol: "smtp",
    backendPort: be2.port,
    authMethod: "none",
    login: "",
    password: "",
    serverName: "front.example",
    smtp: { helo: "c.example", esmtp: true, clientHost: "[UNAVAILABLE]", from: "MAIL FROM:<a@b> SIZE=10", to: "RCPT TO:<x@y>" },
  });
  await until(() => run.text().includes("550"));
  assert.equal(run.text(), "550 5.1.1 unknown\r\n");
  assert.ok(seen.endsWith("250 2.0.0 OK\r\n550 5.1.1 unknown\r\n"), seen);
  assert.equal(be2.received[0]!.toString("latin1"), theirs);
  assert.equal(theirs, "EHLO front.example\r\nXCLIENT ADDR=127.0.0.1 NAME=[UNAVAILABLE]\r\nEHLO c.example\r\nMAIL FROM:<a@b> SIZE=10\r\nRCPT TO:<x@y>\r\n");
  await run.close();
  await be2.close();
});

test("IMAP untagged line before the tagged OK: 1.22.1 fails, latest (and we) relay it", async () => {
  const script: Script = ["+ go\r\n", "+ go\r\n", "* CAPABILITY IMAP4rev1\r\na1 OK in\r\n"];
  const be1 = await withBackend("* OK hi\r\n", script);
  const seen = await nginxClient(ports.imapNoPass, ["a1 LOGIN u p\r\n"], "internal server error");
  assert.match(seen, /\* BAD internal server error\r\n$/);
  await be1.close();
  const log = readFileSync(join(dir, "error.log"), "utf8");
  assert.match(log, /upstream sent invalid response: "\* CAPABILITY IMAP4rev1\r\na1 OK in"/);
  const be2 = await fakeBackend("* OK hi\r\n", script);
  const run = await runProxy({ protocol: "imap", backendPort: be2.port, login: "u", password: "p" });
  await until(() => run.text().includes("a1 OK in"));
  assert.equal(run.text(), "* CAPABILITY IMAP4rev1\r\na1 OK in\r\n");
  await run.close();
  await be2.close();
});

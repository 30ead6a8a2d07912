/**
 * The STARTTLS steps in front of a backend login (login-starttls.ts) run by
 * the login driver against a scripted backend: the order of the lines, the
 * capabilities read again after the upgrade, and the strict refusals (no
 * STARTTLS offered, bytes after the STARTTLS reply). The upgrade hook here
 * returns the plain socket: the handshake itself is tested end to end
 * (test/mail/proxy-ssl/).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { once } from "node:events";
import { ConnectionLog, ErrorLog, MemorySink } from "../../../src/core/log.js";
import { runLogin } from "../../../src/mail/proxy/login-driver.js";
import { imapLoginSteps } from "../../../src/mail/proxy/login-imap.js";
import { pop3LoginSteps } from "../../../src/mail/proxy/login-pop3.js";
import { smtpLoginSteps } from "../../../src/mail/proxy/login-smtp.js";
import { withStarttls } from "../../../src/mail/proxy/login-starttls.js";
import { withPop3Xclient } from "../../../src/mail/proxy/login-identity.js";
import type { SessionInfo } from "../../../src/mail/types.js";
import type { LoginStep } from "../../../src/mail/proxy/login-step.js";
import { fakeBackend, type Script } from "./fake.js";

async function run(greeting: string, script: Script, steps: LoginStep[]): Promise<{ kind: string; sent: string; log: string; upgrades: number }> {
  const backend = await fakeBackend(greeting, script);
  const sink = new MemorySink(1 << 20, "debug");
  const log = new ConnectionLog(new ErrorLog([sink]), 1, { client: "127.0.0.1", server: "127.0.0.1:143" });
  const socket: Socket = connect({ host: "127.0.0.1", port: backend.port });
  await once(socket, "connect");
  let upgrades = 0;
  const result = await runLogin({
    socket,
    steps,
    bufferSize: 4096,
    passErrorMessage: false,
    log,
    startTls: (plain) => {
      upgrades++;
      return Promise.resolve(plain);
    },
  });
  socket.destroy();
  await new Promise((r) => setTimeout(r, 20));
  const sent = backend.received[0]!.toString("latin1");
  await backend.close();
  return { kind: result.kind, sent, log: sink.contents, upgrades };
}

const imapLogin = (): LoginStep[] => imapLoginSteps({ tag: "t1", login: Buffer.from("user"), password: Buffer.from("pw") });

test("IMAP: CAPABILITY, STARTTLS, CAPABILITY again after the upgrade, then LOGIN", async () => {
  const r = await run(
    "* OK ready\r\n",
    [
      "* CAPABILITY IMAP4rev1 STARTTLS\r\na OK done\r\n",
      "a OK Begin TLS\r\n",
      "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\na OK done\r\n",
      "+ go\r\n",
      "+ go\r\n",
      "t1 OK in\r\n",
    ],
    withStarttls("imap", "proxy.example", imapLogin()),
  );
  assert.equal(r.kind, "ok", r.log);
  assert.equal(r.upgrades, 1);
  assert.equal(r.sent, "a CAPABILITY\r\na STARTTLS\r\na CAPABILITY\r\nt1 LOGIN {4}\r\nuser {2}\r\npw\r\n");
});

test("IMAP: no STARTTLS among the capabilities ends the login before STARTTLS is sent", async () => {
  const r = await run("* OK ready\r\n", ["* CAPABILITY IMAP4rev1 LOGINDISABLED\r\na OK done\r\n"], withStarttls("imap", "p", imapLogin()));
  assert.equal(r.kind, "failed");
  assert.equal(r.sent, "a CAPABILITY\r\n");
  assert.match(r.log, /\[error\] .*upstream does not advertise STARTTLS while reading response from upstream/);
});

test("IMAP: a line after the STARTTLS reply in the same read is refused (response injection)", async () => {
  const r = await run(
    "* OK ready\r\n",
    ["* CAPABILITY IMAP4rev1 STARTTLS\r\na OK done\r\n", "a OK Begin TLS\r\n* OK injected\r\n"],
    withStarttls("imap", "p", imapLogin()),
  );
  assert.equal(r.kind, "failed");
  assert.equal(r.upgrades, 0);
  assert.match(r.log, /\[error\] .*upstream sent data after STARTTLS response/);
});

test("IMAP: a negative STARTTLS reply is an invalid response", async () => {
  const r = await run("* OK ready\r\n", ["* CAPABILITY IMAP4rev1 STARTTLS\r\na OK done\r\n", "a NO not now\r\n"], withStarttls("imap", "p", imapLogin()));
  assert.equal(r.kind, "failed");
  assert.match(r.log, /upstream sent invalid response: "a NO not now"/);
});

test("POP3: CAPA with STLS, STLS, CAPA again, then USER and PASS", async () => {
  const r = await run(
    "+OK ready\r\n",
    ["+OK\r\nUSER\r\nSTLS\r\n.\r\n", "+OK go\r\n", "+OK\r\nUSER\r\n.\r\n", "+OK\r\n", "+OK in\r\n"],
    withStarttls("pop3", "p", pop3LoginSteps({ login: Buffer.from("user"), password: Buffer.from("pw") })),
  );
  assert.equal(r.kind, "ok", r.log);
  assert.equal(r.sent, "CAPA\r\nSTLS\r\nCAPA\r\nUSER user\r\nPASS pw\r\n");
});

// pop3_xclient with proxy_ssl starttls: XCLIENT is offered in the greeting, read before STLS;
// the decision taken there is applied after the capabilities are read over TLS
const xclientSession = { clientAddr: "192.0.2.9", clientPort: 4321, id: 7 } as unknown as SessionInfo;
const xclientLogin = (): LoginStep[] =>
  withStarttls("pop3", "p", withPop3Xclient(pop3LoginSteps({ login: Buffer.from("user"), password: Buffer.from("pw") }), xclientSession));

test("POP3 with XCLIENT offered in the greeting: STLS first, then XCLIENT, USER and PASS over TLS", async () => {
  const r = await run(
    "+OK [XCLIENT] ready\r\n",
    ["+OK\r\nUSER\r\nSTLS\r\n.\r\n", "+OK go\r\n", "+OK\r\nUSER\r\n.\r\n", "+OK\r\n", "+OK\r\n", "+OK in\r\n"],
    xclientLogin(),
  );
  assert.equal(r.kind, "ok", r.log);
  assert.match(r.sent, /^CAPA\r\nSTLS\r\nCAPA\r\nXCLIENT ADDR=192\.0\.2\.9 PORT=4321 SESSION=\S+\r\nUSER user\r\nPASS pw\r\n$/);
});

test("POP3 without XCLIENT in the greeting: STLS, then USER and PASS without XCLIENT, and the warn line", async () => {
  const r = await run("+OK ready\r\n", ["+OK\r\nUSER\r\nSTLS\r\n.\r\n", "+OK go\r\n", "+OK\r\nUSER\r\n.\r\n", "+OK\r\n", "+OK in\r\n"], xclientLogin());
  assert.equal(r.kind, "ok", r.log);
  assert.equal(r.sent, "CAPA\r\nSTLS\r\nCAPA\r\nUSER user\r\nPASS pw\r\n");
  assert.match(r.log, /\[warn\] .*upstream does not offer XCLIENT, client address not passed/);
});

test("POP3: STLS missing from CAPA", async () => {
  const r = await run(
    "+OK ready\r\n",
    ["+OK\r\nUSER\r\n.\r\n"],
    withStarttls("pop3", "p", pop3LoginSteps({ login: Buffer.from("u"), password: Buffer.from("p") })),
  );
  assert.equal(r.kind, "failed");
  assert.match(r.log, /upstream does not advertise STLS/);
});

test("SMTP: EHLO with STARTTLS, STARTTLS, then the login's own EHLO and XCLIENT over TLS", async () => {
  const steps = smtpLoginSteps({
    serverName: "proxy.example",
    xclient: true,
    smtpAuth: false,
    helo: "",
    esmtp: true,
    authNone: false,
    from: "",
    to: "",
    clientAddr: "192.0.2.1",
    clientIpv6: false,
    clientHost: "[UNAVAILABLE]",
    login: Buffer.from("user"),
    password: Buffer.from("pw"),
  });
  const r = await run(
    "220 mx ready\r\n",
    ["250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n", "220 go ahead\r\n", "250-mx\r\n250 XCLIENT ADDR NAME LOGIN\r\n", "220 mx ready\r\n"],
    withStarttls("smtp", "proxy.example", steps),
  );
  assert.equal(r.kind, "ok", r.log);
  assert.equal(r.sent, "EHLO proxy.example\r\nSTARTTLS\r\nEHLO proxy.example\r\nXCLIENT ADDR=192.0.2.1 LOGIN=user NAME=[UNAVAILABLE]\r\n");
});

/**
 * `error_log ... debug` on a real Postern: each session event has its debug
 * line, in nginx's format (`[debug] PID#PID: *N text`) with the connection
 * number, and no credential reaches the log (the client's password, the
 * base64 SASL responses, the auth_http key, the Auth-Pass the auth server
 * sends). At `info` no debug line is written.
 * Rule: docs/behaviour/cli.md#cli-10-debug-lines.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { certs } from "../support/certs.js";
import { MailClient } from "../support/client.js";
import { startFakeAuth, type FakeAuth } from "../support/fake-auth.js";
import { startFakeImap, startFakePop3, startFakeSmtp, type FakeBackend } from "../support/fake-backend.js";
import type { MailProxyProcess } from "../support/mail-proxy.js";
import { freePorts } from "../support/ports.js";
import { startPostern } from "../support/postern.js";

const PASSWORD = "S3cr3t-pw-7f2e";
const AUTH_KEY = "k3y-0f-auth-5erv1ce";
const BACKEND_PASS = "backend-pw-a81c";
const PLAIN_RESPONSE = Buffer.from(`\0alice\0${PASSWORD}`).toString("base64");
const LOGIN_PASSWORD_RESPONSE = Buffer.from(PASSWORD).toString("base64");
const SECRETS = [PASSWORD, AUTH_KEY, BACKEND_PASS, PLAIN_RESPONSE, LOGIN_PASSWORD_RESPONSE];

interface Rig {
  postern: MailProxyProcess;
  ports: { imap: number; imaps: number; pop3: number; smtp: number; short: number };
  /** The mail block's own log (every session line goes there). */
  mailLog(): string;
  close(): Promise<void>;
}

async function startRig(level: "debug" | "info"): Promise<Rig> {
  const pki = certs();
  const backends: FakeBackend[] = [await startFakeImap(), await startFakePop3(), await startFakeSmtp()];
  const [imapBackend, pop3Backend, smtpBackend] = backends as [FakeBackend, FakeBackend, FakeBackend];
  const auth: FakeAuth = await startFakeAuth((req) => {
    // one user is refused with a wait: the session's Auth-Wait timer
    if (req.header("Auth-User") === "waiter")
      return {
        headers: [
          ["Auth-Status", "Try later"],
          ["Auth-Wait", "1"],
        ],
      };
    const backend = { imap: imapBackend, pop3: pop3Backend, smtp: smtpBackend }[req.header("Auth-Protocol") as "imap" | "pop3" | "smtp"];
    return {
      headers: [
        ["Auth-Status", "OK"],
        ["Auth-Server", "127.0.0.1"],
        ["Auth-Port", String(backend.port)],
        ["Auth-Pass", BACKEND_PASS],
      ],
    };
  });
  const [imap, imaps, pop3, smtp, short] = (await freePorts(5)) as [number, number, number, number, number];
  const postern = await startPostern(`
    error_log mail.log ${level};
    auth_http ${auth.url};
    auth_http_header X-Auth-Key ${AUTH_KEY};
    ssl_certificate ${pki.serverRsa.cert};
    ssl_certificate_key ${pki.serverRsa.key};
    timeout 10s;
    proxy_timeout 20s;
    imap_auth plain login;
    smtp_auth plain login;
    server { listen 127.0.0.1:${imap}; protocol imap; }
    server { listen 127.0.0.1:${imaps} ssl; protocol imap; ssl_verify_client optional; ssl_client_certificate ${pki.ca.cert}; }
    server { listen 127.0.0.1:${pop3}; protocol pop3; }
    server { listen 127.0.0.1:${smtp}; protocol smtp; }
    server { listen 127.0.0.1:${short}; protocol imap; timeout 300ms; }
  `);
  return {
    postern,
    ports: { imap, imaps, pop3, smtp, short },
    mailLog: () => readFileSync(`${postern.prefix}mail.log`, "latin1"),
    async close() {
      await postern.stop();
      await auth.close();
      for (const b of backends) await b.close();
    },
  };
}

/** The connection number Postern gave the client on local port `port` (from the info line). */
function connectionOf(log: string, port: number | undefined): string {
  const m = new RegExp(`\\*(\\d+) client 127\\.0\\.0\\.1:${port} connected to`).exec(log);
  assert.ok(m, `no "connected" line for client port ${port}:\n${log}`);
  return m[1]!;
}

/** The texts of connection `n`'s debug lines, in nginx's `[debug] PID#PID: *N text` form. */
function debugLines(log: string, n: string): string[] {
  const re = new RegExp(`^\\d{4}/\\d\\d/\\d\\d \\d\\d:\\d\\d:\\d\\d \\[debug\\] (\\d+)#\\1: \\*${n} (.*)$`, "gm");
  return [...log.matchAll(re)].map((m) => m[2]!);
}

function assertHas(lines: string[], expected: Array<string | RegExp>, what: string): void {
  for (const e of expected) {
    const found = lines.some((l) => (typeof e === "string" ? l === e : e.test(l)));
    assert.ok(found, `${what}: no debug line ${String(e)} in\n${lines.join("\n")}`);
  }
}

/** Waits until the log holds `count` matches of `re` (a relay's end is logged after the client saw the close). */
async function logHas(rig: Rig, re: RegExp, count = 1): Promise<void> {
  const matches = (): number => rig.mailLog().match(new RegExp(re.source, "g"))?.length ?? 0;
  for (let i = 0; i < 100 && matches() < count; i++) await new Promise((r) => setTimeout(r, 50));
}

/** The sessions every run plays; returns each client's local port. */
async function playSessions(rig: Rig): Promise<Record<string, number | undefined>> {
  const { ports } = rig;
  // read at once: a closed socket no longer has its local port
  const clientPorts: Record<string, number | undefined> = {};
  // IMAP LOGIN with a password, then LOGOUT through the relay
  const login = await MailClient.connect({ port: ports.imap });
  clientPorts.login = login.localPort;
  await login.readLine();
  await login.send(`a1 LOGIN alice ${PASSWORD}\r\n`);
  await login.read(/^a1 OK/m);
  await login.send("a2 LOGOUT\r\n");
  await login.expectClosed();

  // IMAPS with a client certificate, AUTHENTICATE PLAIN with the response after the challenge
  const pki = certs();
  const tls = await MailClient.connect({
    port: ports.imaps,
    tls: { cert: pki.clientValid.certPem, key: pki.clientValid.keyPem, servername: "mail.example.test", maxVersion: "TLSv1.2" },
  });
  clientPorts.tls = tls.localPort;
  await tls.readLine();
  await tls.send("b1 AUTHENTICATE PLAIN\r\n");
  await tls.read(/^\+/m);
  await tls.send(`${PLAIN_RESPONSE}\r\n`);
  await tls.read(/^b1 OK/m);
  tls.close();
  // the same TLS session again, under the same server name (OpenSSL 3.5, in Node 24, resumes
  // no session across names): resumed (its verdict is the session's, as in OpenSSL)
  const resumed = await MailClient.connect({ port: ports.imaps, tls: { session: tls.session, servername: "mail.example.test", maxVersion: "TLSv1.2" } });
  clientPorts.resumed = resumed.localPort;
  await resumed.readLine();
  await resumed.send("c1 LOGOUT\r\n");
  await resumed.expectClosed();

  // POP3 USER / PASS
  const pop3 = await MailClient.connect({ port: ports.pop3 });
  clientPorts.pop3 = pop3.localPort;
  await pop3.readLine();
  await pop3.send("USER alice\r\n");
  await pop3.readLine();
  await pop3.send(`PASS ${PASSWORD}\r\n`);
  await pop3.read(/^\+OK/m);
  await pop3.send("QUIT\r\n");
  await pop3.expectClosed();

  // SMTP AUTH LOGIN (user name and password each as a SASL response)
  const smtp = await MailClient.connect({ port: ports.smtp });
  clientPorts.smtp = smtp.localPort;
  await smtp.read(/^220 /m);
  await smtp.send("EHLO client.example\r\n");
  await smtp.read(/^250 /m);
  await smtp.send("AUTH LOGIN\r\n");
  await smtp.read(/^334 /m);
  await smtp.send(`${Buffer.from("alice").toString("base64")}\r\n`);
  await smtp.read(/^334 /m);
  await smtp.send(`${LOGIN_PASSWORD_RESPONSE}\r\n`);
  await smtp.read(/^235 /m);
  await smtp.send("QUIT\r\n");
  await smtp.expectClosed();

  // POP3 refused with Auth-Wait: 1, answered after the wait, then QUIT
  const waiter = await MailClient.connect({ port: ports.pop3 });
  clientPorts.waiter = waiter.localPort;
  await waiter.readLine();
  await waiter.send("USER waiter\r\n");
  await waiter.readLine();
  await waiter.send(`PASS ${PASSWORD}\r\n`);
  await waiter.read(/^-ERR Try later/m, 5000);
  await waiter.send("QUIT\r\n");
  await waiter.expectClosed();

  // a client that says nothing until `timeout` (300ms) passes
  const idle = await MailClient.connect({ port: ports.short });
  clientPorts.idle = idle.localPort;
  await idle.readLine();
  await idle.expectClosed(3000);

  return clientPorts;
}

/** The debug run's log, for the info run to compare with. */
let debugRunLog = "";

describe("error_log debug: the session events", () => {
  let rig: Rig;
  let clients: Record<string, number | undefined>;
  let log: string;
  before(async () => {
    rig = await startRig("debug");
    clients = await playSessions(rig);
    await logHas(rig, /close mail connection: timeout expired/);
    // four relays: IMAP LOGIN, IMAPS AUTHENTICATE, POP3, SMTP
    await logHas(rig, /close mail proxy connection/, 4);
    log = rig.mailLog();
    debugRunLog = log;
  });
  after(async () => {
    await rig?.close();
  });

  test("accept, commands by name, stages, auth_http, backend login, relay and timers carry the connection number", () => {
    const n = connectionOf(log, clients.login);
    const lines = debugLines(log, n);
    assertHas(
      lines,
      [
        `accept: 127.0.0.1:${clients.login} on 127.0.0.1:${rig.ports.imap}`,
        "event timer add: timeout: 10000",
        "mail stage: greeting -> auth",
        "imap auth command: LOGIN",
        "event timer del: timeout",
        "mail stage: auth -> authHttp",
        /^mail auth http request to 127\.0\.0\.1:\d+: "GET \/auth HTTP\/1\.0"$/,
        'mail auth http request header: "Auth-User: alice"',
        'mail auth http request header: "Auth-Pass: (masked)"',
        'mail auth http request header: "X-Auth-Key: (masked)"',
        /^event timer add: auth_http_timeout: \d+$/,
        'mail auth http status: "HTTP/1.0 200 OK"',
        'mail auth http header: "Auth-Status: OK"',
        'mail auth http header: "Auth-Pass: (masked)"',
        "mail auth http header done",
        "event timer del: auth_http_timeout",
        "mail stage: authHttp -> proxy",
        /^connect to 127\.0\.0\.1:\d+$/,
        "mail proxy start state: sending LOGIN command to upstream",
        "mail proxy user state: sending password to upstream",
        "mail proxy passwd state: logged in",
        "mail proxy relay start",
        "event timer add: proxy_timeout: 20000",
        /^close mail proxy connection: (upstream|client) closed connection, client sent 11 bytes, upstream sent \d+ bytes$/,
      ],
      "IMAP LOGIN",
    );
    // the arguments of LOGIN never appear, not even the user name
    assert.ok(!lines.some((l) => l.includes("LOGIN alice")), lines.join("\n"));
  });

  test("the TLS handshake: protocol, cipher, resumption, SNI and the client certificate verdict", () => {
    const first = debugLines(log, connectionOf(log, clients.tls));
    assertHas(
      first,
      [
        /^SSL: TLSv1\.2, cipher: "[A-Z0-9-]+"$/,
        "SSL new session",
        'SSL server name: "mail.example.test"',
        "SSL client certificate: SUCCESS",
        "imap auth command: AUTHENTICATE",
        "imap auth sasl response for step plain",
      ],
      "IMAPS AUTHENTICATE PLAIN",
    );
    const again = debugLines(log, connectionOf(log, clients.resumed));
    assertHas(
      again,
      [
        "SSL reused session",
        // what a resumed TLS 1.2 session reports of the name is OpenSSL's: 3.0 (Node 20) none, 3.5 (Node 24) the name sent
        /^SSL server name: (null|"mail\.example\.test")$/,
        "SSL client certificate: SUCCESS",
        "imap auth command: LOGOUT",
        "close mail connection: client quit",
      ],
      "resumed IMAPS",
    );
  });

  test("POP3 USER/PASS and SMTP AUTH LOGIN: names and steps only", () => {
    const pop3 = debugLines(log, connectionOf(log, clients.pop3));
    assertHas(pop3, ["pop3 auth command: USER", /^pop3 state: \w+ -> \w+$/, "pop3 auth command: PASS", "mail proxy passwd state: logged in"], "POP3");
    const smtp = debugLines(log, connectionOf(log, clients.smtp));
    assertHas(
      smtp,
      [
        "smtp auth command: EHLO",
        "smtp auth command: AUTH",
        "smtp auth sasl response for step loginUsername",
        "smtp auth sasl response for step loginPassword",
        /^mail proxy \w+ state: /,
      ],
      "SMTP",
    );
  });

  test("a timer that fires and the close reason", () => {
    const idle = debugLines(log, connectionOf(log, clients.idle));
    assertHas(
      idle,
      ["event timer add: timeout: 300", "event timer expired: timeout", "close mail connection: timeout expired", "mail stage: auth -> closed"],
      "timeout",
    );
    const waiter = debugLines(log, connectionOf(log, clients.waiter));
    assertHas(
      waiter,
      ["mail stage: authHttp -> authWait", "event timer add: Auth-Wait: 1000", "event timer expired: Auth-Wait", "mail stage: authWait -> auth"],
      "Auth-Wait",
    );
  });

  test("no secret reaches any log: password, SASL responses, auth_http key, Auth-Pass", () => {
    // the lines next to each secret are there, masked or by name
    for (const near of [
      'request header: "Auth-Pass: (masked)"',
      'request header: "X-Auth-Key: (masked)"',
      'mail auth http header: "Auth-Pass: (masked)"',
      "pop3 auth command: PASS",
      "imap auth sasl response for step plain",
      "smtp auth sasl response for step loginPassword",
      "mail proxy user state: sending password to upstream",
    ]) {
      assert.ok(log.includes(near), `no ${near}`);
    }
    const main = readFileSync(`${rig.postern.prefix}error.log`, "latin1");
    for (const secret of SECRETS) {
      assert.ok(!log.includes(secret), `mail.log holds ${secret}`);
      assert.ok(!main.includes(secret), `error.log holds ${secret}`);
    }
  });
});

describe("error_log info: no debug line", () => {
  test("the same sessions write their info lines and no debug line", async () => {
    const rig = await startRig("info");
    try {
      const clients = await playSessions(rig);
      await logHas(rig, /client timed out/);
      const log = rig.mailLog();
      connectionOf(log, clients.login);
      assert.match(log, /\[info\] \d+#\d+: \*\d+ client logged in/);
      // the same sessions wrote debug lines under `debug` (the suite above), none here
      assert.ok((debugRunLog.match(/\[debug\]/g)?.length ?? 0) > 50, "the debug run wrote no debug lines");
      assert.doesNotMatch(log, /\[debug\]/);
    } finally {
      await rig.close();
    }
  });
});

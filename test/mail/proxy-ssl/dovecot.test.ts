/**
 * TLS to a real Dovecot that requires it (`ssl = required`: a plaintext
 * login fails), with its own certificate made at test time: implicit TLS
 * (imaps, pop3s) and STARTTLS/STLS (imap, pop3), driven by real clients
 * (curl, openssl s_client, Python's imaplib and poplib, imapflow), and the
 * per-user choice from auth_http (Auth-Proxy-SSL) on one server. SMTP to a
 * real smtp-server that offers STARTTLS.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { ImapFlow } from "imapflow";
import { certs } from "../../support/certs.js";
import { MailClient } from "../../support/client.js";
import { startDovecot, type Dovecot } from "../../support/dovecot.js";
import { startFakeAuth, type FakeAuth } from "../../support/fake-auth.js";
import type { MailProxyProcess } from "../../support/mail-proxy.js";
import { freePorts } from "../../support/ports.js";
import { startPostern } from "../../support/postern.js";
import { startSmtpBackend, type SmtpBackend } from "../../support/smtp-backend.js";
import { curl, python, sClient } from "../tls-e2e/e2e.js";

const USER = "test@example.com";
const PASS = "secret";

describe("backend TLS to a real Dovecot (ssl = required) and smtp-server with STARTTLS", () => {
  let dovecot: Dovecot;
  let smtp: SmtpBackend;
  let auth: FakeAuth;
  let postern: MailProxyProcess;
  const p: Record<string, number> = {};
  let message = "";

  before(async () => {
    const pki = certs();
    const [dImap, dPop3, dImaps, dPop3s, ...mine] = await freePorts(11);
    dovecot = await startDovecot({
      imapPort: dImap!,
      pop3Port: dPop3!,
      tls: { cert: pki.serverRsa.cert, key: pki.serverRsa.key, imapsPort: dImaps!, pop3sPort: dPop3s! },
      address: "127.0.0.2",
    });
    message = dovecot.deliverSized(USER, 2000);
    smtp = await startSmtpBackend({ tls: { cert: pki.serverRsa.certPem, key: pki.serverRsa.keyPem } });
    const names = ["imapOn", "imapStarttls", "pop3On", "pop3Starttls", "imapPlain", "imapPerUser", "smtpStarttls"];
    names.forEach((n, i) => (p[n] = mine[i]!));
    // Each server names its route; a login on the per-user server picks the mode.
    const backendOf: Record<string, number> = {
      imapOn: dImaps!,
      imapStarttls: dImap!,
      pop3On: dPop3s!,
      pop3Starttls: dPop3!,
      imapPlain: dImap!,
      smtpStarttls: smtp.port,
    };
    auth = await startFakeAuth((req) => {
      const route = req.header("X-Route") ?? "";
      const login = req.header("Auth-User") ?? "";
      const headers: Array<[string, string]> = [
        ["Auth-Status", "OK"],
        ["Auth-Server", route === "smtpStarttls" ? "127.0.0.1" : "127.0.0.2"],
        ["Auth-User", USER],
        ["Auth-Pass", PASS],
      ];
      if (route === "imapPerUser") {
        const mode = login.split("@")[0]!;
        headers.push(["Auth-Port", String(mode === "starttls" ? dImap : mode === "on" ? dImaps : dImap)], ["Auth-Proxy-SSL", mode]);
        headers.push(["Auth-Proxy-SSL-Name", mode === "on" ? "localhost" : "127.0.0.1"]);
      } else {
        headers.push(["Auth-Port", String(backendOf[route])]);
      }
      return { headers };
    });
    const server = (name: string, proto: string, extra: string): string =>
      `server { listen 127.0.0.1:${p[name]}${name === "imapStarttls" ? " ssl" : ""}; protocol ${proto}; auth_http_header X-Route ${name}; ${extra} }`;
    postern = await startPostern(`
      auth_http 127.0.0.1:${auth.port}/auth;
      proxy_ssl_trusted_certificate ${pki.ca.cert};
      # Dovecot listens on 127.0.0.2; its certificate names localhost and 127.0.0.1
      proxy_ssl_name localhost;
      ssl_certificate ${pki.serverRsa.cert};
      ssl_certificate_key ${pki.serverRsa.key};
      smtp_auth login plain;
      ${server("imapOn", "imap", "proxy_ssl on;")}
      ${server("imapStarttls", "imap", "proxy_ssl starttls;")}
      ${server("pop3On", "pop3", "proxy_ssl on;")}
      ${server("pop3Starttls", "pop3", "proxy_ssl starttls;")}
      ${server("imapPlain", "imap", "")}
      ${server("imapPerUser", "imap", "proxy_ssl off;")}
      ${server("smtpStarttls", "smtp", "proxy_ssl starttls;")}
    `);
  });
  after(async () => {
    await postern?.stop();
    await auth?.close();
    await smtp?.close();
    await dovecot?.stop();
  });

  it("curl over IMAP: implicit TLS to Dovecot's imaps; the message arrives whole", async () => {
    const r = await curl([`imap://127.0.0.1:${p.imapOn}/INBOX;UID=1`, "-u", `${USER}:${PASS}`]);
    assert.equal(r.code, 0, r.dialogue.join("\n"));
    assert.equal(r.stdout, message);
  });

  it("openssl s_client (STARTTLS to Postern) with STARTTLS from Postern to Dovecot", async () => {
    const r = await sClient(
      p.imapStarttls!,
      [],
      [/^\* OK .*\r\n/, `a1 LOGIN ${USER} ${PASS}`, /a1 OK .*\r\n/, "a2 SELECT INBOX", /a2 OK .*\r\n/, "a3 LOGOUT", /a3 OK .*\r\n/],
    );
    assert.match(r.appData, /a1 OK Logged in\r\n/);
    assert.match(r.appData, /\* 1 EXISTS\r\n/);
  });

  it("Python imaplib over TLS to Postern, STARTTLS to Dovecot", async () => {
    const log = await python<Array<[string, unknown]>>({ protocol: "imap", port: p.imapStarttls, mode: "ssl", user: USER, password: PASS });
    const login = log.find(([n]) => n === "login");
    assert.deepEqual((login![1] as unknown[])[0], "OK", JSON.stringify(log));
  });

  it("curl over POP3: implicit TLS to Dovecot's pop3s", async () => {
    const r = await curl([`pop3://127.0.0.1:${p.pop3On}/1`, "-u", `${USER}:${PASS}`]);
    assert.equal(r.code, 0, r.dialogue.join("\n"));
    assert.equal(r.stdout, message);
  });

  it("Python poplib: STLS from Postern to Dovecot", async () => {
    const log = await python<Array<[string, unknown]>>({ protocol: "pop3", port: p.pop3Starttls, mode: "plain", user: USER, password: PASS });
    const stat = log.find(([n]) => n === "stat");
    assert.deepEqual(stat?.[1], [1, 2000], JSON.stringify(log));
  });

  it("imapflow: implicit TLS to Dovecot, mailbox and download", async () => {
    const client = new ImapFlow({ host: "127.0.0.1", port: p.imapOn!, secure: false, logger: false, disableAutoIdle: true, auth: { user: USER, pass: PASS } });
    await client.connect();
    try {
      const lock = await client.getMailboxLock("INBOX");
      try {
        const got = await client.fetchOne("1", { source: true });
        assert.equal(got && got.source?.toString("latin1"), message);
      } finally {
        lock.release();
      }
    } finally {
      await client.logout();
    }
  });

  it("without proxy_ssl the plaintext login is refused by Dovecot (ssl = required)", async () => {
    const c = await MailClient.connect({ port: p.imapPlain! });
    await c.readLine();
    await c.send(`a1 LOGIN ${USER} ${PASS}\r\n`);
    assert.equal(await c.readLine(), "* BAD internal server error\r\n");
    c.close();
    assert.match(postern.errorLog(), /\[error\] .*upstream sent invalid response: .*Plaintext authentication disallowed.*upstream: 127\.0\.0\.2:\d+/);
  });

  it("per user: Auth-Proxy-SSL on / starttls on a server with proxy_ssl off", async () => {
    for (const mode of ["on", "starttls"]) {
      const c = await MailClient.connect({ port: p.imapPerUser! });
      await c.readLine();
      await c.send(`a1 LOGIN ${mode}@example.com ${PASS}\r\n`);
      assert.match(await c.read(/^a1 .*\r\n/m), /^a1 OK /m, mode);
      await c.send("a2 LOGOUT\r\n");
      c.close();
    }
    // Dovecot's login line says TLS (a plaintext login would have been refused: ssl = required)
    const tlsLogins = dovecot.log().match(/imap-login: Info: Login: user=<test@example\.com>, method=PLAIN, rip=127\.0\.0\.1, lip=127\.0\.0\.2, .*TLS/g) ?? [];
    assert.ok(tlsLogins.length >= 2, dovecot.log());
  });

  it("SMTP: STARTTLS to smtp-server, XCLIENT and the message over TLS", async () => {
    const log = await python<Array<[string, unknown]>>({ protocol: "smtp", port: p.smtpStarttls, mode: "plain", user: USER, password: PASS });
    assert.deepEqual((log.find(([n]) => n === "login")![1] as unknown[])[0], 235, JSON.stringify(log));
    const c = await MailClient.connect({ port: p.smtpStarttls! });
    await c.readLine();
    await c.send("EHLO client.example\r\n");
    await c.read(/^250 .*\r\n/m);
    await c.send(`AUTH PLAIN ${Buffer.from(`\0${USER}\0${PASS}`).toString("base64")}\r\n`);
    assert.equal(await c.readLine(), "235 2.0.0 OK\r\n");
    await c.send("MAIL FROM:<a@example.com>\r\n");
    await c.readLine();
    await c.send("RCPT TO:<b@example.com>\r\n");
    await c.readLine();
    await c.send("DATA\r\n");
    await c.readLine();
    await c.send("Subject: over tls\r\n\r\nhello\r\n.\r\n");
    assert.match(await c.readLine(), /^250 /);
    c.close();
    assert.equal(smtp.messages.length, 1);
    assert.equal(smtp.messages[0]!.secure, true);
    assert.equal(smtp.messages[0]!.xclient.LOGIN, USER);
  });
});

/**
 * SNI with STARTTLS (docs/sni.md): the default server greets and offers
 * STARTTLS, the server named in the ClientHello presents its certificate
 * and takes the session over: its capabilities, its server_name in SMTP
 * replies, its auth_http. IMAP and SMTP, with openssl s_client and Python's smtplib.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { startPostern } from "../../support/postern.js";
import { startFakeAuth, refuse, type FakeAuth } from "../../support/fake-auth.js";
import type { MailProxyProcess } from "../../support/mail-proxy.js";
import { freePorts } from "../../support/ports.js";
import { namedCerts, sniSClient } from "./sni-helpers.js";

describe("SNI after STARTTLS", () => {
  let pki: ReturnType<typeof namedCerts>;
  let postern: MailProxyProcess;
  let authA: FakeAuth;
  let authB: FakeAuth;
  let imapPort = 0;
  let smtpPort = 0;

  before(async () => {
    pki = namedCerts(["a.example", "b.example"]);
    [imapPort, smtpPort] = (await freePorts(2)) as [number, number];
    authA = await startFakeAuth(refuse("Invalid login"));
    authB = await startFakeAuth(refuse("Invalid login"));
    const tls = (name: string): string => `ssl_certificate ${pki.certs[name]!.cert}; ssl_certificate_key ${pki.certs[name]!.key};`;
    postern = await startPostern(
      [
        "starttls on; smtp_auth login plain;",
        `server { listen 127.0.0.1:${imapPort}; protocol imap; server_name a.example; auth_http ${authA.url}; ${tls("a.example")} imap_capabilities IMAP4rev1 X-A; }`,
        `server { listen 127.0.0.1:${imapPort}; protocol imap; server_name b.example; auth_http ${authB.url}; ${tls("b.example")} imap_capabilities IMAP4rev1 X-B; }`,
        `server { listen 127.0.0.1:${smtpPort}; protocol smtp; server_name mx.a.example; auth_http ${authA.url}; ${tls("a.example")} }`,
        `server { listen 127.0.0.1:${smtpPort}; protocol smtp; server_name mx.b.example b.example; auth_http ${authB.url}; ${tls("b.example")} smtp_capabilities "SIZE 1000"; }`,
      ].join("\n"),
    );
  });
  after(async () => {
    await postern?.stop();
    await authA?.close();
    await authB?.close();
    pki?.remove();
  });

  test("IMAP: the named server's certificate, then its capabilities and its auth_http with Auth-SSL-Server-Name", async () => {
    const run = await sniSClient(imapPort, { servername: "b.example", starttls: "imap", lines: ["c CAPABILITY", "l LOGIN zoe pw"], waitMs: 800 });
    assert.equal(run.cn, "b.example");
    assert.match(run.stdout, /^\* CAPABILITY IMAP4rev1 X-B AUTH=PLAIN\r?$/m, "server b.example's capabilities after STARTTLS");
    assert.match(run.stdout, /^l NO Invalid login/m);
    const req = authB.parsed.find((r) => r.header("Auth-User") === "zoe");
    assert.ok(req, "server b.example's auth_http got the login");
    assert.equal(req.header("Auth-SSL-Server-Name"), "b.example");
    assert.equal(authA.parsed.filter((r) => r.header("Auth-User") === "zoe").length, 0);
  });

  test("IMAP: without SNI the default (first) server stays: its certificate, capabilities and auth_http", async () => {
    const run = await sniSClient(imapPort, { starttls: "imap", lines: ["c CAPABILITY", "l LOGIN yann pw"], waitMs: 800 });
    assert.equal(run.cn, "a.example");
    assert.match(run.stdout, /^\* CAPABILITY IMAP4rev1 X-A AUTH=PLAIN\r?$/m);
    const req = authA.parsed.find((r) => r.header("Auth-User") === "yann");
    assert.ok(req);
    assert.equal(req.header("Auth-SSL-Server-Name"), undefined);
  });

  test("SMTP: the default server greets; after STARTTLS the named server's name and capabilities answer EHLO", async () => {
    const run = await sniSClient(smtpPort, { servername: "b.example", starttls: "smtp", lines: ["EHLO client.test"], waitMs: 500 });
    assert.equal(run.cn, "b.example");
    assert.match(run.stdout, /^250-mx\.b\.example\r?$/m);
    assert.match(run.stdout, /^250-SIZE 1000\r?$/m);
  });

  test("Python's smtplib: the SMTP login reaches the named server's auth_http with Auth-SSL-Server-Name", async () => {
    // smtplib sends its `_host` as the server name in starttls(); connected by address, it is set to the name
    const script = [
      "import smtplib, ssl, sys",
      "s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='client.test')",
      "print('greeting', s.ehlo()[1].decode().splitlines()[0])",
      "s._host = 'mx.b.example'",
      "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE",
      "s.starttls(context=ctx)",
      "print('ehlo', s.ehlo()[1].decode().splitlines()[0])",
      // one mechanism (login() would go on to LOGIN after PLAIN's refusal)
      "s.user, s.password = 'xena', 'pw'",
      "try:\n  s.auth('PLAIN', s.auth_plain)\nexcept smtplib.SMTPAuthenticationError as e:\n  print('refused', e.smtp_code, e.smtp_error.decode())",
    ].join("\n");
    // asynchronous: the fake auth service answers from this process
    const py = await promisify(execFile)("python3", ["-c", script, String(smtpPort)], { timeout: 10000 });
    assert.equal(py.stderr, "");
    assert.deepEqual(py.stdout.trim().split("\n"), ["greeting mx.a.example", "ehlo mx.b.example", "refused 535 5.7.0 Invalid login"]);
    const req = authB.parsed.find((r) => r.header("Auth-User") === "xena");
    assert.ok(req, "server mx.b.example's auth_http got the login");
    assert.equal(req.header("Auth-SSL-Server-Name"), "mx.b.example");
    assert.equal(req.header("Auth-Protocol"), "smtp");
  });
});

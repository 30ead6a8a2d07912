/**
 * Backend TLS session reuse (proxy_ssl_session_reuse, default on: the second
 * login resumes the first one's session, for implicit TLS and STARTTLS) and
 * SNI (proxy_ssl_server_name with proxy_ssl_name; none by default), seen
 * from a Node TLS backend that counts resumed handshakes and the names sent.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { certs } from "../../support/certs.js";
import { MailClient } from "../../support/client.js";
import { startFakeAuth, type FakeAuth } from "../../support/fake-auth.js";
import type { MailProxyProcess } from "../../support/mail-proxy.js";
import { freePorts } from "../../support/ports.js";
import { startPostern } from "../../support/postern.js";
import { backendCerts } from "./backend-certs.js";
import { startTlsBackend, type TlsBackend } from "./tls-backend.js";

describe("backend TLS: session reuse and SNI", () => {
  const backends: Record<string, TlsBackend> = {};
  const ports: Record<string, number> = {};
  let auth: FakeAuth;
  let postern: MailProxyProcess;

  before(async () => {
    const pki = certs();
    const good = { cert: pki.serverRsa.certPem, key: pki.serverRsa.keyPem };
    const named = { cert: backendCerts().named.certPem, key: backendCerts().named.keyPem };
    backends.sni = await startTlsBackend({ protocol: "imap", mode: "implicit", ...named });
    backends.noreuse = await startTlsBackend({ protocol: "imap", mode: "implicit", ...good });
    backends.starttls = await startTlsBackend({ protocol: "pop3", mode: "starttls", ...good });
    auth = await startFakeAuth((req) => ({
      headers: [
        ["Auth-Status", "OK"],
        ["Auth-Server", "127.0.0.1"],
        ["Auth-Port", String(backends[req.header("X-Route")!]!.port)],
      ],
    }));
    const [a = 0, b = 0, c = 0] = await freePorts(3);
    Object.assign(ports, { sni: a, noreuse: b, starttls: c });
    postern = await startPostern(`
      auth_http 127.0.0.1:${auth.port}/auth;
      proxy_ssl_trusted_certificate ${pki.ca.cert};
      server { listen 127.0.0.1:${a}; protocol imap; auth_http_header X-Route sni;
               proxy_ssl on; proxy_ssl_name mail.backend.test; proxy_ssl_server_name on; }
      server { listen 127.0.0.1:${b}; protocol imap; auth_http_header X-Route noreuse; proxy_ssl on; proxy_ssl_session_reuse off; }
      server { listen 127.0.0.1:${c}; protocol pop3; auth_http_header X-Route starttls; proxy_ssl starttls; }
    `);
  });
  after(async () => {
    await postern?.stop();
    await auth?.close();
    for (const b of Object.values(backends)) await b.close();
  });

  async function imapLogin(port: number): Promise<string> {
    const c = await MailClient.connect({ port });
    await c.readLine();
    await c.send("a1 LOGIN user secret\r\n");
    const reply = await c.readLine();
    await c.send("a2 LOGOUT\r\n");
    await c.read(/^a2 .*\r\n/m);
    c.close();
    return reply;
  }

  async function pop3Login(port: number): Promise<string> {
    const c = await MailClient.connect({ port });
    await c.readLine();
    await c.send("USER user\r\n");
    await c.readLine();
    await c.send("PASS secret\r\n");
    const reply = await c.readLine();
    await c.send("QUIT\r\n");
    await c.readLine();
    c.close();
    return reply;
  }

  it("the second login resumes the first one's session, and the name goes as SNI", async () => {
    assert.equal(await imapLogin(ports.sni!), "a1 OK [CAPABILITY IMAP4rev1] Logged in over TLS\r\n");
    assert.equal(await imapLogin(ports.sni!), "a1 OK [CAPABILITY IMAP4rev1] Logged in over TLS\r\n");
    assert.deepEqual(backends.sni!.servernames, ["mail.backend.test", "mail.backend.test"]);
    assert.equal(backends.sni!.handshakes, 2);
    assert.equal(backends.sni!.resumed, 1);
  });

  it("STLS: the second login resumes too", async () => {
    assert.equal(await pop3Login(ports.starttls!), "+OK Logged in over TLS\r\n");
    assert.equal(await pop3Login(ports.starttls!), "+OK Logged in over TLS\r\n");
    assert.equal(backends.starttls!.resumed, 1);
  });

  it("proxy_ssl_session_reuse off: full handshakes only; no SNI without proxy_ssl_server_name", async () => {
    await imapLogin(ports.noreuse!);
    await imapLogin(ports.noreuse!);
    assert.equal(backends.noreuse!.handshakes, 2);
    assert.equal(backends.noreuse!.resumed, 0);
    assert.deepEqual(backends.noreuse!.servernames, [false, false]);
  });
});

/**
 * TLS to the backends against backends that misbehave: each failure gives
 * the client the protocol's internal-error reply, writes one error line
 * naming the upstream and OpenSSL's reason, and the next client is served.
 * One Postern; the fake auth service sends each login to its backend with
 * Auth-Proxy-SSL (the per-user choice), in a server that writes proxy_ssl off.
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

interface Route {
  backend: TlsBackend;
  mode: string;
  name?: string;
}

describe("backend TLS failures (hostile backends)", () => {
  const routes = new Map<string, Route>();
  const backends: TlsBackend[] = [];
  let auth: FakeAuth;
  let postern: MailProxyProcess;
  let imapPort: number;
  let pop3Port: number;

  before(async () => {
    const pki = certs();
    const bc = backendCerts();
    const good = { cert: pki.serverRsa.certPem, key: pki.serverRsa.keyPem };
    const add = async (login: string, opts: Parameters<typeof startTlsBackend>[0], mode: string, name?: string): Promise<void> => {
      const backend = await startTlsBackend(opts);
      backends.push(backend);
      routes.set(login, name === undefined ? { backend, mode } : { backend, mode, name });
    };
    await add("good", { protocol: "imap", mode: "implicit", ...good }, "on");
    await add("goodstarttls", { protocol: "imap", mode: "starttls", ...good }, "starttls");
    await add("injected", { protocol: "imap", mode: "starttls", ...good, inject: "* OK [CAPABILITY IMAP4rev1] injected\r\n" }, "starttls");
    await add("nostarttls", { protocol: "imap", mode: "starttls", ...good, dropStarttls: true }, "starttls");
    await add("othername", { protocol: "imap", mode: "implicit", cert: bc.otherName.certPem, key: bc.otherName.keyPem }, "on");
    await add("expired", { protocol: "imap", mode: "implicit", cert: bc.expired.certPem, key: bc.expired.keyPem }, "on");
    await add("untrusted", { protocol: "imap", mode: "implicit", cert: bc.selfSigned.certPem, key: bc.selfSigned.keyPem }, "on");
    await add("silent", { protocol: "imap", mode: "silent" }, "on");
    await add("tls12only", { protocol: "imap", mode: "implicit", ...good, maxVersion: "TLSv1.2" }, "on");
    await add("badheader", { protocol: "imap", mode: "implicit", ...good }, "yes");
    await add("popinjected", { protocol: "pop3", mode: "starttls", ...good, inject: "+OK injected\r\n" }, "starttls");
    await add("popnostls", { protocol: "pop3", mode: "starttls", ...good, dropStarttls: true }, "starttls");
    await add("popgood", { protocol: "pop3", mode: "starttls", ...good }, "starttls");

    auth = await startFakeAuth((req) => {
      const login = req.header("Auth-User") ?? "";
      const route = routes.get(login);
      if (!route) return { headers: [["Auth-Status", "Invalid login"]] };
      return {
        headers: [
          ["Auth-Status", "OK"],
          ["Auth-Server", "127.0.0.1"],
          ["Auth-Port", String(route.backend.port)],
          ["Auth-Proxy-SSL", route.mode],
        ],
      };
    });
    [imapPort = 0, pop3Port = 0] = await freePorts(2);
    postern = await startPostern(`
      auth_http 127.0.0.1:${auth.port}/auth;
      proxy_ssl off;
      proxy_ssl_trusted_certificate ${pki.ca.cert};
      proxy_ssl_protocols TLSv1.3;
      proxy_timeout 1s;
      server { listen 127.0.0.1:${imapPort}; protocol imap; }
      server { listen 127.0.0.1:${pop3Port}; protocol pop3; }
    `);
  });
  after(async () => {
    await postern?.stop();
    await auth?.close();
    for (const b of backends) await b.close();
  });

  /** Logs in over IMAP; returns the reply to LOGIN and the client's transcript. */
  async function imapLogin(login: string): Promise<string> {
    const c = await MailClient.connect({ port: imapPort });
    try {
      await c.readLine();
      await c.send(`a1 LOGIN ${login} secret\r\n`);
      return await c.readLine(5000);
    } finally {
      c.close();
    }
  }

  async function pop3Login(login: string): Promise<string> {
    const c = await MailClient.connect({ port: pop3Port });
    try {
      await c.readLine();
      await c.send(`USER ${login}\r\n`);
      await c.readLine();
      await c.send("PASS secret\r\n");
      return await c.readLine(5000);
    } finally {
      c.close();
    }
  }

  /** Waits for the error line naming `login` to reach the log and returns it. */
  async function errorLine(login: string): Promise<string> {
    const deadline = Date.now() + 3000;
    for (;;) {
      const line = postern
        .errorLog()
        .split("\n")
        .find((l) => l.includes("[error]") && l.includes(`login: "${login}"`));
      if (line) return line;
      if (Date.now() > deadline) assert.fail(`no error line for ${login} in:\n${postern.errorLog()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  const upstream = (login: string): string => `upstream: 127.0.0.1:${routes.get(login)!.backend.port}`;

  it("a backend with a good certificate: implicit TLS and STARTTLS log in over TLS", async () => {
    assert.equal(await imapLogin("good"), "a1 OK [CAPABILITY IMAP4rev1] Logged in over TLS\r\n");
    assert.equal(await imapLogin("goodstarttls"), "a1 OK [CAPABILITY IMAP4rev1] Logged in over TLS\r\n");
    assert.equal(await pop3Login("popgood"), "+OK Logged in over TLS\r\n");
    assert.deepEqual(routes.get("goodstarttls")!.backend.logins, [{ login: "goodstarttls", secure: true }]);
  });

  const failures: Array<[string, RegExp]> = [
    ["injected", /upstream sent data after STARTTLS response while reading response from upstream/],
    ["nostarttls", /upstream does not advertise STARTTLS while reading response from upstream/],
    ["othername", /upstream SSL certificate does not match "127\.0\.0\.1" while SSL handshaking to upstream/],
    ["expired", /upstream SSL certificate verify error: \(10:certificate has expired\) while SSL handshaking to upstream/],
    ["untrusted", /upstream SSL certificate verify error: \(18:self-signed certificate\) while SSL handshaking to upstream/],
    ["silent", /upstream timed out \(110: Connection timed out\) while SSL handshaking to upstream/],
    ["tls12only", /SSL_do_handshake\(\) failed \(SSL: error:[0-9A-F]{8}:SSL routines::tlsv1 alert protocol version\) while SSL handshaking to upstream/],
    ["badheader", /auth http server 127\.0\.0\.1:\d+ sent invalid Auth-Proxy-SSL:"yes"/],
  ];
  for (const [login, logged] of failures) {
    it(`IMAP ${login}: internal error to the client, the reason in the log, the next client served`, async () => {
      assert.equal(await imapLogin(login), "* BAD internal server error\r\n");
      const line = await errorLine(login);
      assert.match(line, logged);
      if (login !== "badheader") assert.ok(line.endsWith(upstream(login)), line);
      assert.deepEqual(routes.get(login)!.backend.logins, [], "the backend never saw the login");
      assert.equal(await imapLogin("good"), "a1 OK [CAPABILITY IMAP4rev1] Logged in over TLS\r\n");
    });
  }

  it("POP3: bytes after the STLS reply and STLS missing from CAPA fail the login", async () => {
    assert.equal(await pop3Login("popinjected"), "-ERR internal server error\r\n");
    assert.match(await errorLine("popinjected"), /upstream sent data after STARTTLS response while reading response from upstream/);
    assert.equal(await pop3Login("popnostls"), "-ERR internal server error\r\n");
    assert.match(await errorLine("popnostls"), /upstream does not advertise STLS while reading response from upstream/);
    assert.deepEqual(routes.get("popinjected")!.backend.logins, []);
  });
});

/**
 * A session or ticket issued under one server's TLS policy never resumes
 * under another's on the same address (the CVE-2025-23419 class;
 * docs/sni.md#sessions-never-cross-servers). The two servers share
 * everything that could carry a session across: one ticket key file and
 * one shared session cache. The first server asks no client certificate,
 * the second requires one: a session from the first, offered with the
 * second's name, must get a full handshake that asks for the certificate.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startPostern } from "../../support/postern.js";
import { certs } from "../../support/certs.js";
import type { MailProxyProcess } from "../../support/mail-proxy.js";
import { freePorts } from "../../support/ports.js";
import { namedCerts, sniSClient } from "./sni-helpers.js";

describe("SNI and session resumption across server policies", () => {
  let pki: ReturnType<typeof namedCerts>;
  let postern: MailProxyProcess;
  let ticketPort = 0;
  let cachePort = 0;
  let n = 0;
  const sessionFile = (): string => join(pki.dir, `session-${++n}.pem`);

  before(async () => {
    pki = namedCerts(["open.example", "secure.example"]);
    [ticketPort, cachePort] = (await freePorts(2)) as [number, number];
    const c = certs();
    const tls = (name: string): string => `ssl_certificate ${pki.certs[name]!.cert}; ssl_certificate_key ${pki.certs[name]!.key};`;
    const pair = (port: number, sessions: string): string =>
      [
        `server { listen 127.0.0.1:${port} ssl; protocol imap; server_name open.example; ${tls("open.example")} ${sessions} }`,
        `server { listen 127.0.0.1:${port} ssl; protocol imap; server_name secure.example; ${tls("secure.example")} ${sessions}`,
        `  ssl_verify_client on; ssl_client_certificate ${c.ca.cert}; }`,
      ].join("\n");
    postern = await startPostern(
      [
        "auth_http 127.0.0.1:9/auth;",
        pair(ticketPort, `ssl_session_tickets on; ssl_session_ticket_key ${c.ticketKey48}; ssl_session_cache off;`),
        pair(cachePort, "ssl_session_tickets off; ssl_session_cache shared:SNI:1m;"),
      ].join("\n"),
    );
  });
  after(async () => {
    await postern?.stop();
    pki?.remove();
  });

  const cases: readonly (readonly [string, () => number, string])[] = [
    ["TLS 1.2 ticket", () => ticketPort, "-tls1_2"],
    ["TLS 1.3 ticket", () => ticketPort, "-tls1_3"],
    ["TLS 1.2 session id in a shared cache", () => cachePort, "-tls1_2"],
  ];
  for (const [label, port, version] of cases) {
    test(`${label}: resumes on its own server, never on the server that requires a client certificate`, async () => {
      const file = sessionFile();
      const first = await sniSClient(port(), { servername: "open.example", args: [version, "-sess_out", file], waitMs: 300 });
      assert.equal(first.cn, "open.example");
      assert.match(first.stdout, /\* OK IMAP4 ready/);
      // control: the client offers the session again under the same name, and the server that issued it resumes it
      // (under the same name: OpenSSL 3.5, in Node 24, resumes no session offered under another name, whatever the server)
      const control = await sniSClient(port(), { servername: "open.example", args: [version, "-sess_in", file] });
      assert.equal(control.reused, true, "the session resumes on the server that issued it");

      const crossed = await sniSClient(port(), { servername: "secure.example", args: [version, "-sess_in", file], waitMs: 400 });
      assert.equal(crossed.reused, false, "a full handshake");
      assert.equal(crossed.cn, "secure.example");
      assert.match(crossed.stdout, /^Acceptable client certificate CA names/m, "the certificate is asked for");
      assert.match(crossed.stdout, /\* BYE No required SSL certificate\r$/m);
      assert.match(postern.errorLog(), /\[info\] .*client sent no required SSL certificate while SSL handshaking/);

      const c = certs();
      const withCert = await sniSClient(port(), {
        servername: "secure.example",
        args: [version, "-sess_in", file, "-cert", c.clientValid.cert, "-key", c.clientValid.key],
        waitMs: 600,
      });
      assert.equal(withCert.reused, false);
      // (after TLS 1.3 tickets s_client prints the greeting right behind the hex dump)
      assert.match(withCert.stdout, /\* OK IMAP4 ready/, "with its certificate the client is served");
    });
  }

  test("a session of the client-certificate server does not resume on the open server either", async () => {
    const c = certs();
    const file = sessionFile();
    const args = ["-tls1_2", "-cert", c.clientValid.cert, "-key", c.clientValid.key];
    const first = await sniSClient(ticketPort, { servername: "secure.example", args: [...args, "-sess_out", file] });
    assert.match(first.stdout, /\* OK IMAP4 ready/);
    assert.equal((await sniSClient(ticketPort, { servername: "secure.example", args: [...args, "-sess_in", file] })).reused, true);
    const crossed = await sniSClient(ticketPort, { servername: "open.example", args: ["-tls1_2", "-sess_in", file] });
    assert.equal(crossed.reused, false);
    assert.equal(crossed.cn, "open.example");
  });
});

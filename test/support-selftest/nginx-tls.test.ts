/** Proves certs.ts and the client's TLS modes against the real nginx. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { certs } from "../support/certs.js";
import { MailClient } from "../support/client.js";
import { startFakeAuth, okTo } from "../support/fake-auth.js";
import { startFakeImap } from "../support/fake-backend.js";
import { startNginx } from "../support/nginx.js";
import { freePorts } from "../support/ports.js";

test("implicit TLS and STARTTLS with generated certificates", async () => {
  const pki = certs();
  const backend = await startFakeImap();
  const auth = await startFakeAuth(okTo(backend.port));
  const [tlsPort, plainPort] = await freePorts(2);
  const nginx = await startNginx(`
    auth_http ${auth.url};
    ssl_certificate ${pki.serverRsa.cert};
    ssl_certificate_key ${pki.serverKeyEncrypted};
    ssl_password_file ${pki.passwordFile};
    ssl_session_ticket_key ${pki.ticketKey80};
    ssl_session_ticket_key ${pki.ticketKey48};
    server { listen 127.0.0.1:${tlsPort} ssl; protocol imap; }
    server { listen 127.0.0.1:${plainPort}; protocol imap; starttls on; }
  `);
  try {
    const c = await MailClient.connect({
      port: tlsPort!,
      tls: { ca: pki.ca.certPem, servername: "localhost", rejectUnauthorized: true },
    });
    assert.equal(await c.readLine(), "* OK IMAP4 ready\r\n");
    assert.equal(c.tlsSocket?.getPeerCertificate().subject.CN, "localhost");
    await c.send("a1 LOGIN user pass\r\n");
    assert.equal(await c.readLine(), "a1 OK LOGIN completed\r\n");
    c.close();
    const [req] = await auth.waitForRequests(1);
    assert.equal(req!.header("Auth-SSL"), "on");

    // Resumption with the ticket (encrypted with the 80-byte key) proves the session option.
    assert.ok(c.session, "a TLS session was received");
    const r = await MailClient.connect({ port: tlsPort!, tls: { ca: pki.ca.certPem, servername: "localhost", session: c.session } });
    assert.equal(await r.readLine(), "* OK IMAP4 ready\r\n");
    assert.equal(r.tlsSocket?.isSessionReused(), true);
    r.close();

    const s = await MailClient.connect({ port: plainPort! });
    assert.equal(await s.readLine(), "* OK IMAP4 ready\r\n");
    await s.send("a1 CAPABILITY\r\n");
    assert.equal(await s.read(/a1 .*\r\n/), "* CAPABILITY IMAP4 IMAP4rev1 UIDPLUS AUTH=PLAIN STARTTLS\r\na1 OK completed\r\n");
    await s.send("a2 STARTTLS\r\n");
    assert.equal(await s.readLine(), "a2 OK completed\r\n");
    await s.startTls({ ca: pki.ca.certPem, servername: "localhost", rejectUnauthorized: true, maxVersion: "TLSv1.2" });
    assert.equal(s.tlsSocket?.getProtocol(), "TLSv1.2");
    await s.send("a3 CAPABILITY\r\n");
    assert.equal(await s.read(/a3 .*\r\n/), "* CAPABILITY IMAP4 IMAP4rev1 UIDPLUS AUTH=PLAIN\r\na3 OK completed\r\n");
    await s.send("a4 LOGOUT\r\n");
    assert.equal(await s.expectClosed(), "* BYE\r\na4 OK completed\r\n");
  } finally {
    await nginx.stop();
    await auth.close();
    await backend.close();
  }
});

test("client certificates: valid, via intermediate, expired, revoked, self-signed; ECDSA server cert", async () => {
  const pki = certs();
  const backend = await startFakeImap();
  const auth = await startFakeAuth(okTo(backend.port));
  const [port] = await freePorts(1);
  const nginx = await startNginx(`
    server {
      listen 127.0.0.1:${port} ssl; protocol imap; auth_http ${auth.url};
      ssl_certificate ${pki.serverEcdsa.cert};
      ssl_certificate_key ${pki.serverEcdsa.key};
      ssl_verify_client on;
      ssl_verify_depth 2;
      ssl_client_certificate ${pki.ca.cert};
      ssl_crl ${pki.crlBundle};
    }
  `);
  try {
    const cases: Array<[string, { cert: string; key: string }, string]> = [
      ["valid", { cert: pki.clientValid.certPem, key: pki.clientValid.keyPem }, "SUCCESS"],
      ["via intermediate", { cert: readFileSync(pki.clientViaIntermediateChain, "utf8"), key: pki.clientViaIntermediate.keyPem }, "SUCCESS"],
      ["expired", { cert: pki.clientExpired.certPem, key: pki.clientExpired.keyPem }, "FAILED:certificate has expired"],
      ["revoked", { cert: pki.clientRevoked.certPem, key: pki.clientRevoked.keyPem }, "FAILED:certificate revoked"],
      // With ssl_crl, OpenSSL reports the missing CRL of the self-signed issuer first.
      ["self-signed", { cert: pki.clientSelfSigned.certPem, key: pki.clientSelfSigned.keyPem }, "FAILED:unable to get certificate CRL"],
    ];
    for (const [name, id, verify] of cases) {
      const c = await MailClient.connect({ port: port!, tls: { ...id, ca: pki.ca.certPem, servername: "localhost", rejectUnauthorized: true } });
      assert.equal((c.tlsSocket?.getPeerCertificate() as { asn1Curve?: string }).asn1Curve, "prime256v1", name);
      if (verify === "SUCCESS") {
        assert.equal(await c.readLine(), "* OK IMAP4 ready\r\n", name);
        await c.send("a1 LOGIN user pass\r\n");
        assert.equal(await c.readLine(), "a1 OK LOGIN completed\r\n", name);
        assert.equal(auth.parsed.at(-1)!.header("Auth-SSL-Verify"), verify, name);
        c.close();
      } else {
        assert.equal(await c.expectClosed(), "* BYE SSL certificate error\r\n", name);
        assert.match(nginx.errorLog(), new RegExp(`client SSL certificate verify error: \\(\\d+:${verify.slice(7)}\\)`), name);
      }
    }
  } finally {
    await nginx.stop();
    await auth.close();
    await backend.close();
  }
});

/** Proves certs.ts and the client's TLS modes against the real nginx. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { certs } from '../support/certs.js';
import { MailClient } from '../support/client.js';
import { startFakeAuth, okTo } from '../support/fake-auth.js';
import { startFakeImap } from '../support/fake-backend.js';
import { startNginx } from '../support/nginx.js';
import { freePorts } from '../support/ports.js';

test('implicit TLS and STARTTLS with generated certificates', async () => {
  const pki = certs();
  const backend = await startFakeImap();
  const auth = await startFakeAuth(okTo(backend.port));
  const [tlsPort, plainPort] = await freePorts(2);
  const nginx = await startNginx(`
    auth_http ${auth.url};
    ssl_certificate ${pki.serverRsa.cert};
    ssl_certificate_key ${pki.serverKeyEncrypted};
    ssl_password_file ${pki.passwordFile};
    server { listen 127.0.0.1:${tlsPort} ssl; protocol imap; }
    server { listen 127.0.0.1:${plainPort}; protocol imap; starttls on; }
  `);
  try {
    const c = await MailClient.connect({
      port: tlsPort!, tls: { ca: pki.ca.certPem, servername: 'localhost', rejectUnauthorized: true },
    });
    assert.equal(await c.readLine(), '* OK IMAP4 ready\r\n');
    assert.equal(c.tlsSocket?.getPeerCertificate().subject.CN, 'localhost');
    await c.send('a1 LOGIN user pass\r\n');
    assert.equal(await c.readLine(), 'a1 OK LOGIN completed\r\n');
    c.close();
    const [req] = await auth.waitForRequests(1);
    assert.equal(req!.header('Auth-SSL'), 'on');

    const s = await MailClient.connect({ port: plainPort! });
    assert.equal(await s.readLine(), '* OK IMAP4 ready\r\n');
    await s.send('a1 CAPABILITY\r\n');
    assert.equal(await s.read(/a1 .*\r\n/),
      '* CAPABILITY IMAP4 IMAP4rev1 UIDPLUS AUTH=PLAIN STARTTLS\r\na1 OK completed\r\n');
    await s.send('a2 STARTTLS\r\n');
    assert.equal(await s.readLine(), 'a2 OK completed\r\n');
    await s.startTls({ ca: pki.ca.certPem, servername: 'localhost', rejectUnauthorized: true, maxVersion: 'TLSv1.2' });
    assert.equal(s.tlsSocket?.getProtocol(), 'TLSv1.2');
    await s.send('a3 CAPABILITY\r\n');
    assert.equal(await s.read(/a3 .*\r\n/), '* CAPABILITY IMAP4 IMAP4rev1 UIDPLUS AUTH=PLAIN\r\na3 OK completed\r\n');
    await s.send('a4 LOGOUT\r\n');
    assert.equal(await s.expectClosed(), '* BYE\r\na4 OK completed\r\n');
  } finally {
    await nginx.stop();
    await auth.close();
    await backend.close();
  }
});

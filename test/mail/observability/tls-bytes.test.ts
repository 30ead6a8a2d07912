/**
 * $bytes_received and $bytes_sent over TLS (docs/observability.md): the
 * application bytes the client sent and got, TLS records not included, for
 * an implicit-TLS session proxied to a backend, a session upgraded by
 * STARTTLS and then proxied (its plaintext before the upgrade counts), a
 * plain session on a STARTTLS listener, and sessions behind a PROXY
 * header, plain and implicit TLS (the header is the load balancer's, not
 * the client's, and does not count, as in nginx's stream module; nor do the
 * TLS records read together with it). The counts are checked against the
 * client's own transcript.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { startPostern } from "../../support/postern.js";
import { okTo, startFakeAuth } from "../../support/fake-auth.js";
import { startFakeImap } from "../../support/fake-backend.js";
import { MailClient } from "../../support/client.js";
import { certs } from "../../support/certs.js";
import { freePorts } from "../../support/ports.js";
import { eventually } from "../../hostile/env.js";

function counts(c: MailClient): { sent: number; received: number } {
  let sent = 0;
  let received = 0;
  for (const e of c.transcript) {
    if (e.dir === "C") sent += Buffer.byteLength(e.data, "latin1");
    else received += Buffer.byteLength(e.data, "latin1");
  }
  return { sent, received };
}

async function loginAndLogout(c: MailClient): Promise<void> {
  await c.send("a LOGIN alice secret\r\n");
  assert.match(await c.read(/^a .*\r\n/m), /^a OK/m);
  await c.send("b NOOP\r\n");
  await c.read(/^b .*\r\n/m);
  await c.send("c LOGOUT\r\n");
  await c.expectClosed();
}

test("bytes over implicit TLS and STARTTLS are the application bytes, as the client counts them", async () => {
  const pki = certs();
  const [imapsPort, imapPort, proxiedPort, proxiedPlainPort] = await freePorts(4);
  const backend = await startFakeImap();
  const auth = await startFakeAuth(okTo(backend.port));
  const block = `mail {
    auth_http 127.0.0.1:${auth.port}/auth;
    log_format bytes '$server_port $ssl_protocol $mail_session_end $bytes_received $bytes_sent';
    access_log access.log bytes;
    ssl_certificate ${pki.serverRsa.cert}; ssl_certificate_key ${pki.serverRsa.key};
    server { listen 127.0.0.1:${imapsPort} ssl; protocol imap; }
    server { listen 127.0.0.1:${imapPort}; protocol imap; starttls on; }
    server { listen 127.0.0.1:${proxiedPort} ssl proxy_protocol; protocol imap; }
    server { listen 127.0.0.1:${proxiedPlainPort} proxy_protocol; protocol imap; }
  }`;
  const proxy = await startPostern(block, { workerProcesses: 1, ports: [imapsPort!, imapPort!, proxiedPort!, proxiedPlainPort!] });
  const accessLog = (): string[] => readFileSync(`${proxy.prefix}access.log`, "latin1").split("\n").filter(Boolean);
  try {
    const implicit = await MailClient.connect({ port: imapsPort!, tls: { minVersion: "TLSv1.3" } });
    await implicit.readLine();
    await loginAndLogout(implicit);

    const upgraded = await MailClient.connect({ port: imapPort! });
    await upgraded.readLine();
    await upgraded.send("s STARTTLS\r\n");
    assert.match(await upgraded.read(/^s .*\r\n/m), /^s OK/m);
    await upgraded.startTls({ minVersion: "TLSv1.3" });
    await upgraded.send("k CAPABILITY\r\n");
    await upgraded.read(/^k .*\r\n/m);
    await loginAndLogout(upgraded);

    const plain = await MailClient.connect({ port: imapPort! });
    await plain.readLine();
    await plain.send("k CAPABILITY\r\n");
    await plain.read(/^k .*\r\n/m);
    await plain.send("q LOGOUT\r\n");
    await plain.expectClosed();

    // the header and the ClientHello in one write(): Postern reads them at once and hands the ClientHello back to the handshake
    const header = "PROXY TCP4 192.0.2.7 198.51.100.1 40001 993\r\n";
    const proxied = await MailClient.connect({ port: proxiedPort! });
    await proxied.startTls({ minVersion: "TLSv1.3" }, header);
    await proxied.readLine();
    await loginAndLogout(proxied);

    const proxiedPlain = await MailClient.connect({ port: proxiedPlainPort! });
    await proxiedPlain.send(header);
    await proxiedPlain.readLine();
    await loginAndLogout(proxiedPlain);

    const [i, u, p, h, hp] = [implicit, upgraded, plain, proxied, proxiedPlain].map(counts);
    // the plaintext before the upgrade is part of the STARTTLS session's counts
    assert.ok(u!.sent > i!.sent + "s STARTTLS\r\n".length - 1);
    await eventually(() => accessLog().length === 5, 5000, "five access-log lines");
    assert.deepEqual(
      accessLog().sort(),
      [
        `${imapsPort} TLSv1.3 logout ${i!.sent} ${i!.received}`,
        `${imapPort} TLSv1.3 logout ${u!.sent} ${u!.received}`,
        `${imapPort} - logout ${p!.sent} ${p!.received}`,
        `${proxiedPort} TLSv1.3 logout ${h!.sent - header.length} ${h!.received}`,
        `${proxiedPlainPort} - logout ${hp!.sent - header.length} ${hp!.received}`,
      ].sort(),
    );
  } finally {
    await proxy.stop();
    await auth.close();
    await backend.close();
  }
});

/**
 * TLS as the access log and the metrics show it: implicit TLS 1.2 with a
 * session resumed, STARTTLS in TLS 1.3, and a failed handshake; the
 * `$ssl_*` variables in the lines and postern_tls_handshakes_total,
 * postern_tls_resumptions_total and postern_starttls_upgrades_total after
 * them (docs/observability.md); on an address servers share, the server
 * SNI chose has the session's line and its `$server_name`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { connect } from "node:net";
import { startPostern } from "../../support/postern.js";
import { startFakeAuth } from "../../support/fake-auth.js";
import { MailClient } from "../../support/client.js";
import { certs } from "../../support/certs.js";
import { freePorts } from "../../support/ports.js";
import { eventually } from "../../hostile/env.js";

async function metrics(port: number): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
  const out = new Map<string, number>();
  for (const line of (await res.text()).split("\n")) {
    const m = /^(postern_[a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

test("TLS in the access log and the metrics: implicit TLS resumed, STARTTLS, a failed handshake", async () => {
  const pki = certs();
  const [imapsPort, imapPort, metricsPort] = await freePorts(3);
  const auth = await startFakeAuth(() => ({ headers: [["Auth-Status", "Invalid login or password"]] }));
  const block = `mail {
    auth_http 127.0.0.1:${auth.port}/auth;
    metrics_listen 127.0.0.1:${metricsPort};
    log_format tls '$server_port $ssl_protocol $ssl_session_reused "$ssl_server_name" $mail_session_end';
    access_log access.log tls;
    ssl_certificate ${pki.serverRsa.cert}; ssl_certificate_key ${pki.serverRsa.key};
    ssl_session_cache shared:TLSOBS:1m;
    ssl_session_tickets off;
    server { listen 127.0.0.1:${imapsPort} ssl; protocol imap; }
    server { listen 127.0.0.1:${imapPort}; protocol imap; starttls on; }
  }`;
  const proxy = await startPostern(block, { workerProcesses: 1, ports: [imapsPort!, imapPort!, metricsPort!] });
  const accessLog = (): string[] => readFileSync(`${proxy.prefix}access.log`, "latin1").split("\n").filter(Boolean);
  try {
    // implicit TLS 1.2 with SNI, then the same session resumed
    const first = await MailClient.connect({ port: imapsPort!, tls: { maxVersion: "TLSv1.2", servername: "mail.example.org" } });
    await first.readLine();
    await first.send("a LOGOUT\r\n");
    await first.expectClosed();
    const again = await MailClient.connect({ port: imapsPort!, tls: { maxVersion: "TLSv1.2", servername: "mail.example.org", session: first.session! } });
    await again.readLine();
    await again.send("a LOGOUT\r\n");
    await again.expectClosed();
    // STARTTLS in TLS 1.3
    const upgraded = await MailClient.connect({ port: imapPort! });
    await upgraded.readLine();
    await upgraded.send("s STARTTLS\r\n");
    assert.match(await upgraded.read(/^s .*\r\n/m), /^s OK/m);
    await upgraded.startTls({ minVersion: "TLSv1.3" });
    await upgraded.send("a LOGOUT\r\n");
    await upgraded.expectClosed();
    // not TLS at all on the implicit-TLS port: the handshake fails
    const garbage = connect({ host: "127.0.0.1", port: imapsPort! });
    garbage.write("this is not a ClientHello\r\n".repeat(4));
    await new Promise((resolve) => garbage.on("close", resolve).on("error", () => {}));

    await eventually(() => accessLog().length === 4, 5000, "four access-log lines");
    // a resumed TLS 1.2 session reports the name OpenSSL keeps for it: none on OpenSSL 3.0 (Node 20, early 22.x), the name on 3.5 (Node 22.23, 24, 26)
    const resumed = accessLog().find((l) => l.startsWith(`${imapsPort} TLSv1.2 r `));
    assert.match(resumed ?? "", new RegExp(`^${imapsPort} TLSv1\\.2 r "(mail\\.example\\.org|-)" logout$`));
    assert.deepEqual(
      accessLog()
        .filter((l) => l !== resumed)
        .sort(),
      [`${imapPort} TLSv1.3 . "-" logout`, `${imapsPort} - - "-" error`, `${imapsPort} TLSv1.2 . "mail.example.org" logout`].sort(),
    );
    const m = await metrics(metricsPort!);
    assert.equal(m.get('postern_tls_handshakes_total{version="TLSv1.2",result="ok"}'), 2);
    assert.equal(m.get('postern_tls_handshakes_total{version="TLSv1.3",result="ok"}'), 1);
    assert.equal(m.get('postern_tls_handshakes_total{version="unknown",result="failed"}'), 1);
    assert.equal(m.get('postern_tls_resumptions_total{kind="session"}'), 1);
    assert.equal(m.get('postern_starttls_upgrades_total{protocol="imap",result="ok"}'), 1);
  } finally {
    await proxy.stop();
    await auth.close();
  }
});

test("an address servers share: the server SNI chose writes the line, with its $server_name, even when the default server logs nothing", async () => {
  const pki = certs();
  const [port, plainPort] = await freePorts(2);
  const auth = await startFakeAuth(() => ({ headers: [["Auth-Status", "Invalid login or password"]] }));
  const block = `mail {
    auth_http 127.0.0.1:${auth.port}/auth;
    log_format sni '$server_name "$ssl_server_name" $mail_session_end';
    ssl_certificate ${pki.serverRsa.cert}; ssl_certificate_key ${pki.serverRsa.key};
    server { listen 127.0.0.1:${port} ssl; protocol imap; server_name a.example; }
    server { listen 127.0.0.1:${port} ssl; protocol imap; server_name b.example; access_log b.log sni; }
    server { listen 127.0.0.1:${plainPort}; protocol imap; server_name a.example; starttls on; }
    server { listen 127.0.0.1:${plainPort}; protocol imap; server_name b.example; starttls on; access_log b.log sni; }
  }`;
  const proxy = await startPostern(block, { workerProcesses: 1, ports: [port!, plainPort!] });
  const lines = (): string[] => readFileSync(`${proxy.prefix}b.log`, "latin1").split("\n").filter(Boolean);
  const session = async (servername: string | undefined, starttls: boolean): Promise<void> => {
    const c = starttls ? await MailClient.connect({ port: plainPort! }) : await MailClient.connect({ port: port!, tls: servername ? { servername } : {} });
    await c.readLine();
    if (starttls) {
      await c.send("s STARTTLS\r\n");
      assert.match(await c.read(/^s .*\r\n/m), /^s OK/m);
      await c.startTls(servername ? { servername } : {});
    }
    await c.send("a LOGOUT\r\n");
    await c.expectClosed();
  };
  try {
    // the sessions that stay with a.example (its name, or none: the default) first: had any of them
    // written to b.log, its line would be there before those of the b.example sessions that follow
    await session("a.example", false);
    await session(undefined, false);
    await session("a.example", true);
    await session("b.example", false);
    await session("b.example", true);
    await eventually(() => lines().length >= 2, 5000, "b.example's two lines");
    assert.deepEqual(lines(), ['b.example "b.example" logout', 'b.example "b.example" logout']);
  } finally {
    await proxy.stop();
    await auth.close();
  }
});

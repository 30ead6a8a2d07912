/**
 * The auth_http additions through a running Postern (2 workers): keep-alive
 * reusing one auth connection across logins, an https auth service with a
 * certificate made at test time (trusted, untrusted, misnamed, client
 * certificate), a group with one service down, the cache shared by the
 * workers, and a slow auth service. Each login is a real IMAP client.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { MailClient } from "../../support/client.js";
import { certs } from "../../support/certs.js";
import { okTo, startFakeAuth, type FakeAuth } from "../../support/fake-auth.js";
import { startFakeImap, type FakeBackend } from "../../support/fake-backend.js";
import type { MailProxyProcess } from "../../support/mail-proxy.js";
import { freePorts } from "../../support/ports.js";
import { startPostern } from "../../support/postern.js";

let imap: FakeBackend;
let keep: FakeAuth;
let httpsAuth: FakeAuth;
let httpsClientCert: FakeAuth;
let cached: FakeAuth;
let slow: FakeAuth;
let proxy: MailProxyProcess;
let ports: Record<string, number>;
let downPort: number;

const names = ["keepalive", "https", "untrusted", "misnamed", "clientcert", "nocert", "group", "cache", "slow"] as const;

before(async () => {
  const pki = certs();
  imap = await startFakeImap();
  keep = await startFakeAuth(okTo(imap.port), 0, { keepAlive: true });
  httpsAuth = await startFakeAuth(okTo(imap.port), 0, { keepAlive: true, tls: { cert: pki.serverRsa.certPem, key: pki.serverRsa.keyPem } });
  httpsClientCert = await startFakeAuth(okTo(imap.port), 0, {
    tls: { cert: pki.serverRsa.certPem, key: pki.serverRsa.keyPem, requestCert: true, rejectUnauthorized: true, ca: readFileSync(pki.ca.cert) },
  });
  cached = await startFakeAuth(okTo(imap.port));
  slow = await startFakeAuth(() => ({ headers: [["Auth-Status", "OK"]], delayMs: 5000 }));
  const allocated = await freePorts(names.length + 1);
  downPort = allocated.pop()!;
  ports = Object.fromEntries(names.map((n, i) => [n, allocated[i]!]));
  const https = (port: number) => `https://localhost:${port}/auth`;
  const server = (name: string, body: string) => `server { listen 127.0.0.1:${ports[name]}; protocol imap; ${body} }`;
  proxy = await startPostern(
    [
      server("keepalive", `auth_http ${keep.url}; auth_http_keepalive 4;`),
      server("https", `auth_http ${https(httpsAuth.port)}; auth_http_ssl_trusted_certificate ${pki.ca.cert}; auth_http_keepalive 2;`),
      server("untrusted", `auth_http ${https(httpsAuth.port)};`),
      server("misnamed", `auth_http ${https(httpsAuth.port)}; auth_http_ssl_trusted_certificate ${pki.ca.cert}; auth_http_ssl_name mail.example.net;`),
      server(
        "clientcert",
        `auth_http ${https(httpsClientCert.port)}; auth_http_ssl_trusted_certificate ${pki.ca.cert}; auth_http_ssl_certificate ${pki.clientValid.cert}; auth_http_ssl_certificate_key ${pki.clientValid.key};`,
      ),
      server("nocert", `auth_http ${https(httpsClientCert.port)}; auth_http_ssl_trusted_certificate ${pki.ca.cert};`),
      server("group", `auth_http 127.0.0.1:${downPort}/auth ${keep.url} max_fails=1 fail_timeout=60s;`),
      server("cache", `auth_http ${cached.url}; auth_http_cache zone=auth:1m ok=60s fail=10s;`),
      server("slow", `auth_http ${slow.url}; auth_http_timeout 300ms;`),
    ].join("\n"),
    { workerProcesses: 2, ports: Object.values(ports) },
  );
});

after(async () => {
  await proxy?.stop();
  for (const f of [keep, httpsAuth, httpsClientCert, cached, slow]) await f?.close();
  await imap?.close();
});

/** nginx's IMAP reply when the auth service fails (then it closes). */
const INTERNAL = "* BAD internal server error";

/** One IMAP login on `name`'s port: the tagged reply line. */
async function login(name: string, password = "secret"): Promise<string> {
  const c = await MailClient.connect({ port: ports[name]! });
  try {
    await c.read(/^\* OK.*\r\n/m);
    await c.send(`a LOGIN user ${password}\r\n`);
    return (await c.read(/^(a |\* BAD ).*\r\n/m)).trim().split("\r\n").pop()!;
  } finally {
    await c.send("b LOGOUT\r\n").catch(() => undefined);
  }
}

/** The error log's lines after `from` characters, without time, pid and client details. */
function logSince(from: number): string[] {
  return proxy
    .errorLog()
    .slice(from)
    .split("\n")
    .filter((l) => /\[(error|warn|crit)\]/.test(l))
    .map((l) => l.replace(/^\S+ \S+ (\[\w+\]) \d+#\d+: \*\d+ /, "$1 ").replace(/, client: .*$/, ""));
}

test("keep-alive through Postern: five logins over one auth connection per worker, nothing logged", async () => {
  const from = proxy.errorLog().length;
  for (let i = 0; i < 5; i++) assert.match(await login("keepalive"), /^a OK/);
  assert.equal(keep.parsed.length, 5);
  assert.ok(keep.connections <= 2, `${keep.connections} connections for 5 logins (2 workers)`);
  assert.equal(keep.parsed[0]!.requestLine, "GET /auth HTTP/1.1");
  assert.deepEqual(logSince(from), []);
});

test("https auth service: verified with the trusted CA and SNI, reused; the others refused with nginx's temporary failure", async () => {
  const from = proxy.errorLog().length;
  assert.match(await login("https"), /^a OK/);
  assert.match(await login("https"), /^a OK/);
  assert.equal(httpsAuth.parsed.length, 2);
  const temporary = INTERNAL;
  assert.equal(await login("untrusted"), temporary);
  assert.equal(await login("misnamed"), temporary);
  assert.equal(httpsAuth.parsed.length, 2, "no request reached the service over an unverified connection");
  const lines = logSince(from);
  assert.ok(
    lines.some((l) =>
      new RegExp(
        `^\\[error\\] auth http server 127\\.0\\.0\\.1:${httpsAuth.port} SSL certificate verify error: \\(21:unable to verify the first certificate\\)`,
      ).test(l),
    ),
    lines.join("\n"),
  );
  assert.ok(
    lines.some((l) => l.startsWith(`[error] auth http server 127.0.0.1:${httpsAuth.port} SSL certificate does not match "mail.example.net"`)),
    lines.join("\n"),
  );
});

test("https auth service that wants a client certificate: presented from auth_http_ssl_certificate; without one the login fails", async () => {
  assert.match(await login("clientcert"), /^a OK/);
  assert.equal(httpsClientCert.parsed.length, 1);
  assert.equal(await login("nocert"), INTERNAL);
  assert.equal(httpsClientCert.parsed.length, 1);
});

test("a group with one auth service down: no failed login; the failure logged at error, then the peer left out", async () => {
  const from = proxy.errorLog().length;
  const before = keep.parsed.length;
  for (let i = 0; i < 6; i++) assert.match(await login("group"), /^a OK/, `login ${i}`);
  assert.equal(keep.parsed.length - before, 6);
  const lines = logSince(from);
  // at most once per worker: after its failure each worker leaves the peer out for fail_timeout
  const refused = lines.filter((l) => l === "[error] recv() failed (111: Connection refused) while in http auth state");
  assert.ok(refused.length >= 1 && refused.length <= 2, lines.join("\n"));
  assert.ok(lines.includes(`[warn] auth http server 127.0.0.1:${downPort} temporarily disabled while in http auth state`), lines.join("\n"));
});

test("the cache is shared by the workers: many logins over both workers, one request; a changed password misses", async () => {
  const pids = new Set<string>();
  const from = proxy.errorLog().length;
  for (let i = 0; i < 12; i++) assert.match(await login("cache"), /^a OK/);
  for (const m of proxy
    .errorLog()
    .slice(from)
    .matchAll(/\[info\] (\d+)#\d+: \*\d+ client /g))
    pids.add(m[1]!);
  assert.equal(pids.size, 2, "both workers served logins");
  assert.equal(cached.parsed.length, 1);
  assert.match(await login("cache", "changed"), /^a OK/);
  assert.equal(cached.parsed.length, 2);
});

test("a slow auth service: the temporary failure after auth_http_timeout, logged, and the next client is served", async () => {
  const from = proxy.errorLog().length;
  assert.equal(await login("slow"), INTERNAL);
  assert.ok(logSince(from).some((l) => l.startsWith(`[error] auth http server 127.0.0.1:${slow.port} timed out (110: Connection timed out)`)));
  assert.match(await login("keepalive"), /^a OK/);
});

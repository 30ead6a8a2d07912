/**
 * Workers whose TLS servers share a session cache talk to the master over
 * the same IPC channel as the process messages: start-up must not mistake
 * one for the other, and sessions must resume across workers.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import tls from "node:tls";
import { X509Certificate } from "node:crypto";
import { certs } from "../support/certs.js";
import { Instance, freePort, waitFor, workerPids } from "./harness.js";

function greet(port: number, session?: Buffer): Promise<{ greeting: string; session: Buffer | undefined; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: "127.0.0.1", rejectUnauthorized: false, maxVersion: "TLSv1.2", ...(session ? { session } : {}) });
    let got: Buffer | undefined;
    s.on("session", (b: Buffer) => (got = b));
    s.once("data", (d: Buffer) => {
      const reused = s.isSessionReused();
      s.end();
      setTimeout(() => resolve({ greeting: d.toString(), session: got, reused }), 50);
    });
    s.on("error", reject);
  });
}

/** An implicit-TLS IMAP server with a shared session cache and no tickets (the same file works with nginx). */
function sharedCacheConfig(port: number, workers: number): string {
  const c = certs();
  return [
    "load_module /usr/lib/nginx/modules/ngx_mail_module.so;",
    `daemon off; master_process on; worker_processes ${workers}; pid nginx.pid; error_log error.log info;`,
    "events { worker_connections 64; }",
    `mail { auth_http 127.0.0.1:9/auth; ssl_certificate ${c.serverEcdsa.cert}; ssl_certificate_key ${c.serverEcdsa.key};`,
    `  ssl_session_cache shared:MAIL:1m; ssl_session_tickets off;`,
    `  server { listen 127.0.0.1:${port} ssl; protocol imap; } }`,
    "",
  ].join("\n");
}

test("2 workers with ssl_session_cache shared: they start, serve TLS and resume each other's sessions", async () => {
  const inst = new Instance();
  try {
    const port = await freePort();
    inst.write(sharedCacheConfig(port, 2));
    await inst.up();
    await waitFor("two workers", () => workerPids(inst.log()).length === 2);
    const first = await greet(port);
    assert.equal(first.greeting, "* OK IMAP4 ready\r\n");
    assert.ok(first.session, "the server issued a session");
    let reused = 0;
    // connections spread over both workers; every one must resume (the other worker's replica has the session)
    for (let i = 0; i < 8; i++) if ((await greet(port, first.session)).reused) reused++;
    assert.equal(reused, 8);
    assert.doesNotMatch(inst.log(), /\[(emerg|alert)\]/);
  } finally {
    await inst.cleanup();
  }
});

test("sessions in a shared cache survive a reload, as in nginx's shared memory", async () => {
  const inst = new Instance();
  try {
    const port = await freePort();
    inst.write(sharedCacheConfig(port, 1));
    const pid = await inst.up();
    await waitFor("a worker", () => workerPids(inst.log()).length === 1);
    const first = await greet(port);
    assert.ok(first.session, "the server issued a session");
    assert.equal((await greet(port, first.session)).reused, true, "resumed before the reload");
    process.kill(pid, "SIGHUP");
    await waitFor("new worker", () => workerPids(inst.log()).length === 2);
    await waitFor("old worker gone", () => /exited with code 0/.test(inst.log()));
    assert.equal((await greet(port, first.session)).reused, true, "the new worker resumes the old worker's session");
  } finally {
    await inst.cleanup();
  }
});

test("HUP picks up a new certificate: an open TLS session continues, new ones get the new certificate", async () => {
  const inst = new Instance();
  const c = certs();
  const conf = (cert: { cert: string; key: string }, port: number): string =>
    [
      "daemon off; master_process on; worker_processes 1; pid nginx.pid; error_log error.log info;",
      "events { worker_connections 64; }",
      `mail { auth_http 127.0.0.1:9/auth; ssl_certificate ${cert.cert}; ssl_certificate_key ${cert.key};`,
      `  server { listen 127.0.0.1:${port} ssl; protocol imap; } }`,
      "",
    ].join("\n");
  const open = (port: number): Promise<tls.TLSSocket> =>
    new Promise((resolve, reject) => {
      const s = tls.connect({ port, host: "127.0.0.1", rejectUnauthorized: false });
      s.once("data", () => resolve(s));
      s.once("error", reject);
    });
  try {
    const port = await freePort();
    inst.write(conf(c.serverRsa, port));
    const pid = await inst.up();
    const held = await open(port);
    assert.equal(held.getPeerCertificate().fingerprint256, new X509Certificate(c.serverRsa.certPem).fingerprint256);
    inst.write(conf(c.serverEcdsa, port));
    process.kill(pid, "SIGHUP");
    await waitFor("new worker", () => workerPids(inst.log()).length === 2);
    let fingerprint = "";
    for (let i = 0; i < 20; i++) {
      const s = await open(port);
      fingerprint = s.getPeerCertificate().fingerprint256;
      s.destroy();
      if (fingerprint === new X509Certificate(c.serverEcdsa.certPem).fingerprint256) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(fingerprint, new X509Certificate(c.serverEcdsa.certPem).fingerprint256, "new connections see the new certificate");
    const reply = new Promise<string>((resolve) => held.once("data", (d: Buffer) => resolve(d.toString())));
    held.write("a NOOP\r\n");
    assert.equal(await reply, "a OK completed\r\n", "the session opened before the reload goes on");
    held.destroy();
  } finally {
    await inst.cleanup();
  }
});

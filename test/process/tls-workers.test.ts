/**
 * Workers whose TLS servers share a session cache talk to the master over
 * the same IPC channel as the process messages: start-up must not mistake
 * one for the other, and sessions must resume across workers.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import tls from "node:tls";
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

test("2 workers with ssl_session_cache shared: they start, serve TLS and resume each other's sessions", async () => {
  const inst = new Instance();
  try {
    const port = await freePort();
    const c = certs();
    inst.write([
      "load_module /usr/lib/nginx/modules/ngx_mail_module.so;",
      "daemon off; master_process on; worker_processes 2; pid nginx.pid; error_log error.log info;",
      "events { worker_connections 64; }",
      `mail { auth_http 127.0.0.1:9/auth; ssl_certificate ${c.serverEcdsa.cert}; ssl_certificate_key ${c.serverEcdsa.key};`,
      `  ssl_session_cache shared:MAIL:1m; ssl_session_tickets off;`,
      `  server { listen 127.0.0.1:${port} ssl; protocol imap; } }`,
      "",
    ].join("\n"));
    await inst.up();
    await waitFor("two workers", () => workerPids(inst.log()).length === 2);
    const first = await greet(port);
    assert.equal(first.greeting, "* OK IMAP4 ready\r\n");
    assert.ok(first.session, "the server issued a session");
    let reused = 0;
    // connections spread over both workers; every one must resume through the master's cache
    for (let i = 0; i < 8; i++) if ((await greet(port, first.session)).reused) reused++;
    assert.equal(reused, 8);
    assert.doesNotMatch(inst.log(), /\[(emerg|alert)\]/);
  } finally {
    await inst.cleanup();
  }
});

/** Checks the harness pieces that need no proxy: ports, certs, fake auth parsing, client timeouts. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { statSync } from "node:fs";
import net from "node:net";
import { certs } from "../support/certs.js";
import { MailClient } from "../support/client.js";
import { parseAuthRequest, startFakeAuth } from "../support/fake-auth.js";
import { startFakeSmtp } from "../support/fake-backend.js";
import { freePorts, listeningPorts } from "../support/ports.js";

test("freePorts returns distinct bindable loopback ports", async () => {
  const ports = await freePorts(5);
  assert.equal(new Set(ports).size, 5);
  for (const p of ports) {
    const s = net.createServer();
    await new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.listen(p, "127.0.0.1", () => resolve());
    });
    assert.ok(listeningPorts().has(p));
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
});

/** Runs `openssl verify` and returns its combined output (it exits 2 on failure). */
function verify(args: string[]): string {
  try {
    return execFileSync("openssl", ["verify", ...args], { stdio: ["ignore", "pipe", "pipe"] }).toString();
  } catch (err) {
    const e = err as { stdout: Buffer; stderr: Buffer };
    return e.stdout.toString() + e.stderr.toString();
  }
}

test("certs: chain, expiry, revocation, key types and ticket key sizes are as documented", () => {
  const c = certs();
  assert.strictEqual(certs(), c, "cached per process");
  assert.match(
    verify(["-CAfile", c.ca.cert, c.serverRsa.cert, c.serverEcdsa.cert, c.clientValid.cert]),
    /server-rsa.crt: OK\n.*server-ecdsa.crt: OK\n.*client-valid.crt: OK/s,
  );
  assert.match(verify(["-CAfile", c.ca.cert, "-untrusted", c.intermediate.cert, c.clientViaIntermediate.cert]), /: OK/);
  assert.match(verify(["-CAfile", c.ca.cert, c.clientExpired.cert]), /certificate has expired/);
  assert.match(verify(["-CAfile", c.ca.cert, c.clientSelfSigned.cert]), /self-signed certificate/);
  assert.match(verify(["-crl_check", "-CRLfile", c.crl, "-CAfile", c.ca.cert, c.clientRevoked.cert]), /certificate revoked/);
  assert.match(verify(["-crl_check", "-CRLfile", c.crl, "-CAfile", c.ca.cert, c.clientValid.cert]), /: OK/);
  const text = execFileSync("openssl", ["x509", "-in", c.serverRsa.cert, "-noout", "-text"]).toString();
  assert.match(text, /Public-Key: \(2048 bit\)/);
  assert.match(text, /DNS:localhost, IP Address:127\.0\.0\.1/);
  assert.match(execFileSync("openssl", ["x509", "-in", c.serverEcdsa.cert, "-noout", "-text"]).toString(), /NIST CURVE: P-256/);
  assert.match(c.serverRsa.keyPem, /^-----BEGIN PRIVATE KEY-----/);
  assert.match(execFileSync("cat", [c.serverKeyEncrypted]).toString(), /^-----BEGIN ENCRYPTED PRIVATE KEY-----/);
  assert.equal(statSync(c.ticketKey48).size, 48);
  assert.equal(statSync(c.ticketKey80).size, 80);
});

test("fake auth keeps raw bytes and parses headers in order with duplicates", async () => {
  const r = parseAuthRequest("GET /a HTTP/1.0\r\nX: 1\r\nAuth-User: \r\nX: 2\r\nbare\r\n\r\n", 0);
  assert.equal(r.requestLine, "GET /a HTTP/1.0");
  assert.deepEqual(r.headers, [
    ["X", "1"],
    ["Auth-User", ""],
    ["X", "2"],
    ["bare", ""],
  ]);
  assert.equal(r.header("x"), "1");

  const auth = await startFakeAuth(() => "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\n\r\n");
  const c = await MailClient.connect({ port: auth.port });
  try {
    // Like nginx: one request in two pieces, then wait for the server to close.
    await c.send("GET /auth HTTP/1.0\r\nHost: x\r\n");
    await c.send("Auth-Method: plain\r\n\r\n");
    assert.equal(await c.expectClosed(), "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\n\r\n");
    assert.deepEqual(auth.requests, ["GET /auth HTTP/1.0\r\nHost: x\r\nAuth-Method: plain\r\n\r\n"]);
  } finally {
    c.close();
    await auth.close();
  }
});

test("client timeouts fail with a clear message and the transcript", async () => {
  const smtp = await startFakeSmtp({ neverGreet: true });
  const c = await MailClient.connect({ port: smtp.port, timeoutMs: 200 });
  try {
    await assert.rejects(c.readLine(), /^Error: timed out after 200 ms waiting for \/\\n\/; unread ""/);
    await assert.rejects(c.expectClosed(100), /connection still open after 100 ms/);
    await c.send("NOOP\r\n");
    assert.equal(await c.readAll(100), "250 2.0.0 Ok\r\n");
    assert.equal(c.transcriptText(), 'C: "NOOP\\r\\n"\nS: "250 2.0.0 Ok\\r\\n"');
    await c.send("QUIT\r\n");
    assert.equal(await c.expectClosed(), "221 2.0.0 Bye\r\n");
    await assert.rejects(c.readLine(), /connection closed before \/\\n\/ matched/);
  } finally {
    c.close();
    await smtp.close();
  }
});

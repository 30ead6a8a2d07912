/**
 * auth_http_ssl_verify_depth, as proxy_ssl_verify_depth: an https auth
 * service whose certificate comes through an intermediate CA is accepted
 * with the default depth 1 and refused with depth 0 (OpenSSL's error 20 in
 * the log, nginx's temporary failure to the client, no request sent).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MailClient } from "../../support/client.js";
import { certs } from "../../support/certs.js";
import { okTo, startFakeAuth } from "../../support/fake-auth.js";
import { startFakeImap } from "../../support/fake-backend.js";
import { freePorts } from "../../support/ports.js";
import { startPostern } from "../../support/postern.js";

/** A localhost server certificate signed by the intermediate CA; returns its key and its chain (leaf, intermediate). */
function serverViaIntermediate(dir: string): { key: string; chain: string } {
  const pki = certs();
  const run = (args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  run(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "leaf.key"]);
  run(["req", "-new", "-key", "leaf.key", "-subj", "/CN=localhost", "-out", "leaf.csr"]);
  writeFileSync(join(dir, "ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n");
  run([
    "x509",
    "-req",
    "-in",
    "leaf.csr",
    "-CA",
    pki.intermediate.cert,
    "-CAkey",
    pki.intermediate.key,
    "-CAcreateserial",
    "-days",
    "30",
    "-extfile",
    "ext.cnf",
    "-out",
    "leaf.crt",
  ]);
  return { key: readFileSync(join(dir, "leaf.key"), "latin1"), chain: readFileSync(join(dir, "leaf.crt"), "latin1") + pki.intermediate.certPem };
}

test("auth_http_ssl_verify_depth: a chain through one intermediate passes at depth 1 and is refused at depth 0", async () => {
  const pki = certs();
  const dir = mkdtempSync(join(tmpdir(), "postern-depth-"));
  const imap = await startFakeImap();
  const { key, chain } = serverViaIntermediate(dir);
  const auth = await startFakeAuth(okTo(imap.port), 0, { tls: { cert: chain, key } });
  const [deep, shallow] = await freePorts(2);
  const url = `https://localhost:${auth.port}/auth`;
  const proxy = await startPostern(
    `mail {
      auth_http_ssl_trusted_certificate ${pki.ca.cert};
      server { listen 127.0.0.1:${deep}; protocol imap; auth_http ${url}; }
      server { listen 127.0.0.1:${shallow}; protocol imap; auth_http ${url}; auth_http_ssl_verify_depth 0; }
    }`,
    { ports: [deep!, shallow!] },
  );
  const login = async (port: number): Promise<string> => {
    const c = await MailClient.connect({ port });
    await c.readLine();
    await c.send("a LOGIN user secret\r\n");
    const reply = (await c.read(/^(a |\* BAD ).*\r\n/m)).trim().split("\r\n").pop()!;
    c.close();
    return reply;
  };
  try {
    assert.match(await login(deep!), /^a OK/);
    assert.equal(auth.parsed.length, 1);
    assert.equal(await login(shallow!), "* BAD internal server error");
    assert.equal(auth.parsed.length, 1, "nothing was sent over a chain past the depth");
    assert.match(
      proxy.errorLog(),
      new RegExp(`\\[error\\] .*auth http server 127\\.0\\.0\\.1:${auth.port} SSL certificate verify error: \\(20:unable to get local issuer certificate\\)`),
    );
  } finally {
    await proxy.stop();
    await auth.close();
    await imap.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * ssl_verify_client modes, ssl_verify_depth, ssl_crl, ssl_client_certificate
 * vs ssl_trusted_certificate, and the Auth-SSL-* values, with client
 * certificates generated at test time.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import http from "node:http";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { TlsServerSetup } from "../../../src/mail/ssl/context.js";
import { type EchoResult, echoLine, echoServer, freePort, makePki, type Pki, sClient, setupFrom, startNginx, tempDir } from "./helpers.js";

let tmp: ReturnType<typeof tempDir>;
let pki: Pki;

before(() => {
  tmp = tempDir();
  pki = makePki(tmp.dir);
});
after(() => tmp.remove());

function setup(mode: string, extra: string[][] = [["ssl_client_certificate", pki.ca]]): TlsServerSetup {
  return setupFrom([["ssl_certificate", pki.rsaCert], ["ssl_certificate_key", pki.rsaKey], ["ssl_verify_client", mode], ...extra]);
}

async function connect(s: TlsServerSetup, cert?: string, key?: string, more: string[] = []): Promise<{ result: EchoResult | undefined; stdout: string }> {
  const srv = await echoServer(s);
  try {
    const run = await sClient(srv.port, [...(cert ? ["-cert", cert, "-key", key!] : []), ...more]);
    return { result: echoLine(run), stdout: run.stdout };
  } finally {
    await srv.close();
  }
}

describe("ssl_verify_client on", () => {
  test("a valid certificate: SUCCESS and the Auth-SSL-* values", async () => {
    const { result } = await connect(setup("on"), pki.client, pki.clientKey);
    assert.deepEqual(result?.check, { result: "ok", verify: "SUCCESS" });
    const info = result.info;
    assert.equal(info.verify, "SUCCESS");
    assert.equal(info.subject, "CN=client one,O=Example\\, Inc.,C=US");
    assert.equal(info.issuer, "CN=Test CA,O=Test Org");
    const serial = execFileSync("openssl", ["x509", "-in", pki.client, "-noout", "-serial"]).toString().trim().replace("serial=", "");
    assert.equal(info.serial, serial);
    const fp = execFileSync("openssl", ["x509", "-in", pki.client, "-noout", "-fingerprint", "-sha1"])
      .toString()
      .trim()
      .replace(/^.*=/, "")
      .replace(/:/g, "")
      .toLowerCase();
    assert.equal(info.fingerprint, fp);
    assert.equal(info.certPem, readFileSync(pki.client, "utf8"));
  });
  test("no certificate: missing", async () => {
    const { result } = await connect(setup("on"));
    assert.deepEqual(result?.check, { result: "missing", verify: "NONE", logMessage: "client sent no required SSL certificate" });
  });
  test("self-signed: failed with OpenSSL's number and text", async () => {
    const { result } = await connect(setup("on"), pki.selfSigned, pki.selfSignedKey);
    assert.deepEqual(result?.check, {
      result: "failed",
      verify: "FAILED:self-signed certificate",
      logMessage: "client SSL certificate verify error: (18:self-signed certificate)",
    });
  });
  test("expired", async () => {
    const { result } = await connect(setup("on"), pki.expired, pki.expiredKey);
    assert.equal(result?.check.logMessage, "client SSL certificate verify error: (10:certificate has expired)");
  });
  test("untrusted issuer (a lone leaf: OpenSSL says 21, as nginx logs it)", async () => {
    const { result } = await connect(setup("on"), pki.untrusted, pki.untrustedKey);
    assert.equal(result?.check.logMessage, "client SSL certificate verify error: (21:unable to verify the first certificate)");
  });
  test("the log lines match nginx 1.22.1's", async () => {
    const port = await freePort();
    const ngx = await startNginx(
      tmp.dir,
      `auth_http 127.0.0.1:1/;\nserver { listen 127.0.0.1:${port} ssl; protocol imap; ssl_certificate ${pki.rsaCert}; ssl_certificate_key ${pki.rsaKey}; ssl_verify_client on; ssl_client_certificate ${pki.ca}; }`,
    );
    try {
      for (const [c, k] of [
        [pki.selfSigned, pki.selfSignedKey],
        [pki.untrusted, pki.untrustedKey],
        [pki.expired, pki.expiredKey],
      ] as const) {
        await sClient(port, ["-cert", c, "-key", k]);
      }
    } finally {
      await ngx.stop();
    }
    const log = readFileSync(join(tmp.dir, "error.log"), "utf8");
    const theirs = [...log.matchAll(/(client SSL certificate verify error: \(.*?\)) while/g)].map((m) => m[1]);
    const ours: (string | undefined)[] = [];
    for (const [c, k] of [
      [pki.selfSigned, pki.selfSignedKey],
      [pki.untrusted, pki.untrustedKey],
      [pki.expired, pki.expiredKey],
    ] as const) {
      ours.push((await connect(setup("on"), c, k)).result?.check.logMessage);
    }
    assert.deepEqual(ours, theirs);
  });
});

describe("ssl_verify_client optional and optional_no_ca", () => {
  test("optional: no certificate continues with NONE; a bad one fails", async () => {
    assert.deepEqual((await connect(setup("optional"))).result?.check, { result: "ok", verify: "NONE" });
    assert.equal((await connect(setup("optional"), pki.selfSigned, pki.selfSignedKey)).result?.check.result, "failed");
  });
  test("optional_no_ca: self-signed and untrusted continue with FAILED:reason", async () => {
    assert.deepEqual((await connect(setup("optional_no_ca"), pki.selfSigned, pki.selfSignedKey)).result?.check, {
      result: "ok",
      verify: "FAILED:self-signed certificate",
    });
    assert.deepEqual((await connect(setup("optional_no_ca", []), pki.untrusted, pki.untrustedKey)).result?.check, {
      result: "ok",
      verify: "FAILED:unable to verify the first certificate",
    });
  });
  test("optional_no_ca: expired still fails", async () => {
    const r = (await connect(setup("optional_no_ca"), pki.expired, pki.expiredKey)).result;
    assert.equal(r?.check.result, "failed");
    assert.equal(r?.check.verify, "FAILED:certificate has expired");
  });
});

describe("ssl_crl and ssl_verify_depth", () => {
  test("a revoked certificate fails; a valid one passes", async () => {
    const s = setup("on", [
      ["ssl_client_certificate", pki.ca],
      ["ssl_crl", pki.crl],
    ]);
    assert.equal((await connect(s, pki.revoked, pki.revokedKey)).result?.check.logMessage, "client SSL certificate verify error: (23:certificate revoked)");
    assert.deepEqual((await connect(s, pki.client, pki.clientKey)).result?.check, { result: "ok", verify: "SUCCESS" });
  });
  test("two intermediates need ssl_verify_depth 2 (default 1)", async () => {
    const chain = ["-cert_chain", pki.deepChain];
    assert.equal(
      (await connect(setup("on"), pki.deep, pki.deepKey, chain)).result?.check.logMessage,
      "client SSL certificate verify error: (20:unable to get local issuer certificate)",
    );
    const deeper = setup("on", [
      ["ssl_client_certificate", pki.ca],
      ["ssl_verify_depth", "2"],
    ]);
    assert.deepEqual((await connect(deeper, pki.deep, pki.deepKey, chain)).result?.check, { result: "ok", verify: "SUCCESS" });
  });
});

describe("advertised and unadvertised CAs", () => {
  test("ssl_client_certificate names are sent; ssl_trusted_certificate ones are not but still trusted", async () => {
    const advertised = await connect(setup("on"), pki.client, pki.clientKey);
    assert.match(advertised.stdout, /Acceptable client certificate CA names\nO = Test Org, CN = Test CA/);
    const hidden = await connect(setup("on", [["ssl_trusted_certificate", pki.ca]]), pki.client, pki.clientKey);
    assert.match(hidden.stdout, /No client certificate CA names sent/);
    assert.deepEqual(hidden.result?.check, { result: "ok", verify: "SUCCESS" });
    const stranger = await connect(setup("on", [["ssl_trusted_certificate", pki.ca]]), pki.untrusted, pki.untrustedKey);
    assert.equal(stranger.result?.check.logMessage, "client SSL certificate verify error: (21:unable to verify the first certificate)");
    const self = await connect(setup("on", [["ssl_trusted_certificate", pki.ca]]), pki.selfSigned, pki.selfSignedKey);
    assert.equal(self.result?.check.logMessage, "client SSL certificate verify error: (18:self-signed certificate)");
    const expired = await connect(setup("on", [["ssl_trusted_certificate", pki.ca]]), pki.expired, pki.expiredKey);
    assert.equal(expired.result?.check.logMessage, "client SSL certificate verify error: (10:certificate has expired)");
  });
  test("ssl_crl applies to chains through unadvertised CAs too (each CA needs its CRL)", async () => {
    const hidden = setup("on", [
      ["ssl_trusted_certificate", pki.ca],
      ["ssl_crl", pki.crl],
    ]);
    assert.equal(
      (await connect(hidden, pki.revoked, pki.revokedKey)).result?.check.logMessage,
      "client SSL certificate verify error: (23:certificate revoked)",
    );
    assert.deepEqual((await connect(hidden, pki.client, pki.clientKey)).result?.check, { result: "ok", verify: "SUCCESS" });
    // The intermediate chain has no CRL from Inter One / Inter Two: OpenSSL's 3, as nginx reports it.
    const deep = setup("on", [
      ["ssl_trusted_certificate", pki.ca],
      ["ssl_crl", pki.crl],
      ["ssl_verify_depth", "2"],
    ]);
    assert.equal(
      (await connect(deep, pki.deep, pki.deepKey, ["-cert_chain", pki.deepChain])).result?.check.logMessage,
      "client SSL certificate verify error: (3:unable to get certificate CRL)",
    );
    const advertised = setup("on", [
      ["ssl_client_certificate", pki.ca],
      ["ssl_crl", pki.crl],
      ["ssl_verify_depth", "2"],
    ]);
    assert.equal(
      (await connect(advertised, pki.deep, pki.deepKey, ["-cert_chain", pki.deepChain])).result?.check.logMessage,
      "client SSL certificate verify error: (3:unable to get certificate CRL)",
    );
  });
});

/** Headers nginx sends to auth_http for one IMAP login over implicit TLS. */
async function nginxAuthHeaders(nginxPort: number, authRequests: http.IncomingHttpHeaders[], args: string[]): Promise<http.IncomingHttpHeaders | undefined> {
  const before = authRequests.length;
  await new Promise<void>((resolve) => {
    const c = spawn("openssl", ["s_client", "-connect", `127.0.0.1:${nginxPort}`, "-crlf", ...args], { stdio: ["pipe", "pipe", "ignore"] });
    let out = "";
    let sent = false;
    c.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (!sent && out.includes("* OK")) {
        sent = true;
        c.stdin.write("a LOGIN user pass\n");
      }
      if (out.includes("a NO")) c.kill();
    });
    const timer = setTimeout(() => c.kill(), 8000);
    c.on("close", () => {
      clearTimeout(timer);
      resolve();
    });
  });
  return authRequests[before];
}

describe("Auth-SSL-* values against nginx 1.22.1's auth_http request", () => {
  test("SUCCESS, FAILED:reason and NONE with subject, issuer, serial, fingerprint and certificate", async () => {
    const requests: http.IncomingHttpHeaders[] = [];
    const auth = http.createServer((req, res) => {
      requests.push(req.headers);
      res.writeHead(200, { "Auth-Status": "Invalid login" });
      res.end();
    });
    await new Promise<void>((r) => auth.listen(0, "127.0.0.1", r));
    const authPort = (auth.address() as { port: number }).port;
    const port = await freePort();
    const ngx = await startNginx(
      tmp.dir,
      `auth_http 127.0.0.1:${authPort}/auth;\nauth_http_pass_client_cert on;\nserver { listen 127.0.0.1:${port} ssl; protocol imap; ssl_certificate ${pki.rsaCert}; ssl_certificate_key ${pki.rsaKey}; ssl_protocols TLSv1.2 TLSv1.3; ssl_verify_client optional_no_ca; ssl_client_certificate ${pki.ca}; }`,
    );
    try {
      const clients: string[][] = [["-cert", pki.client, "-key", pki.clientKey], ["-cert", pki.selfSigned, "-key", pki.selfSignedKey], []];
      for (const args of clients) {
        const theirs = await nginxAuthHeaders(port, requests, args);
        assert.ok(theirs, `no auth request for ${args.join(" ")}`);
        const ours = (await connect(setup("optional_no_ca"), args[1], args[3])).result?.info;
        assert.ok(ours);
        assert.equal(theirs["auth-ssl"], "on");
        assert.equal(ours.protocol, theirs["auth-ssl-protocol"]);
        assert.equal(ours.cipher, theirs["auth-ssl-cipher"]);
        assert.equal(ours.verify, theirs["auth-ssl-verify"]);
        assert.equal(ours.subject, theirs["auth-ssl-subject"]);
        assert.equal(ours.issuer, theirs["auth-ssl-issuer"]);
        assert.equal(ours.serial, theirs["auth-ssl-serial"]);
        assert.equal(ours.fingerprint, theirs["auth-ssl-fingerprint"]);
        const cert = theirs["auth-ssl-cert"] as string | undefined;
        assert.equal(ours.certPem, cert === undefined ? undefined : decodeURIComponent(cert));
      }
    } finally {
      await ngx.stop();
      await new Promise((r) => auth.close(r));
    }
  });
});

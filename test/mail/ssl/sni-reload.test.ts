/**
 * HUP with servers sharing an address (docs/sni.md): new connections get
 * each name's new certificate, a session opened before the reload under
 * one of the names goes on.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import tls from "node:tls";
import { startPostern } from "../../support/postern.js";
import { freePort } from "../../support/ports.js";
import { namedCerts, sniSClient } from "./sni-helpers.js";

test("HUP swaps the certificate of one name: an open session under that name goes on, new ones see the new certificate", async () => {
  const pki = namedCerts(["a.example", "b.example", "b.example.renewed"]);
  const port = await freePort();
  const block = (bCert: string): string =>
    [
      "auth_http 127.0.0.1:9/auth;",
      `server { listen 127.0.0.1:${port} ssl; protocol imap; server_name a.example; ssl_certificate ${pki.certs["a.example"]!.cert}; ssl_certificate_key ${pki.certs["a.example"]!.key}; }`,
      `server { listen 127.0.0.1:${port} ssl; protocol imap; server_name b.example; ssl_certificate ${pki.certs[bCert]!.cert}; ssl_certificate_key ${pki.certs[bCert]!.key}; }`,
    ].join("\n");
  const postern = await startPostern(block("b.example"));
  try {
    const held = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ port, host: "127.0.0.1", servername: "b.example", rejectUnauthorized: false });
      s.once("data", () => resolve(s));
      s.once("error", reject);
    });
    assert.equal(held.getPeerX509Certificate()?.subject, "CN=b.example");

    const text = readFileSync(postern.configPath, "utf8");
    writeFileSync(postern.configPath, text.replace(block("b.example"), block("b.example.renewed")));
    postern.signal("SIGHUP");
    let cn = "";
    for (let i = 0; i < 50 && cn !== "b.example.renewed"; i++) {
      cn = (await sniSClient(port, { servername: "b.example" })).cn;
      if (cn !== "b.example.renewed") await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(cn, "b.example.renewed", "new connections to b.example see the new certificate");
    assert.equal((await sniSClient(port, { servername: "a.example" })).cn, "a.example", "the other name keeps its certificate");

    const reply = new Promise<string>((resolve) => held.once("data", (d: Buffer) => resolve(d.toString())));
    held.write("a NOOP\r\n");
    assert.equal(await reply, "a OK completed\r\n", "the session opened before the reload goes on");
    held.destroy();
    assert.doesNotMatch(postern.errorLog(), /\[(emerg|alert|crit)\]/);
  } finally {
    await postern.stop();
    pki.remove();
  }
});

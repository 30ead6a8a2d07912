/**
 * Negotiated protocol, cipher, key exchange and certificate, as `openssl s_client`
 * shows them: nginx 1.22.1 and Postern with the same config and client arguments.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { sClient, sView, startPair, type Pair } from "./e2e.js";

const SERVER_CIPHERS = "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305";
const CLIENT_CIPHERS = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES256-GCM-SHA384";
const CLIENT_SUITES = "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384";

describe("negotiated protocol and cipher, nginx vs Postern", () => {
  let pair: Pair;
  before(async () => {
    pair = await startPair(
      ["plain", "off", "on", "dual", "starttls"],
      ({ ports, authUrl, pki }) => `
      auth_http ${authUrl};
      # nginx 1.22.1 also enables TLSv1 TLSv1.1 by default; Postern follows the latest default.
      ssl_protocols TLSv1.2 TLSv1.3;
      server { listen 127.0.0.1:${ports.plain} ssl; protocol imap;
               ssl_certificate ${pki.serverRsa.cert}; ssl_certificate_key ${pki.serverRsa.key}; }
      server { listen 127.0.0.1:${ports.off} ssl; protocol imap;
               ssl_certificate ${pki.serverRsa.cert}; ssl_certificate_key ${pki.serverRsa.key};
               ssl_ciphers ${SERVER_CIPHERS}; ssl_prefer_server_ciphers off; }
      server { listen 127.0.0.1:${ports.on} ssl; protocol imap;
               ssl_certificate ${pki.serverRsa.cert}; ssl_certificate_key ${pki.serverRsa.key};
               ssl_ciphers ${SERVER_CIPHERS}; ssl_prefer_server_ciphers on; }
      server { listen 127.0.0.1:${ports.dual} ssl; protocol imap;
               ssl_certificate ${pki.serverRsa.cert}; ssl_certificate_key ${pki.serverRsa.key};
               ssl_certificate ${pki.serverEcdsa.cert}; ssl_certificate_key ${pki.serverEcdsa.key}; }
      server { listen 127.0.0.1:${ports.starttls}; protocol imap; starttls on;
               ssl_certificate ${pki.serverRsa.cert}; ssl_certificate_key ${pki.serverRsa.key}; }
    `,
    );
  });
  after(async () => {
    await pair?.stop();
  });

  async function compare(port: string, args: string[]): Promise<ReturnType<typeof sView>> {
    const starttls = args.includes("-starttls");
    const steps = starttls ? ["a1 NOOP", /a1 .*\r\n/] : [/\* OK .*\r\n/];
    const r = await pair.both(async (side) => {
      return sView(await sClient(side.ports[port]!, args, steps, { mode: "full" }));
    });
    assert.deepEqual(r.subject, r.nginx);
    assert.ok(r.nginx.session, `a handshake completed on nginx with ${args.join(" ")}`);
    return r.nginx;
  }

  it("client defaults: TLSv1.3", async () => {
    assert.equal((await compare("plain", [])).session?.protocol, "TLSv1.3");
  });
  it("-tls1_2", async () => {
    assert.equal((await compare("plain", ["-tls1_2"])).session?.protocol, "TLSv1.2");
  });
  it("-tls1_3", async () => {
    assert.equal((await compare("plain", ["-tls1_3"])).session?.protocol, "TLSv1.3");
  });
  it("STARTTLS with -tls1_2 and with defaults", async () => {
    assert.equal((await compare("starttls", ["-starttls", "imap", "-tls1_2"])).session?.protocol, "TLSv1.2");
    assert.equal((await compare("starttls", ["-starttls", "imap"])).session?.protocol, "TLSv1.3");
  });
  it("-curves P-384 and -curves X25519", async () => {
    assert.match((await compare("plain", ["-curves", "P-384"])).serverTempKey ?? "", /384/);
    assert.match((await compare("plain", ["-curves", "X25519", "-tls1_2"])).serverTempKey ?? "", /X25519/);
  });

  it("TLS 1.2 client cipher list, ssl_prefer_server_ciphers off: the client order wins", async () => {
    const v = await compare("off", ["-tls1_2", "-cipher", CLIENT_CIPHERS]);
    assert.equal(v.session?.cipher, "ECDHE-RSA-AES128-GCM-SHA256");
  });
  it("TLS 1.2 client cipher list, ssl_prefer_server_ciphers on: the server order wins", async () => {
    const v = await compare("on", ["-tls1_2", "-cipher", CLIENT_CIPHERS]);
    assert.equal(v.session?.cipher, "ECDHE-RSA-AES256-GCM-SHA384");
  });
  it("TLS 1.3 client suites, ssl_prefer_server_ciphers off and on", async () => {
    assert.equal((await compare("off", ["-tls1_3", "-ciphersuites", CLIENT_SUITES])).session?.cipher, "TLS_AES_128_GCM_SHA256");
    assert.equal((await compare("on", ["-tls1_3", "-ciphersuites", CLIENT_SUITES])).session?.cipher, "TLS_AES_256_GCM_SHA384");
  });
  it("a client cipher list the server does not share: refused alike", async () => {
    const r = await pair.both(async (side) => {
      return sView(await sClient(side.ports.off!, ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"], [/\* OK .*\r\n/], { mode: "full" }));
    });
    assert.deepEqual(r.subject, r.nginx);
    assert.equal(r.nginx.session, undefined);
  });

  for (const tls of ["-tls1_2", "-tls1_3"]) {
    it(`RSA + ECDSA certificates selected by -sigalgs (${tls})`, async () => {
      const ec = await compare("dual", [tls, "-sigalgs", "ECDSA+SHA256"]);
      assert.equal(ec.peerSignatureType, "ECDSA");
      assert.equal(ec.serverKeyBits, "256");
      const rsa = await compare("dual", [tls, "-sigalgs", "RSA-PSS+SHA256"]);
      assert.equal(rsa.peerSignatureType, "RSA-PSS");
      assert.equal(rsa.serverKeyBits, "2048");
      await compare("dual", [tls]);
    });
  }
  it("RSA + ECDSA certificates selected by a TLS 1.2 cipher", async () => {
    assert.equal((await compare("dual", ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"])).serverKeyBits, "256");
    assert.equal((await compare("dual", ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"])).serverKeyBits, "2048");
  });
});

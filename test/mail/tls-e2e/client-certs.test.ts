/**
 * Client certificates with ssl_verify_client on/optional/optional_no_ca: what the
 * client is told, and the Auth-SSL-* headers (with auth_http_pass_client_cert)
 * the auth server receives, for good, missing, self-signed, untrusted, expired,
 * revoked and too-deep certificates: nginx 1.22.1 vs Postern.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { certs } from "../../support/certs.js";
import { curl, extraCerts, sClient, sslHeaders, sView, startPair, withAuth, type Pair, type SClientStep } from "./e2e.js";

/** s_client arguments per client certificate. */
function clientArgs(): Record<string, string[]> {
  const pki = certs();
  const x = extraCerts();
  return {
    good: ["-cert", pki.clientValid.cert, "-key", pki.clientValid.key],
    missing: [],
    "self-signed": ["-cert", pki.clientSelfSigned.cert, "-key", pki.clientSelfSigned.key],
    untrusted: ["-cert", x.untrustedCert, "-key", x.untrustedKey],
    expired: ["-cert", pki.clientExpired.cert, "-key", pki.clientExpired.key],
    revoked: ["-cert", pki.clientRevoked.cert, "-key", pki.clientRevoked.key],
    "via intermediate": ["-cert", pki.clientViaIntermediate.cert, "-key", pki.clientViaIntermediate.key, "-cert_chain", pki.intermediate.cert],
    "too deep": ["-cert", x.deepCert, "-key", x.deepKey, "-cert_chain", x.deepChain],
  };
}

const IMPLICIT: SClientStep[] = [/^\* .*\r\n/, "a1 LOGIN user pass", /^a1 .*\r\n/m, "a2 LOGOUT", /^a2 .*\r\n/m];
const STARTTLS: SClientStep[] = ["a1 LOGIN user pass", /^a1 .*\r\n/m, "a2 LOGOUT", /^a2 .*\r\n/m];

describe("client certificates, nginx vs Postern", () => {
  let pair: Pair;
  before(async () => {
    pair = await startPair(
      ["on", "optional", "noca", "nocaNoCrl", "depth1", "depth2", "starttls"],
      ({ ports, authUrl, pki }) => `
      auth_http ${authUrl};
      auth_http_pass_client_cert on;
      ssl_protocols TLSv1.2 TLSv1.3;
      ssl_certificate ${pki.serverRsa.cert};
      ssl_certificate_key ${pki.serverRsa.key};
      ssl_client_certificate ${pki.ca.cert};
      server { listen 127.0.0.1:${ports.on} ssl; protocol imap; ssl_verify_client on; ssl_crl ${pki.crlBundle}; }
      server { listen 127.0.0.1:${ports.optional} ssl; protocol imap; ssl_verify_client optional; ssl_crl ${pki.crlBundle}; }
      server { listen 127.0.0.1:${ports.noca} ssl; protocol imap; ssl_verify_client optional_no_ca; ssl_crl ${pki.crlBundle}; }
      server { listen 127.0.0.1:${ports.nocaNoCrl} ssl; protocol imap; ssl_verify_client optional_no_ca; }
      server { listen 127.0.0.1:${ports.depth1} ssl; protocol imap; ssl_verify_client on; }
      server { listen 127.0.0.1:${ports.depth2} ssl; protocol imap; ssl_verify_client on; ssl_verify_depth 2; }
      server { listen 127.0.0.1:${ports.starttls}; protocol imap; starttls on; ssl_verify_client on; ssl_crl ${pki.crlBundle}; }
    `,
    );
  });
  after(async () => {
    await pair?.stop();
  });

  async function compare(port: string, args: string[], steps: SClientStep[]): Promise<{ appData: string; ssl: Array<Array<[string, string]>> }> {
    const r = await pair.both(async (side) => {
      const { result, auth } = await withAuth(side, () => sClient(side.ports[port]!, args, steps));
      const view = sView(result);
      return { view, auth: auth.map((a) => a.headers) };
    });
    // Reply lines and auth requests first, so a failure says which part differs.
    assert.deepEqual(r.subject.view.appData, r.nginx.view.appData, "reply lines");
    assert.deepEqual(r.subject.auth, r.nginx.auth, "auth_http requests (Auth-SSL-* headers)");
    assert.deepEqual(r.subject, r.nginx, "the whole TLS view, how the connection ended included");
    assert.ok(r.nginx.view.session, "the handshake completed on nginx");
    return {
      appData: r.nginx.view.appData,
      ssl: r.nginx.auth.map((headers) => sslHeaders({ headers } as Parameters<typeof sslHeaders>[0])),
    };
  }

  const names = Object.keys(clientArgs());
  const modes = { on: "on", optional: "optional", noca: "optional_no_ca", nocaNoCrl: "optional_no_ca without ssl_crl" };
  for (const [mode, title] of Object.entries(modes)) {
    for (const name of names) {
      it(`ssl_verify_client ${title}, ${name} certificate`, async () => {
        const r = await compare(mode, clientArgs()[name]!, IMPLICIT);
        if (name === "good") {
          assert.match(r.appData, /^\* OK /);
          assert.deepEqual(
            r.ssl[0]?.find(([k]) => k === "Auth-SSL-Verify"),
            ["Auth-SSL-Verify", "SUCCESS"],
          );
          assert.ok(
            r.ssl[0]?.some(([k]) => k === "Auth-SSL-Cert"),
            "Auth-SSL-Cert sent",
          );
        }
      });
    }
  }

  for (const mode of ["on", "optional", "noca", "starttls"] as const) {
    it(`the CA names a client is offered (${mode})`, async () => {
      const args = mode === "starttls" ? ["-starttls", "imap"] : [];
      const steps = mode === "starttls" ? ["a1 NOOP", /a1 .*\r\n/] : [/\* .*\r\n/];
      const r = await pair.both(async (side) => sView(await sClient(side.ports[mode]!, args, steps, { mode: "full" })));
      assert.deepEqual(r.subject.clientCaNames, r.nginx.clientCaNames, "CA names");
      assert.deepEqual(r.subject, r.nginx, "the whole TLS view, how the connection ended included");
      assert.deepEqual(r.nginx.clientCaNames, ["O = Postern Test, CN = Postern Test CA"]);
    });
  }

  for (const name of ["good", "missing", "untrusted", "expired"]) {
    it(`ssl_verify_client on with TLS 1.2, ${name} certificate`, async () => {
      await compare("on", ["-tls1_2", ...clientArgs()[name]!], IMPLICIT);
    });
  }

  for (const name of ["good", "via intermediate", "too deep"]) {
    it(`ssl_verify_depth 1 (default) and 2, ${name} certificate`, async () => {
      const one = await compare("depth1", clientArgs()[name]!, IMPLICIT);
      const two = await compare("depth2", clientArgs()[name]!, IMPLICIT);
      if (name === "too deep") {
        assert.doesNotMatch(one.appData, /^\* OK /, "depth 3 is refused with ssl_verify_depth 1");
        assert.match(two.appData, /^\* OK /, "depth 3 is accepted with ssl_verify_depth 2");
      }
    });
  }

  for (const name of ["good", "missing", "revoked", "self-signed"]) {
    it(`STARTTLS with ssl_verify_client on, ${name} certificate`, async () => {
      await compare("starttls", ["-starttls", "imap", ...clientArgs()[name]!], STARTTLS);
    });
  }

  it("curl imaps:// with --cert/--key and without, ssl_verify_client on", async () => {
    const pki = certs();
    const r = await pair.both(async (side) => {
      const url = `imaps://127.0.0.1:${side.ports.on}/`;
      const { result: withCert, auth } = await withAuth(side, () =>
        curl([url, "-u", "user:pass", "--cert", pki.clientValid.cert, "--key", pki.clientValid.key]),
      );
      const without = await curl([url, "-u", "user:pass"]);
      return { withCert, without, auth: auth.map((a) => a.headers) };
    });
    assert.deepEqual(r.subject, r.nginx);
    assert.equal(r.nginx.withCert.code, 0);
    assert.notEqual(r.nginx.without.code, 0);
  });
});

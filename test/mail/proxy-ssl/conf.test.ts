/**
 * `postern -t` on the proxy_ssl_* directives: values, files and OpenSSL
 * settings are checked when the configuration is tested, with nginx's
 * wording (file:line for argument errors; merge-time loading errors name
 * the file, as nginx's do), and good configurations pass.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { certs } from "../../support/certs.js";
import { MAIL_MODULE, postern, tempDir, writeFiles } from "../../cli/run-helpers.js";

function check(body: string): { status: number | null; stderr: string; file: string } {
  const { dir, cleanup } = tempDir();
  try {
    const conf = `${MAIL_MODULE}pid nginx.pid;\nevents {}\nmail {\n  auth_http 127.0.0.1:9/auth;\n  ${body}\n  server { listen 127.0.0.1:23001; protocol imap; }\n}\n`;
    writeFiles(dir, { "nginx.conf": conf });
    const r = postern(["-t", "-p", `${dir}/`, "-c", "nginx.conf", "-e", join(dir, "e.log")]);
    return { status: r.status, stderr: r.stderr.replaceAll(dir, "DIR"), file: "DIR/nginx.conf" };
  } finally {
    cleanup();
  }
}

const FAILURES: ReadonlyArray<[string, string]> = [
  ["proxy_ssl maybe;", `invalid value "maybe" in DIR/nginx.conf:6`],
  ["proxy_ssl_verify sometimes;", `invalid value "sometimes" in "proxy_ssl_verify" directive, it must be "on" or "off" in DIR/nginx.conf:6`],
  ["proxy_ssl on; proxy_ssl starttls;", `"proxy_ssl" directive is duplicate in DIR/nginx.conf:6`],
  ["proxy_ssl_name $host;", `variables are not supported in "proxy_ssl_name": "$host" in DIR/nginx.conf:6`],
  ["proxy_ssl_name bad_name!;", `invalid name "bad_name!" in "proxy_ssl_name" directive in DIR/nginx.conf:6`],
  ["proxy_ssl_verify_depth x;", `"proxy_ssl_verify_depth" directive invalid number in DIR/nginx.conf:6`],
  ["proxy_ssl_protocols TLSv1.4;", `invalid value "TLSv1.4" in DIR/nginx.conf:6`],
  ["proxy_ssl_password_file /nonexistent/pass;", `open() "/nonexistent/pass" failed (2: No such file or directory) in DIR/nginx.conf:6`],
  ["proxy_ssl_certificate /etc/hostname;", `no "proxy_ssl_certificate_key" is defined for certificate "/etc/hostname"`],
  [
    "proxy_ssl_certificate /nonexistent.pem; proxy_ssl_certificate_key /nonexistent.key;",
    `cannot load certificate "/nonexistent.pem": BIO_new_file() failed (SSL: error:80000002:system library::No such file or directory:calling fopen(/nonexistent.pem, r) error:10000080:BIO routines::no such file)`,
  ],
  [
    "proxy_ssl_trusted_certificate /nonexistent.pem;",
    `SSL_CTX_load_verify_locations("/nonexistent.pem") failed (SSL: error:80000002:system library::No such file or directory:calling fopen(/nonexistent.pem, r) error:10000080:BIO routines::no such file)`,
  ],
  ["proxy_ssl_conf_command Foo bar;", `SSL_CONF_cmd("Foo", "bar") failed (SSL: error:0A000182:SSL routines::unknown cmd name:cmd=Foo)`],
  ["proxy_ssl_ciphers NOPE;", `SSL_CTX_set_cipher_list("NOPE") failed (SSL: error:0A0000B9:SSL routines::no cipher match)`],
];

for (const [body, message] of FAILURES) {
  test(`-t refuses: ${body}`, () => {
    const r = check(body);
    assert.equal(r.status, 1);
    assert.equal(r.stderr.split("\n")[0], `nginx: [emerg] ${message}`);
  });
}

test("-t accepts a full proxy_ssl setup: client certificate with an encrypted key, CRL, conf command; and the system CA store by default", () => {
  const pki = certs();
  const full = check(`proxy_ssl starttls;
  proxy_ssl_trusted_certificate ${pki.ca.cert};
  proxy_ssl_certificate ${pki.clientValid.cert};
  proxy_ssl_certificate_key ${pki.serverKeyEncrypted};
  proxy_ssl_password_file ${pki.passwordFile};
  proxy_ssl_crl ${pki.crl};
  proxy_ssl_conf_command Ciphersuites TLS_AES_256_GCM_SHA384;
  proxy_ssl_protocols TLSv1.3;
  proxy_ssl_name mail.example.com;
  proxy_ssl_server_name on;
  proxy_ssl_verify_depth 2;
  proxy_ssl_session_reuse off;`);
  // the encrypted key is serverRsa's, so it does not match clientValid: the passphrase was found, then the pair checked
  assert.match(
    full.stderr,
    /SSL_CTX_use_PrivateKey\(".*server-rsa-encrypted\.key"\) failed \(SSL: error:05800074:x509 certificate routines::key values mismatch\)/,
  );
  const ok = check(`proxy_ssl on;
  proxy_ssl_certificate ${pki.serverRsa.cert};
  proxy_ssl_certificate_key ${pki.serverKeyEncrypted};
  proxy_ssl_password_file ${pki.passwordFile};
  proxy_ssl_crl ${pki.crl};`);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stderr, /test is successful/);
});

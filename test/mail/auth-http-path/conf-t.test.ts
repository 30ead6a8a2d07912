/**
 * `-t` on the new auth_http forms, nginx 1.22.1 beside Postern: nginx
 * rejects an https:// URL, several URLs and their parameters; Postern
 * accepts them and loads the auth_http_ssl_* files there, naming file and
 * line when one fails.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { certs } from "../../support/certs.js";
import { MAIL_MODULE, both, tempDir, writeFiles } from "../../cli/run-helpers.js";

function config(mail: string): string {
  return `${MAIL_MODULE}pid test.pid;\nevents {}\nmail {\n${mail}\n    server { listen 127.0.0.1:1143; protocol imap; }\n}\n`;
}

function check(mail: string) {
  const t = tempDir();
  try {
    writeFiles(t.dir, { "nginx.conf": config(mail) });
    const r = both(t.dir, ["-t"]);
    return { ...r, dir: t.dir };
  } finally {
    t.cleanup();
  }
}

test("-t: nginx 1.22.1 rejects https:// auth_http URLs; Postern accepts them and checks the auth_http_ssl_* files", () => {
  const pki = certs();
  const ok = check(`    auth_http https://127.0.0.1:9443/auth;\n    auth_http_ssl_trusted_certificate ${pki.ca.cert};`);
  assert.match(ok.nginx.stderr, /invalid port in auth_http "https:\/\/127\.0\.0\.1:9443\/auth"/);
  assert.equal(ok.postern.status, 0, ok.postern.stderr);
  const bad = check(`    auth_http https://127.0.0.1:9443/auth;\n    auth_http_ssl_trusted_certificate /nonexistent/ca.pem;`);
  assert.notEqual(bad.postern.status, 0);
  assert.match(bad.postern.stderr, /SSL_CTX_load_verify_locations\("\/nonexistent\/ca\.pem"\) failed .* in .*nginx\.conf:6/);
  const key = check(`    auth_http https://127.0.0.1:9443/auth;\n    auth_http_ssl_certificate ${pki.clientValid.cert};`);
  assert.match(key.postern.stderr, /no "auth_http_ssl_certificate_key" is defined for certificate .* in .*nginx\.conf:6/);
});

test("-t: several URLs and max_fails/fail_timeout: nginx refuses them, Postern accepts; bad parameters name the line", () => {
  const group = check("    auth_http 127.0.0.1:9000/auth 127.0.0.1:9001/auth max_fails=2 fail_timeout=30s;");
  assert.notEqual(group.nginx.status, 0);
  assert.match(group.nginx.stderr, /invalid number of arguments in "auth_http" directive/);
  assert.equal(group.postern.status, 0, group.postern.stderr);
  const bad = check("    auth_http 127.0.0.1:9000/auth fail_timeout=soon;");
  assert.match(bad.postern.stderr, /invalid parameter "fail_timeout=soon" in .*nginx\.conf:5/);
  const cache = check("    auth_http 127.0.0.1:9000/auth;\n    auth_http_keepalive 8;\n    auth_http_cache zone=auth:1m ok=30s fail=0;");
  assert.equal(cache.postern.status, 0, cache.postern.stderr);
  assert.match(cache.nginx.stderr, /unknown directive "auth_http_keepalive"/);
});

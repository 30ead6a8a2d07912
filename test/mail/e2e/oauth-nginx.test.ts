/**
 * Where nginx 1.22.1 stands on OAuth: it knows neither mechanism nor
 * pop3_client_buffer, so `nginx -t` refuses them (naming file and line)
 * while Postern takes them; and an unknown mechanism word is refused by
 * both in the same words. The POP3 128-byte line of configurations without
 * the new words is the existing differential tests' (wire-nginx, matrix).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { MAIL_MODULE, both, tempDir, writeFiles } from "../../cli/run-helpers.js";

const HEAD = `${MAIL_MODULE}pid nginx.pid;\nevents {}\n`;
const mail = (body: string): string => `${HEAD}mail {\n  auth_http 127.0.0.1:9/auth;\n${body}\n}\n`;

function check(conf: string): ReturnType<typeof both> {
  const { dir, cleanup } = tempDir();
  try {
    writeFiles(dir, { "nginx.conf": conf });
    return both(dir, ["-t", "-q"]);
  } finally {
    cleanup();
  }
}

for (const [directive, line] of [
  ["imap_auth", "  server { listen 127.0.0.1:23001; protocol imap; imap_auth plain oauthbearer; }"],
  ["pop3_auth", "  server { listen 127.0.0.1:23001; protocol pop3; pop3_auth xoauth2; }"],
  ["smtp_auth", "  server { listen 127.0.0.1:23001; protocol smtp; smtp_auth login xoauth2 oauthbearer; }"],
] as const) {
  test(`${directive} with an OAuth mechanism: nginx 1.22.1 -t refuses the value, Postern takes it`, () => {
    const r = check(mail(line));
    assert.notEqual(r.nginx.status, 0);
    assert.match(r.nginx.stderr, /\[emerg\] invalid value "(oauthbearer|xoauth2)" in \S*nginx\.conf:6\n/);
    assert.equal(r.postern.status, 0, r.postern.stderr);
  });
}

test("pop3_client_buffer: unknown to nginx 1.22.1, a size directive in Postern (invalid value named with file and line)", () => {
  const r = check(mail("  pop3_client_buffer 8k;\n  server { listen 127.0.0.1:23001; protocol pop3; }"));
  assert.match(r.nginx.stderr, /unknown directive "pop3_client_buffer" in \S*nginx\.conf:6\n/);
  assert.equal(r.postern.status, 0, r.postern.stderr);
  const bad = check(mail("  pop3_client_buffer lots;\n  server { listen 127.0.0.1:23001; protocol pop3; }"));
  assert.notEqual(bad.postern.status, 0);
  assert.match(bad.postern.stderr, /"pop3_client_buffer" directive invalid value in \S*nginx\.conf:6\n/);
});

test("an unknown mechanism word is refused by both with the same message", () => {
  const r = check(mail("  server { listen 127.0.0.1:23001; protocol imap; imap_auth xoauth; }"));
  assert.notEqual(r.nginx.status, 0);
  assert.equal(r.postern.stderr, r.nginx.stderr);
});

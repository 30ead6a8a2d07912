/**
 * `postern -t` on the shared store's configuration: a `sync` zone without
 * shared_store names the zone and its file and line; bad shared_store
 * parameters and a short secret file are refused with file and line; a
 * correct configuration (the same zones with a store) passes, and `sync`
 * given to a zone as garbage is refused.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { MAIL_MODULE, postern, tempDir, writeFiles } from "../../cli/run-helpers.js";

const SECRET = "0123456789abcdef0123456789abcdef0123456789";

function check(mail: string, files: Record<string, string> = {}): { status: number | null; stderr: string } {
  const { dir, cleanup } = tempDir();
  try {
    const conf = `${MAIL_MODULE}pid store.pid;\nevents {}\nmail {\n  auth_http 127.0.0.1:9/auth;\n${mail}\n  server { listen 127.0.0.1:18143; protocol imap; }\n}\n`;
    writeFiles(dir, { "nginx.conf": conf, "store.secret": SECRET, ...files });
    const p = postern(["-t", "-p", dir + "/", "-c", "nginx.conf", "-e", join(dir, "e.log")]);
    return { status: p.status, stderr: p.stderr.replaceAll(dir + "/", "PREFIX/") };
  } finally {
    cleanup();
  }
}

const FAILS: ReadonlyArray<[string, string, Record<string, string>, RegExp]> = [
  [
    "limit_conn_zone sync without shared_store",
    "  limit_conn_zone $binary_remote_addr zone=addr:32k sync;",
    {},
    /\[emerg\] "limit_conn_zone" zone "addr" is "sync" but no "shared_store" is configured in PREFIX\/nginx\.conf:6\n/,
  ],
  [
    "auth_fail_zone sync without shared_store",
    "  auth_fail_zone zone=fails:32k window=1m sync;",
    {},
    /"auth_fail_zone" zone "fails" is "sync" but no "shared_store" is configured in PREFIX\/nginx\.conf:6\n/,
  ],
  [
    "auth_http_cache sync without shared_store",
    "\n  auth_http_cache zone=answers:64k sync;",
    {},
    /"auth_http_cache" zone "answers" is "sync" but no "shared_store" is configured in PREFIX\/nginx\.conf:7\n/,
  ],
  [
    "a garbage zone parameter",
    "  limit_conn_zone $binary_remote_addr zone=addr:32k syncx;",
    {},
    /\[emerg\] invalid number of arguments in "limit_conn_zone" directive in PREFIX\/nginx\.conf:6\n/,
  ],
  [
    "a short secret file",
    "  shared_store redis 127.0.0.1:6379 secret_file=short;",
    { short: "too short" },
    /"PREFIX\/short" must hold at least 32 bytes in PREFIX\/nginx\.conf:6\n/,
  ],
  ["no secret file", "  shared_store redis 127.0.0.1:6379;", {}, /"shared_store" must have "secret_file" parameter in PREFIX\/nginx\.conf:6\n/],
  [
    "a bad timeout",
    "  shared_store redis 127.0.0.1:6379 secret_file=store.secret timeout=10s;",
    {},
    /invalid parameter "timeout=10s" in PREFIX\/nginx\.conf:6\n/,
  ],
  ["a bad port", "  shared_store redis 127.0.0.1:99999 secret_file=store.secret;", {}, /invalid port in "127\.0\.0\.1:99999" in PREFIX\/nginx\.conf:6\n/],
  [
    "another store type",
    "  shared_store memcached 127.0.0.1 secret_file=store.secret;",
    {},
    /invalid store type "memcached", only "redis" is supported in PREFIX\/nginx\.conf:6\n/,
  ],
  ["an unknown parameter", "  shared_store redis 127.0.0.1 secret_file=store.secret pool=4;", {}, /invalid parameter "pool=4" in PREFIX\/nginx\.conf:6\n/],
  [
    "a missing password file",
    "  shared_store redis 127.0.0.1 secret_file=store.secret password_file=nope;",
    {},
    /open\(\) "PREFIX\/nope" failed \(2: No such file or directory\) in PREFIX\/nginx\.conf:6\n/,
  ],
];

for (const [name, mail, files, re] of FAILS) {
  test(`-t refuses ${name}, with file and line`, () => {
    const p = check(mail, files);
    assert.match(p.stderr, re);
    assert.match(p.stderr, /test failed\n$/);
    assert.equal(p.status, 1);
  });
}

test("-t accepts the sync zones with a shared_store", () => {
  const p = check(
    [
      "  shared_store redis 127.0.0.1:6379 secret_file=store.secret timeout=50ms prefix=c1: password_file=pass;",
      "  limit_conn_zone $binary_remote_addr zone=addr:32k sync;",
      "  auth_fail_zone zone=fails:32k sync;",
      "  auth_http_cache zone=answers:64k ok=30s sync;",
    ].join("\n"),
    { pass: "p\n" },
  );
  assert.equal(p.status, 0, p.stderr);
  assert.match(p.stderr, /test is successful\n$/);
});

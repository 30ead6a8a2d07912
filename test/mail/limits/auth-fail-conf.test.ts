/**
 * auth_fail_zone, auth_fail_throttle and auth_fail_log_level: accepted
 * forms and their errors, worded as nginx's limit modules word theirs,
 * with file and line.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfError } from "../../../src/core/errors.js";
import { parseConfiguration } from "../../../src/conf/engine.js";
import { confModules } from "../../../src/modules.js";
import { mailDirective } from "../../../src/mail/block.js";
import { authThrottle } from "../../../src/mail/limits/auth-fail-module.js";

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), "postern-authfail-conf-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** Line 3 holds `mail`-level text, line 4 the server's. */
function parse(mailLevel: string, serverLevel = ""): string {
  const file = join(dir, "t.conf");
  writeFileSync(file, `events {}\nmail {\n${mailLevel}\nserver { listen 127.0.0.1:1; protocol imap; auth_http 127.0.0.1:9/a; ${serverLevel} }\n}\n`);
  try {
    const servers = parseConfiguration({ prefix: `${dir}/`, file }, confModules(), () => {}).main.own(mailDirective)!.servers;
    const t = authThrottle(servers[0]!);
    return t ? `ok ${t.failZone.name} ${t.failZone.windowMs} ${t.delayAfter} ${t.delayMs} ${t.maxDelayMs} ${t.refuseAfter}` : "ok off";
  } catch (e) {
    if (e instanceof ConfError) return e.text.replace(file, "FILE");
    throw e;
  }
}

test("accepted forms, defaults and inheritance", () => {
  assert.equal(parse("auth_fail_zone zone=f:32k;"), "ok off");
  assert.equal(parse("auth_fail_zone zone=f:32k; auth_fail_throttle f;"), "ok f 600000 3 1000 30000 0");
  assert.equal(
    parse("auth_fail_zone zone=f:1m window=1h; auth_fail_throttle f delay_after=5 delay=500ms max_delay=1m refuse_after=50;"),
    "ok f 3600000 5 500 60000 50",
  );
  assert.equal(parse("auth_fail_zone zone=f:32k; auth_fail_throttle f;", "auth_fail_throttle off;"), "ok off");
  assert.equal(parse("auth_fail_zone zone=f:32k;", "auth_fail_throttle f refuse_after=2; auth_fail_log_level info;"), "ok f 600000 3 1000 30000 2");
});

test("errors name the file and line", () => {
  assert.equal(parse("auth_fail_zone zone=f:1k;"), 'zone "zone=f:1k" is too small in FILE:3');
  assert.equal(parse("auth_fail_zone zone=f;"), 'invalid zone size "zone=f" in FILE:3');
  assert.equal(parse("auth_fail_zone window=1m;"), '"auth_fail_zone" must have "zone" parameter in FILE:3');
  assert.equal(parse("auth_fail_zone zone=f:32k window=0;"), 'invalid window "window=0" in FILE:3');
  assert.equal(parse("auth_fail_zone zone=f:32k foo=1;"), 'invalid parameter "foo=1" in FILE:3');
  assert.equal(
    parse("auth_fail_zone zone=f:32k; auth_fail_zone zone=f:64k;"),
    'the size 65536 of shared memory zone "f" conflicts with already declared size 32768 in FILE:3',
  );
  assert.equal(parse("auth_fail_zone zone=f:32k;", "auth_fail_zone zone=g:32k;"), '"auth_fail_zone" directive is not allowed here in FILE:4');
  assert.equal(parse("auth_fail_zone zone=f:32k;", "auth_fail_throttle f delay_after=0;"), 'invalid number "delay_after=0" in FILE:4');
  assert.equal(parse("auth_fail_zone zone=f:32k;", "auth_fail_throttle f delay=x;"), 'invalid time "delay=x" in FILE:4');
  assert.equal(parse("auth_fail_zone zone=f:32k;", "auth_fail_throttle f delay=10s max_delay=1s;"), '"max_delay" must not be less than "delay" in FILE:4');
  assert.equal(parse("auth_fail_zone zone=f:32k;", "auth_fail_throttle off f;"), 'invalid parameter "f" in FILE:4');
  assert.equal(parse("auth_fail_zone zone=f:32k;", "auth_fail_log_level debug;"), 'invalid value "debug" in FILE:4');
  assert.equal(parse("", "auth_fail_throttle nozone;"), 'unknown auth_fail_zone "nozone" for server in FILE:4');
});

/**
 * log_format / access_log errors, compared with nginx's own stream module
 * (ngx_stream_log_module, loaded from ngx_stream_module.so): the same lines
 * in `stream {}` for nginx and in `mail {}` for Postern give the same
 * message at the same line. One deliberate difference: an unknown variable
 * names the file and line here (nginx reports it after parsing, without one).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfError } from "../../../src/core/errors.js";
import { parseConfiguration } from "../../../src/conf/engine.js";
import { coreModule } from "../../../src/core/core-module.js";
import { mailBlockModule } from "../../../src/mail/block.js";
import { MAIL_MODULES } from "../../../src/mail/mail-modules.js";

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), "postern-access-log-conf-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function nginxSays(name: string, body: string): string {
  const file = join(dir, `${name}.stream.conf`);
  writeFileSync(file, `load_module /usr/lib/nginx/modules/ngx_stream_module.so;\nevents {}\nstream {\n${body}\nserver { listen 127.0.0.1:1; return x; }\n}\n`);
  const r = spawnSync("/usr/sbin/nginx", ["-t", "-p", `${dir}/`, "-c", file, "-e", join(dir, "error.log")], { encoding: "latin1" });
  const line = r.stderr.split("\n").find((l) => l.includes("[emerg]")) ?? "";
  return line.replace(/^nginx: \[emerg\] /, "").replace(file, "FILE");
}

function weSay(name: string, body: string): string {
  const file = join(dir, `${name}.mail.conf`);
  writeFileSync(
    file,
    `load_module /usr/lib/nginx/modules/ngx_mail_module.so;\nevents {}\nmail {\n${body}\nserver { listen 127.0.0.1:1; protocol imap; auth_http 127.0.0.1:9/auth; }\n}\n`,
  );
  try {
    parseConfiguration({ prefix: `${dir}/`, file }, [coreModule, mailBlockModule, ...MAIL_MODULES], () => {});
    return "";
  } catch (e) {
    if (e instanceof ConfError) return e.text.replace(file, "FILE");
    throw e;
  }
}

const F = `log_format f "$remote_addr";`;
const BAD: Array<[string, string]> = [
  ["unknown-format", `${F} access_log x.log g;`],
  ["no-format", `${F} access_log x.log;`],
  ["flush-without-buffer", `${F} access_log x.log f flush=1s;`],
  ["unknown-escaping", `log_format f escape=xml "$remote_addr";`],
  ["closing-bracket", `log_format f "\${remote_addr";`],
  ["off-with-parameter", `${F} access_log off f;`],
  ["zero-buffer", `${F} access_log x.log f buffer=0;`],
  ["bad-flush", `${F} access_log x.log f buffer=4k flush=0;`],
  ["duplicate-format", `${F} log_format f "$pid";`],
  ["unknown-parameter", `${F} access_log x.log f foo=1;`],
  ["buffered-syslog", `${F} access_log syslog:server=127.0.0.1 f buffer=4k;`],
  ["lone-dollar", `log_format f "$";`],
  ["bad-gzip-level", `${F} access_log x.log f gzip=12;`],
  ["conflicting-buffers", `${F} access_log x.log f buffer=4k; access_log x.log f buffer=8k;`],
  ["format-after-use", `access_log x.log f; ${F}`],
  ["log-format-in-server", `server { log_format f "$pid"; }`],
];

for (const [name, body] of BAD) {
  test(`config error as nginx's stream module: ${name}`, () => {
    const theirs = nginxSays(name, body);
    assert.notEqual(theirs, "", "nginx refuses it");
    assert.equal(weSay(name, body), theirs);
  });
}

test("an unknown variable is refused with nginx's words, plus the file and line", () => {
  const body = `log_format f '$remote_addr $foo';`;
  assert.equal(nginxSays("unknown-variable", body), 'unknown "foo" variable');
  assert.equal(weSay("unknown-variable", body), 'unknown "foo" variable in FILE:4');
  assert.equal(weSay("unknown-if-variable", `${F} access_log x.log f if=$bar;`), 'unknown "bar" variable in FILE:4');
});

test("the formats and parameters nginx accepts are accepted", () => {
  const body = `log_format f escape=json '{"a":"$remote_addr","l":"$mail_login"}'; log_format g escape=none $pid; access_log x.log f buffer=8k flush=1s if=$mail_login; access_log y.log g gzip=9; access_log syslog:server=127.0.0.1:5514,tag=mail g;`;
  assert.equal(nginxSays("good", body.replace(/\$mail_login/g, "$remote_addr")), "");
  assert.equal(weSay("good", body), "");
});

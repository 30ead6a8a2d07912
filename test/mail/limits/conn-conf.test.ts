/**
 * limit_conn_zone, limit_conn and limit_conn_log_level in `mail {}` say what
 * nginx's stream module says for the same lines: each case is written once
 * into a `stream {}` file for `nginx -t` (the oracle, with
 * ngx_stream_module) and into a `mail {}` file for Postern, line for line,
 * and the error texts, locations included, must be equal.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfError } from "../../../src/core/errors.js";
import { parseConfiguration } from "../../../src/conf/engine.js";
import { confModules } from "../../../src/modules.js";
import { mailDirective } from "../../../src/mail/block.js";
import { connLimits } from "../../../src/mail/limits/conn-module.js";

const STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so";
let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), "postern-limit-conf-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** Both files: the same lines at the same line numbers. */
function files(name: string, mailLevel: string, serverLevel: string): { nginx: string; ours: string } {
  const nginx = join(dir, `${name}.nginx`);
  const ours = join(dir, `${name}.ours`);
  writeFileSync(nginx, `load_module ${STREAM_MODULE};\nevents {}\nstream {\n${mailLevel}\nserver { listen 127.0.0.1:1; return x;\n${serverLevel}\n}\n}\n`);
  writeFileSync(
    ours,
    `load_module /usr/lib/nginx/modules/ngx_mail_module.so;\nevents {}\nmail {\n${mailLevel}\nserver { listen 127.0.0.1:1; protocol imap; auth_http 127.0.0.1:9/a;\n${serverLevel}\n}\n}\n`,
  );
  return { nginx, ours };
}

/** nginx -t's [emerg] line, its file reduced to the line number; "ok" when the test passes. */
function nginxSays(file: string): string {
  const r = spawnSync("/usr/sbin/nginx", ["-t", "-p", `${dir}/`, "-c", file, "-e", join(dir, "error.log")], { encoding: "latin1" });
  const line = r.stderr.split("\n").find((l) => l.includes("[emerg]"));
  return line === undefined ? "ok" : line.replace(/^nginx: \[emerg\] /, "").replace(` in ${file}:`, " in :");
}

function weSay(file: string): string {
  try {
    parseConfiguration({ prefix: `${dir}/`, file }, confModules(), () => {});
    return "ok";
  } catch (e) {
    if (e instanceof ConfError) return e.text.replace(` in ${file}:`, " in :");
    throw e;
  }
}

const ZONE = "limit_conn_zone $binary_remote_addr zone=a:32k;";
const CASES: ReadonlyArray<[name: string, mailLevel: string, serverLevel: string]> = [
  ["valid", `${ZONE} limit_conn_log_level info;`, "limit_conn a 1; limit_conn_log_level warn;"],
  [
    "empty key, text and variables",
    'limit_conn_zone "" zone=a:32k; limit_conn_zone x${remote_addr}:$server_port zone=b:64k; limit_conn a 1;',
    "limit_conn b 2;",
  ],
  ["zone too small", "limit_conn_zone $binary_remote_addr zone=a:1k;", ""],
  ["zone without size", "limit_conn_zone $binary_remote_addr zone=a;", ""],
  ["bad size", "limit_conn_zone $binary_remote_addr zone=a:xx;", ""],
  ["unknown parameter", "limit_conn_zone $binary_remote_addr foo=a:32k;", ""],
  ["one argument", "limit_conn_zone $binary_remote_addr;", ""],
  ["three arguments", "limit_conn_zone $binary_remote_addr zone=a:32k zone=b:32k;", ""],
  ["no zone name", "limit_conn_zone $binary_remote_addr zone=:32k;", ""],
  ["unknown variable", "limit_conn_zone $bogus zone=a:32k;", ""],
  ["lone dollar", "limit_conn_zone $ zone=a:32k;", ""],
  ["unclosed bracket", "limit_conn_zone ${abc zone=a:32k;", ""],
  ["zone bound twice", `${ZONE} limit_conn_zone $remote_addr zone=a:32k;`, ""],
  ["zone size conflict", `${ZONE} limit_conn_zone $remote_addr zone=a:64k;`, ""],
  ["zero connections", ZONE, "limit_conn a 0;"],
  ["too many connections", ZONE, "limit_conn a 65536;"],
  ["not a number", ZONE, "limit_conn a x;"],
  ["duplicate limit_conn", ZONE, "limit_conn a 1; limit_conn a 2;"],
  ["undeclared zone", "", "limit_conn b 1;"],
  ["bad log level", ZONE, "limit_conn_log_level debug;"],
  ["zone in server", "", ZONE],
  ["limit_conn arity", ZONE, "limit_conn a;"],
];

for (const [name, mailLevel, serverLevel] of CASES) {
  test(`limit_conn configuration, as nginx's stream module: ${name}`, () => {
    assert.ok(existsSync(STREAM_MODULE), `nginx's stream module is missing (${STREAM_MODULE}: Debian's libnginx-mod-stream)`);
    const { nginx, ours } = files(name.replace(/\W+/g, "-"), mailLevel, serverLevel);
    assert.equal(weSay(ours), nginxSays(nginx));
  });
}

test("limits are inherited only by a level without its own limit_conn; several per level all apply", () => {
  const { ours } = files("inherit", `${ZONE} limit_conn_zone $server_addr zone=s:32k; limit_conn a 3;`, "limit_conn s 5; limit_conn a 4;");
  writeFileSync(
    ours,
    `events {}\nmail {\n${ZONE} limit_conn_zone $server_addr zone=s:32k; limit_conn a 3;\nauth_http 127.0.0.1:9/a;\nserver { listen 127.0.0.1:1; protocol imap; limit_conn s 5; limit_conn a 4; }\nserver { listen 127.0.0.1:2; protocol pop3; }\n}\n`,
  );
  const parsed = parseConfiguration({ prefix: `${dir}/`, file: ours }, confModules(), () => {});
  const [own, inherited] = parsed.main.own(mailDirective)!.servers;
  assert.deepEqual(
    connLimits(own!).map((l) => [l.zone.name, l.conn]),
    [
      ["s", 5],
      ["a", 4],
    ],
  );
  assert.deepEqual(
    connLimits(inherited!).map((l) => [l.zone.name, l.conn]),
    [["a", 3]],
  );
});

test("more limit_conn lines on one level than one store request carries: refused with file and line (nginx has no bound; Postern's master would drop the request)", () => {
  const zones = Array.from({ length: 65 }, (_, i) => `limit_conn_zone $binary_remote_addr zone=z${i}:32k;`).join("\n");
  const limits = Array.from({ length: 65 }, (_, i) => `limit_conn z${i} 1;`).join(" ");
  const { ours } = files("too-many", zones, limits);
  assert.equal(weSay(ours), `too many "limit_conn" directives, at most 64 in :${65 + 5}`);
  const { ours: sixtyFour } = files("sixty-four", zones, Array.from({ length: 64 }, (_, i) => `limit_conn z${i} 1;`).join(" "));
  assert.equal(weSay(sixtyFour), "ok");
});

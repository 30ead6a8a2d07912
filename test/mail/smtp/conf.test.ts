/**
 * The smtp_* directives: accepted values and nginx's exact error messages,
 * checked against `nginx -t` (the oracle) for the same file.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfError } from "../../../src/core/errors.js";
import { parseConfiguration } from "../../../src/conf/engine.js";
import { ServerConf } from "../../../src/conf/directive.js";
import { mailBlockModule, mailDirective } from "../../../src/mail/block.js";
import { MAIL_MODULES } from "../../../src/mail/mail-modules.js";
import { smtpWire } from "../../../src/mail/smtp/module.js";
import type { MailServer } from "../../../src/mail/server.js";

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), "postern-smtp-conf-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const PREAMBLE = "load_module /usr/lib/nginx/modules/ngx_mail_module.so;\nevents {}\n";

function write(name: string, mail: string): string {
  const file = join(dir, name);
  writeFileSync(file, `${PREAMBLE}mail {\n  auth_http 127.0.0.1:9/auth;\n${mail}\n}\n`);
  return file;
}

/** nginx -t's first [emerg]/[warn] lines, without the `nginx: [level] ` prefix. */
function nginxSays(file: string): string[] {
  const r = spawnSync("/usr/sbin/nginx", ["-t", "-p", `${dir}/`, "-c", file, "-e", join(dir, "error.log")], { encoding: "latin1" });
  return r.stderr
    .split("\n")
    .filter((l) => /\[(emerg|warn)\]/.test(l))
    .map((l) => l.replace(/^nginx: \[\w+\] /, ""));
}

/** Our parse of the same file: the error text, or the warnings; plus the servers. */
function weSay(file: string): { lines: string[]; servers: readonly MailServer[] } {
  const warnings: string[] = [];
  try {
    const parsed = parseConfiguration({ prefix: `${dir}/`, file }, [mailBlockModule, ...MAIL_MODULES], (w) => warnings.push(w));
    const mail = parsed.main.own(mailDirective);
    return { lines: warnings, servers: mail?.servers ?? [] };
  } catch (e) {
    if (e instanceof ConfError) return { lines: [...warnings, e.text], servers: [] };
    throw e;
  }
}

function mailOnly(name: string, mail: string): string {
  const file = join(dir, `${name}.ours`);
  writeFileSync(file, `mail {\n  auth_http 127.0.0.1:9/auth;\n${mail}\n}\n`);
  return file;
}

const BAD: Array<[string, string]> = [
  ["unknown-method", "  smtp_auth plain foo;\n  server { listen 127.0.0.1:2525; protocol smtp; }"],
  ["duplicate-buffer", "  smtp_client_buffer 4k;\n  smtp_client_buffer 8k;\n  server { listen 127.0.0.1:2525; protocol smtp; }"],
  ["bad-size", "  server { listen 127.0.0.1:2525; protocol smtp; smtp_client_buffer 4q; }"],
  ["bad-delay", "  server { listen 127.0.0.1:2525; protocol smtp; smtp_greeting_delay soon; }"],
  ["no-capabilities", "  server { listen 127.0.0.1:2525; protocol smtp; smtp_capabilities; }"],
  ["no-auth", "  smtp_auth;\n  server { listen 127.0.0.1:2525; protocol smtp; }"],
  ["too-many-arguments", "  server { listen 127.0.0.1:2525; protocol smtp; }\n  smtp_greeting_delay 1s 2s;"],
];

for (const [name, body] of BAD) {
  test(`config error as nginx: ${name}`, () => {
    const theirs = nginxSays(write(`${name}.conf`, body)).map((l) => l.replace(`${dir}/${name}.conf:`, "FILE:"));
    // our file has no load_module, events and auth_http lines: shift line numbers by three
    const ours = weSay(mailOnly(name, body)).lines.map((l) =>
      l.replace(new RegExp(`${dir}/${name}\\.ours:(\\d+)`), (_m, n: string) => `FILE:${Number(n) + 2}`),
    );
    assert.ok(theirs.length > 0, "nginx reports something");
    assert.deepEqual(ours, theirs);
  });
}

test("duplicate smtp_auth words warn as nginx", () => {
  const body = "  smtp_auth plain plain login;\n  server { listen 127.0.0.1:2525; protocol smtp; }";
  const theirs = nginxSays(write("dup-word.conf", body)).map((l) => l.replace(`${dir}/dup-word.conf:`, "FILE:"));
  const ours = weSay(mailOnly("dup-word", body)).lines.map((l) =>
    l.replace(new RegExp(`${dir}/dup-word\\.ours:(\\d+)`), (_m, n: string) => `FILE:${Number(n) + 2}`),
  );
  assert.deepEqual(ours, theirs);
});

test("values merge from mail to server; a server's smtp_auth replaces the mail level's", () => {
  const { servers } = weSay(
    mailOnly(
      "merge",
      [
        "  server_name mx.example.test;",
        '  smtp_auth cram-md5;\n  smtp_auth none;\n  smtp_capabilities "SIZE 100" 8BITMIME;\n  smtp_greeting_delay 1s;',
        "  server { listen 127.0.0.1:2525; protocol smtp; }",
        "  server { listen 127.0.0.1:2526; protocol smtp; smtp_auth login; smtp_capabilities X; smtp_client_buffer 8k; }",
      ].join("\n"),
    ),
  );
  assert.equal(servers.length, 2);
  const [a, b] = servers.map((s) => smtpWire(s));
  assert.equal(a!.ehlo, "250-mx.example.test\r\n250-SIZE 100\r\n250-8BITMIME\r\n250 AUTH CRAM-MD5\r\n");
  assert.deepEqual([...a!.authMethods].sort(), ["cram-md5", "none"]);
  assert.equal(a!.greetingDelay, 1000);
  assert.equal(a!.bufferSize, 4096);
  assert.equal(b!.ehlo, "250-mx.example.test\r\n250-X\r\n250 AUTH LOGIN\r\n");
  assert.equal(b!.bufferSize, 8192);
  assert.equal(b!.greetingDelay, 1000);
  assert.ok(servers[0]!.conf instanceof ServerConf);
});

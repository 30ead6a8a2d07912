/**
 * `-t` on configurations with servers sharing a listen address
 * (docs/sni.md#configuration-rules): what nginx rejects in the same words
 * where nginx has the case (two servers on an address without TLS), and
 * Postern's own errors, with file and line, where it accepts more.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { posternCommand } from "../../support/postern.js";
import { namedCerts } from "./sni-helpers.js";

let dir: string;
let pki: ReturnType<typeof namedCerts>;
let conf: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), "postern-sni-conf-"));
  pki = namedCerts(["a.example", "b.example"]);
  conf = join(dir, "nginx.conf");
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
  pki.remove();
});

const tls = (name: string): string => `ssl_certificate ${pki.certs[name]!.cert}; ssl_certificate_key ${pki.certs[name]!.key};`;

/** Writes a configuration whose mail block holds `servers` (one per line, from line 6 on). */
function write(servers: readonly string[]): void {
  const head = ["load_module /usr/lib/nginx/modules/ngx_mail_module.so;", `pid ${join(dir, "nginx.pid")};`, "events {}", "mail {", "auth_http 127.0.0.1:1/;"];
  writeFileSync(conf, [...head, ...servers, "}", ""].join("\n"));
}

/** The `[emerg]`/`[warn]` messages of a `-t` run, and whether it passed. */
function check(command: readonly string[]): { ok: boolean; lines: string[] } {
  const [bin, ...pre] = command;
  const r = spawnSync(bin!, [...pre, "-t", "-p", `${dir}/`, "-c", conf], { encoding: "utf8" });
  const lines = r.stderr
    .split("\n")
    .map((l) => /\[(emerg|warn)\] (?:\d+#\d+: )?(.*)$/.exec(l))
    .filter((m) => m !== null)
    .map((m) => `[${m[1]}] ${m[2]}`);
  return { ok: r.status === 0, lines };
}

const postern = (): { ok: boolean; lines: string[] } => check(posternCommand());
const nginx = (): { ok: boolean; lines: string[] } => check(["nginx"]);

describe("servers sharing a listen address", () => {
  test("without TLS on every one of them: nginx's duplicate error, word for word", () => {
    execFileSync("nginx", ["-v"], { stdio: "ignore" });
    write([
      `server { listen 127.0.0.1:1993; protocol imap; server_name a.example; }`,
      `server { listen 127.0.0.1:1993; protocol imap; server_name b.example; ${tls("b.example")} starttls on; }`,
    ]);
    const n = nginx();
    assert.deepEqual(n.lines, [`[emerg] duplicate "127.0.0.1:1993" address and port pair in ${conf}:7`]);
    assert.deepEqual(postern(), n);
  });

  test("all with TLS: accepted, where nginx refuses (and several names, default_server)", () => {
    write([
      `server { listen 127.0.0.1:1993 ssl; protocol imap; server_name a.example www.a.example; ${tls("a.example")} }`,
      `server { listen 127.0.0.1:1993 ssl default_server; protocol imap; server_name b.example *.b.example mail.*; ${tls("b.example")} }`,
    ]);
    assert.deepEqual(postern(), { ok: true, lines: [] });
    assert.equal(nginx().ok, false);
  });

  const refused: readonly (readonly [string, readonly string[], string])[] = [
    [
      "different protocols",
      [
        `server { listen 127.0.0.1:1993 ssl; protocol imap; server_name a.example; ${tls("a.example")} }`,
        `server { listen 127.0.0.1:1993 ssl; protocol pop3; server_name b.example; ${tls("b.example")} }`,
      ],
      `the protocol of the servers sharing "127.0.0.1:1993" differs in CONF:7`,
    ],
    [
      "different listen parameters",
      [
        `server { listen 127.0.0.1:1993 ssl; protocol imap; server_name a.example; ${tls("a.example")} }`,
        `server { listen 127.0.0.1:1993 ssl proxy_protocol; protocol imap; server_name b.example; ${tls("b.example")} }`,
      ],
      `the "listen" parameters of "127.0.0.1:1993" differ from those of the server sharing it in CONF:7`,
    ],
    [
      "implicit TLS on one, STARTTLS on the other",
      [
        `server { listen 127.0.0.1:1993 ssl; protocol imap; server_name a.example; ${tls("a.example")} }`,
        `server { listen 127.0.0.1:1993; protocol imap; starttls on; server_name b.example; ${tls("b.example")} }`,
      ],
      `the "listen" parameters of "127.0.0.1:1993" differ from those of the server sharing it in CONF:7`,
    ],
    [
      "two default servers",
      [
        `server { listen 127.0.0.1:1993 ssl default_server; protocol imap; server_name a.example; ${tls("a.example")} }`,
        `server { listen 127.0.0.1:1993 ssl default_server; protocol imap; server_name b.example; ${tls("b.example")} }`,
      ],
      `a duplicate default server for 127.0.0.1:1993 in CONF:7`,
    ],
    [
      "a regular expression",
      [
        `server { listen 127.0.0.1:1993 ssl; protocol imap; server_name a.example; ${tls("a.example")} }`,
        `server { listen 127.0.0.1:1993 ssl; protocol imap;`,
        `  server_name ~^mail\\d+\\.example$; ${tls("b.example")} }`,
      ],
      `regular expressions in "server_name" are not supported by Postern: "~^mail\\d+\\.example$" in CONF:8`,
    ],
    [
      "a wildcard in the middle",
      [
        `server { listen 127.0.0.1:1993 ssl; protocol imap; server_name a.example; ${tls("a.example")} }`,
        `server { listen 127.0.0.1:1993 ssl; protocol imap; server_name www.*.example; ${tls("b.example")} }`,
      ],
      `invalid server name or wildcard "www.*.example" on 127.0.0.1:1993 in CONF:7`,
    ],
  ];
  for (const [label, servers, message] of refused) {
    test(`refused with file and line: ${label}`, () => {
      write(servers);
      assert.deepEqual(postern(), { ok: false, lines: [`[emerg] ${message.replace("CONF", conf)}`] });
    });
  }

  test("a name two servers claim: nginx's http warning, the first keeps it", () => {
    write([
      `server { listen 127.0.0.1:1993 ssl; protocol imap; server_name a.example; ${tls("a.example")} }`,
      `server { listen 127.0.0.1:1993 ssl; protocol imap; server_name b.example A.example; ${tls("b.example")} }`,
    ]);
    assert.deepEqual(postern(), { ok: true, lines: [`[warn] conflicting server name "A.example" on 127.0.0.1:1993, ignored`] });
  });

  test("one server per address: a server_name with a wildcard is only its greeting name, as in nginx", () => {
    write([`server { listen 127.0.0.1:1993 ssl; protocol imap; server_name www.*.example; ${tls("a.example")} }`]);
    assert.deepEqual(postern(), { ok: true, lines: [] });
    assert.deepEqual(nginx(), { ok: true, lines: [] });
  });
});

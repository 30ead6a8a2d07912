import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfError } from "../../../src/core/errors.js";
import { type ConfModule, Level, ServerConf, noArgs } from "../../../src/conf/directive.js";
import { custom } from "../../../src/conf/slots.js";
import { parseConfiguration } from "../../../src/conf/engine.js";
import { authHttp, authHttpModule, authHttpSettings, checkAuthHttp } from "../../../src/mail/auth-http/module.js";

// Minimal stand-ins for the mail and server blocks (owned by the core module),
// so the directive table runs through the real engine.
const mailBlock = custom<Level | undefined>({
  name: "mail",
  contexts: ["main"],
  args: noArgs,
  block: true,
  syntax: "{ ... }",
  defaultValue: undefined,
  defaultText: "—",
  doc: "test",
  parse(_args, _prev, cx) {
    const level = new Level("mail", cx.location);
    cx.parseBlock("mail", level);
    return level;
  },
});
const serverBlock = custom<readonly Level[]>({
  name: "server",
  contexts: ["mail"],
  args: noArgs,
  block: true,
  syntax: "{ ... }",
  defaultValue: [],
  defaultText: "—",
  doc: "test",
  duplicates: "accumulate",
  parse(_args, prev, cx) {
    const level = new Level("server", cx.location);
    cx.parseBlock("server", level);
    return [...(prev ?? []), level];
  },
});
const blocks: ConfModule = { name: "test_blocks", directives: [mailBlock, serverBlock] };

const dir = mkdtempSync(join(tmpdir(), "postern-ahconf-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function load(text: string): ServerConf[] {
  const file = join(dir, "nginx.conf");
  writeFileSync(file, text);
  const parsed = parseConfiguration({ prefix: `${dir}/`, file }, [blocks, authHttpModule]);
  const mail = parsed.main.own(mailBlock)!;
  return mail.get(serverBlock).map((s) => new ServerConf(s, mail));
}

function loadError(text: string): string {
  try {
    load(text);
  } catch (e) {
    assert.ok(e instanceof ConfError);
    return e.text;
  }
  assert.fail("no error");
}

test("auth_http set twice at one level is accepted and the last wins", () => {
  const [s] = load("mail {\n auth_http 127.0.0.1:1/a;\n auth_http 127.0.0.1:2/b;\n server { }\n}\n");
  checkAuthHttp(s!);
  const st = authHttpSettings(s!);
  assert.deepEqual([st.url.port, st.url.uri], [2, "/b"]);
});

test("auth_http_header lists replace, scalars inherit, timeout parses as msec", () => {
  const [a, b] = load(
    'mail {\n auth_http 127.0.0.1:9000;\n auth_http_header X-A 1;\n auth_http_header X-B "two words";\n auth_http_timeout 5s;\n' +
      " server { }\n server { auth_http_header X-C 3; auth_http_timeout 250ms; auth_http_pass_client_cert on; }\n}\n",
  );
  const sa = authHttpSettings(a!);
  const sb = authHttpSettings(b!);
  assert.deepEqual(sa.headers, [
    { name: "X-A", value: "1" },
    { name: "X-B", value: "two words" },
  ]);
  assert.deepEqual([sa.timeout, sa.passClientCert, sa.url.uri], [5000, false, "/"]);
  assert.deepEqual(sb.headers, [{ name: "X-C", value: "3" }]);
  assert.deepEqual([sb.timeout, sb.passClientCert], [250, true]);
});

test("errors carry nginx's wording and the directive's location", () => {
  // nginx 1.22.1 rejects https:// here ("invalid port"); Postern accepts it (docs/auth-http-path.md)
  assert.equal(loadError("mail {\n auth_http https://127.0.0.1:0/x;\n}\n"), `invalid port in auth_http "127.0.0.1:0/x" in ${dir}/nginx.conf:2`);
  assert.equal(loadError("mail {\n auth_http 127.0.0.1/a max_fails=x;\n}\n"), `invalid parameter "max_fails=x" in ${dir}/nginx.conf:2`);
  assert.equal(loadError("mail {\n auth_http_cache ok=1s;\n}\n"), `"auth_http_cache" must have "zone" parameter in ${dir}/nginx.conf:2`);
  assert.equal(loadError("mail {\n auth_http_cache zone=a:1k;\n}\n"), `zone "a" is too small in ${dir}/nginx.conf:2`);
  assert.equal(loadError("mail {\n auth_http_keepalive x;\n}\n"), `"auth_http_keepalive" directive invalid number in ${dir}/nginx.conf:2`);
  assert.equal(loadError("mail {\n\n auth_http http://:80/x;\n}\n"), `no host in auth_http ":80/x" in ${dir}/nginx.conf:3`);
  assert.equal(loadError("mail {\n auth_http_timeout 5s;\n auth_http_timeout 6s;\n}\n"), `"auth_http_timeout" directive is duplicate in ${dir}/nginx.conf:3`);
  assert.equal(loadError("mail {\n auth_http_timeout 5x;\n}\n"), `"auth_http_timeout" directive invalid value in ${dir}/nginx.conf:2`);
  assert.equal(loadError("mail {\n auth_http_header X;\n}\n"), `invalid number of arguments in "auth_http_header" directive in ${dir}/nginx.conf:2`);
  assert.equal(
    loadError("mail {\n auth_http_pass_client_cert yes;\n}\n"),
    `invalid value "yes" in "auth_http_pass_client_cert" directive, it must be "on" or "off" in ${dir}/nginx.conf:2`,
  );
});

test("a server without auth_http is reported with the server block's line", () => {
  const [, s] = load("mail {\n server { auth_http 127.0.0.1:1; }\n\n server {\n }\n}\n");
  assert.throws(
    () => checkAuthHttp(s!),
    (e: unknown) => e instanceof ConfError && e.text === `no "auth_http" is defined for server in ${dir}/nginx.conf:4`,
  );
});

test("host names resolve while parsing; an unknown one is reported at its directive", () => {
  assert.equal(
    loadError("mail {\n auth_http localhost:9000/a;\n server { }\n server {\n  auth_http nosuchhost.invalid/x;\n }\n}\n"),
    `host not found in auth_http "nosuchhost.invalid/x" in ${dir}/nginx.conf:5`,
  );
  const ok = load("mail {\n auth_http localhost:9000/a;\n server { }\n}\n");
  assert.deepEqual(ok[0]!.get(authHttp)!.address, { kind: "inet", host: "127.0.0.1", port: 9000 });
});

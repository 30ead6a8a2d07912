import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfError } from "../../../src/core/errors.js";
import { Level, ServerConf } from "../../../src/conf/directive.js";
import { authHttp, authHttpHeader, authHttpModule, authHttpSettings, authHttpTimeout, checkAuthHttp } from "../../../src/mail/auth-http/module.js";
import { parseAuthHttpUrl, peerName } from "../../../src/mail/auth-http/url.js";
import { parseAuthHttpTarget } from "../../../src/mail/auth-http/target.js";

function confError(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfError);
    return e.message;
  }
  assert.fail("no error");
}

test("auth_http URL forms: host, port, uri, Host header", () => {
  const u = parseAuthHttpUrl("127.0.0.1:23080/auth");
  assert.deepEqual(
    [u.host, u.port, u.uri, u.hostHeader, u.address],
    ["127.0.0.1", 23080, "/auth", "127.0.0.1", { kind: "inet", host: "127.0.0.1", port: 23080 }],
  );
  const h = parseAuthHttpUrl("http://localhost/a/b?x=1");
  assert.deepEqual([h.host, h.port, h.uri, h.hostHeader, h.address], ["localhost", 80, "/a/b?x=1", "localhost", { kind: "inet", host: "127.0.0.1", port: 80 }]);
  assert.equal(parseAuthHttpUrl("127.0.0.1").uri, "/");
  assert.equal(parseAuthHttpUrl("127.0.0.1?q").uri, "?q");
  const x = parseAuthHttpUrl("unix:/run/auth.sock:/check");
  assert.deepEqual([x.uri, x.hostHeader, x.address], ["/check", "localhost", { kind: "unix", path: "/run/auth.sock" }]);
  assert.equal(parseAuthHttpUrl("unix:/run/auth.sock").uri, "/");
  const v6 = parseAuthHttpUrl("[::1]:9000/a");
  assert.deepEqual([v6.hostHeader, v6.uri, v6.port], ["[::1]", "/a", 9000]);
  assert.equal(peerName(v6.address), "[::1]:9000");
  assert.equal(peerName(x.address), "unix:/run/auth.sock");
});

test("auth_http URL errors use nginx's words (http:// stripped from the quote)", () => {
  assert.equal(
    // nginx 1.22.1 says 'invalid port in auth_http "https://127.0.0.1/x"': Postern accepts https (docs/auth-http-path.md)
    confError(() => parseAuthHttpUrl("https://127.0.0.1:0/x")),
    'invalid port in auth_http "127.0.0.1:0/x"',
  );
  assert.equal(
    confError(() => parseAuthHttpUrl("http://:80/x")),
    'no host in auth_http ":80/x"',
  );
  assert.equal(
    confError(() => parseAuthHttpUrl("/auth")),
    'no host in auth_http "/auth"',
  );
  assert.equal(
    confError(() => parseAuthHttpUrl("127.0.0.1:0")),
    'invalid port in auth_http "127.0.0.1:0"',
  );
  assert.equal(
    confError(() => parseAuthHttpUrl("127.0.0.1:65536/a")),
    'invalid port in auth_http "127.0.0.1:65536/a"',
  );
  assert.equal(
    confError(() => parseAuthHttpUrl("unix:")),
    'no path in the unix domain socket in auth_http "unix:"',
  );
  // checked against nginx 1.22.1 -t
  assert.equal(
    confError(() => parseAuthHttpUrl("[::1/x")),
    'invalid host in auth_http "[::1/x"',
  );
  assert.equal(
    confError(() => parseAuthHttpUrl("[::1]x")),
    'invalid host in auth_http "[::1]x"',
  );
  assert.equal(
    confError(() => parseAuthHttpUrl("http://127.0.0.1:/x")),
    'invalid port in auth_http "127.0.0.1:/x"',
  );
});

test("the directive table declares nginx's four directives with nginx's merge rules, and Postern's additions", () => {
  assert.deepEqual(authHttpModule.directives.map((d) => d.name).sort(), [
    "auth_http",
    "auth_http_cache",
    "auth_http_header",
    "auth_http_keepalive",
    "auth_http_keepalive_timeout",
    "auth_http_pass_client_cert",
    "auth_http_ssl_certificate",
    "auth_http_ssl_certificate_key",
    "auth_http_ssl_ciphers",
    "auth_http_ssl_name",
    "auth_http_ssl_password_file",
    "auth_http_ssl_protocols",
    "auth_http_ssl_server_name",
    "auth_http_ssl_trusted_certificate",
    "auth_http_ssl_verify",
    "auth_http_ssl_verify_depth",
    "auth_http_timeout",
  ]);
  assert.equal(authHttp.duplicates, "lastWins");
  assert.equal(authHttpHeader.merge, "list");
  assert.equal(authHttpTimeout.defaultValue, 60000);
});

test("checkAuthHttp() names the server block; settings merge from the mail level", () => {
  const mail = new Level("mail", { file: "/etc/postern/nginx.conf", line: 3 });
  const own = new Level("server", { file: "/etc/postern/nginx.conf", line: 7 });
  const server = new ServerConf(own, mail);
  const e = (() => {
    try {
      checkAuthHttp(server);
    } catch (err) {
      return err as ConfError;
    }
    return undefined;
  })();
  assert.ok(e instanceof ConfError);
  assert.equal(e.text, 'no "auth_http" is defined for server in /etc/postern/nginx.conf:7');
  mail.set(authHttp, parseAuthHttpTarget(["127.0.0.1:9000/auth"]), mail.location);
  mail.set(authHttpHeader, [{ name: "X-A", value: "1" }], mail.location);
  const s2 = new ServerConf(own, mail);
  checkAuthHttp(s2);
  const st = authHttpSettings(s2);
  assert.deepEqual([st.url.uri, st.headers, st.timeout, st.passClientCert], ["/auth", [{ name: "X-A", value: "1" }], 60000, false]);
});

test("host names are resolved when parsed, IPv4 first; unknown hosts fail there", () => {
  assert.deepEqual(parseAuthHttpUrl("localhost:9000/x").address, { kind: "inet", host: "127.0.0.1", port: 9000 });
  assert.throws(
    () => parseAuthHttpUrl("http://nosuchhost.invalid:80/x"),
    (e: unknown) => {
      assert.ok(e instanceof ConfError);
      assert.equal(e.message, 'host not found in auth_http "nosuchhost.invalid:80/x"');
      return true;
    },
  );
});

/**
 * Several implicit-TLS IMAP servers on one address, chosen by the client's
 * server name (docs/sni.md): the certificate each real client sees (openssl
 * s_client, Python's ssl, curl), the server whose auth_http gets the login,
 * Auth-SSL-Server-Name, the default server, and the log.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startPostern } from "../../support/postern.js";
import { startFakeAuth, refuse, type FakeAuth } from "../../support/fake-auth.js";
import type { MailProxyProcess } from "../../support/mail-proxy.js";
import { freePorts } from "../../support/ports.js";
import { curlImaps, namedCerts, pythonSni, sniSClient } from "./sni-helpers.js";

const NAMES = ["a.example", "b.example", "wild.example", "solo.example"];

describe("SNI on one implicit-TLS address", () => {
  let pki: ReturnType<typeof namedCerts>;
  let postern: MailProxyProcess;
  let authA: FakeAuth;
  let authB: FakeAuth;
  let port = 0;
  let soloPort = 0;

  before(async () => {
    pki = namedCerts(NAMES);
    [port, soloPort] = (await freePorts(2)) as [number, number];
    authA = await startFakeAuth(refuse("Invalid login"));
    authB = await startFakeAuth(refuse("Invalid login"));
    const c = pki.certs;
    const server = (names: string, cert: string, extra = ""): string =>
      `server { listen 127.0.0.1:${port} ssl${extra}; protocol imap; server_name ${names}; ssl_certificate ${c[cert]!.cert}; ssl_certificate_key ${c[cert]!.key}; }`;
    postern = await startPostern(
      [
        `auth_http ${authB.url};`,
        `server { listen 127.0.0.1:${port} ssl; protocol imap; server_name a.example; auth_http ${authA.url}; ssl_certificate ${c["a.example"]!.cert}; ssl_certificate_key ${c["a.example"]!.key}; }`,
        server("b.example", "b.example", " default_server"),
        server("*.wild.example mail.*", "wild.example"),
        `server { listen 127.0.0.1:${soloPort} ssl; protocol imap; server_name solo.example; ssl_certificate ${c["solo.example"]!.cert}; ssl_certificate_key ${c["solo.example"]!.key}; }`,
      ].join("\n"),
      { mainExtra: "error_log error.log debug;" },
    );
  });
  after(async () => {
    await postern?.stop();
    await authA?.close();
    await authB?.close();
    pki?.remove();
  });

  test("openssl s_client -servername: exact names, *.wildcard and mail.* get their server's certificate", async () => {
    const seen: Record<string, string> = {};
    for (const name of ["a.example", "b.example", "x.wild.example", "deep.x.wild.example", "mail.other.org", "A.EXAMPLE"]) {
      seen[name] = (await sniSClient(port, { servername: name })).cn;
    }
    assert.deepEqual(seen, {
      "a.example": "a.example",
      "b.example": "b.example",
      "x.wild.example": "wild.example",
      "deep.x.wild.example": "wild.example",
      "mail.other.org": "wild.example",
      "A.EXAMPLE": "a.example",
    });
    const log = postern.errorLog();
    assert.match(log, /SSL server name "x\.wild\.example" selects server "\*\.wild\.example"/);
    assert.match(log, /SSL server name "a\.example" selects server "a\.example"/);
  });

  test("no server name, or a name no server has: the default_server's certificate (not the first server's)", async () => {
    assert.equal((await sniSClient(port, {})).cn, "b.example");
    assert.equal((await sniSClient(port, { servername: "unknown.org" })).cn, "b.example");
    assert.equal((await sniSClient(port, { servername: "wild.example" })).cn, "b.example", "*.wild.example does not name wild.example itself");
    assert.match(postern.errorLog(), /SSL server name null selects server "b\.example"/);
    assert.match(postern.errorLog(), /SSL server name "unknown\.org" selects server "b\.example"/);
  });

  test("Python's ssl with server_hostname: the chosen server's certificate and the IMAP greeting", () => {
    assert.deepEqual(pythonSni(port, "a.example"), { greeting: "* OK IMAP4 ready", cn: "a.example" });
    assert.deepEqual(pythonSni(port, "mail.example.net"), { greeting: "* OK IMAP4 ready", cn: "wild.example" });
  });

  test("curl imaps://NAME: the login goes to the chosen server's auth_http, with Auth-SSL-Server-Name", async () => {
    const beforeA = authA.parsed.length;
    const beforeB = authB.parsed.length;
    const a = await curlImaps(port, "a.example", "alice", "pw");
    assert.notEqual(a.code, 0, "refused by the fake auth service");
    assert.equal(authA.parsed.length, beforeA + 1, "server a.example's auth_http got the login");
    assert.equal(authB.parsed.length, beforeB, "the default server's auth_http did not");
    const reqA = authA.parsed.at(-1)!;
    assert.equal(reqA.header("Auth-User"), "alice");
    assert.equal(reqA.header("Auth-SSL"), "on");
    assert.equal(reqA.header("Auth-SSL-Server-Name"), "a.example");
    // Postern's header comes last among the Auth-SSL-* ones, right before the end of the request
    assert.deepEqual(reqA.headers.at(-1), ["Auth-SSL-Server-Name", "a.example"]);

    await curlImaps(port, "mail.example.com", "bob", "pw");
    assert.equal(authB.parsed.length, beforeB + 1, "*.wild.example uses the mail level's auth_http");
    assert.equal(authB.parsed.at(-1)!.header("Auth-SSL-Server-Name"), "mail.example.com");
  });

  test("without SNI no Auth-SSL-Server-Name is sent; an invalid name is neither used nor sent, and logged", async () => {
    const before = authB.parsed.length;
    await sniSClient(port, { lines: ["a LOGIN carol pw"], waitMs: 600 });
    const bad = await sniSClient(port, { servername: "bad!name.example", lines: ["a LOGIN dave pw"], waitMs: 600 });
    assert.equal(bad.cn, "b.example", "the default server answers an invalid name");
    const got = authB.parsed.slice(before);
    assert.deepEqual(
      got.map((r) => [r.header("Auth-User"), r.header("Auth-SSL-Server-Name")]),
      [
        ["carol", undefined],
        ["dave", undefined],
      ],
    );
    assert.match(postern.errorLog(), /\[info\] .*client sent an invalid SSL server name, the default server is used while SSL handshaking/);
  });

  test("an address with one server stays nginx's: SNI is not read and no Auth-SSL-Server-Name is sent", async () => {
    const before = authB.parsed.length;
    const run = await sniSClient(soloPort, { servername: "other.example", lines: ["a LOGIN erin pw"], waitMs: 600 });
    assert.equal(run.cn, "solo.example");
    const req = authB.parsed.slice(before).find((r) => r.header("Auth-User") === "erin");
    assert.ok(req, "the login reached auth_http");
    assert.equal(req.header("Auth-SSL-Server-Name"), undefined);
    assert.doesNotMatch(postern.errorLog(), /SSL server name "other\.example" selects/);
  });
});

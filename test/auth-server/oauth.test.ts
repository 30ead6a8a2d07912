/**
 * The bundled auth service's OAuth logins: JWT access tokens checked
 * against a JWKS made at test time (RS256, ES256, EdDSA; exp, nbf, iss,
 * aud, the mailbox claim), an RFC 7662 introspection endpoint, refusals
 * with Auth-Error-SASL, no token in its log, and HTTP/1.1 keep-alive.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { connect } from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { JwksKeys } from "../../src/auth-server/jwt.js";
import { INVALID_TOKEN_SASL_ERROR } from "../../src/auth-server/oauth.js";
import { oauthSettings } from "../../src/auth-server/oauth-cli.js";
import { startAuthServer, type RunningAuthServer } from "../../src/auth-server/server.js";
import type { Credentials } from "../../src/mail/types.js";
import { jwks, makeKey, signJwt, validClaims, type TestKey } from "../support/jwt.js";
import { ask, authRequest, io } from "./helpers.js";
import { runPasswd } from "../../src/auth-server/cli.js";

const MAILBOX = "alice@example.com";
const POLICY = { issuer: "https://issuer.example", audience: "mail", userClaim: "email", leewaySeconds: 60 };
const bearer = (token: string, login = ""): Credentials => ({ method: "oauthbearer", login: Buffer.from(login), password: Buffer.from(token) });
const s = (b: Buffer | undefined): string | undefined => b?.toString("latin1");

let dir = "";
let keys: Record<TestKey["alg"], TestKey>;
let other: TestKey;
let jwtServer: RunningAuthServer;
let introServer: RunningAuthServer;
let introspection: Server;
const introspected: Array<{ auth: string | undefined; body: string }> = [];
const logLines: string[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "postern-oauth-"));
  const users = join(dir, "users");
  writeFileSync(users, "");
  const x = io("mailbox-secret\n");
  assert.equal(await runPasswd(["--scrypt-n", "1024", "--clear", users, MAILBOX, "127.0.0.1:1025", "imap=127.0.0.1:1143"], x), 0, x.err());
  keys = { RS256: makeKey("RS256"), ES256: makeKey("ES256"), EdDSA: makeKey("EdDSA") };
  other = makeKey("RS256", "rs256-key");
  const jwksFile = join(dir, "jwks.json");
  writeFileSync(jwksFile, jwks(Object.values(keys)));
  introspection = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      introspected.push({ auth: req.headers.authorization, body });
      const token = new URLSearchParams(body).get("token");
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify(token === "opaque-good" ? { active: true, ...validClaims(MAILBOX) } : { active: false }));
    });
  });
  await new Promise<void>((resolve) => introspection.listen(0, "127.0.0.1", resolve));
  const credentials = join(dir, "client");
  writeFileSync(credentials, "postern:client-secret\n");
  const introArgs = new Map([
    ["--introspect", `http://127.0.0.1:${(introspection.address() as AddressInfo).port}/introspect`],
    ["--introspect-credentials-file", credentials],
    ["--issuer", POLICY.issuer],
    ["--audience", POLICY.audience],
  ]);
  const jwtArgs = new Map([
    ["--jwks", jwksFile],
    ["--issuer", POLICY.issuer],
    ["--audience", POLICY.audience],
  ]);
  const log = (l: string): number => logLines.push(l);
  const scrypt = { N: 1024, r: 8, p: 1 };
  const jwtOauth = await oauthSettings(jwtArgs);
  const introOauth = await oauthSettings(introArgs);
  assert.ok(typeof jwtOauth === "object" && typeof introOauth === "object");
  jwtServer = await startAuthServer({ usersFile: users, wait: 1, scrypt, log, oauth: jwtOauth }, "127.0.0.1", 0);
  introServer = await startAuthServer({ usersFile: users, wait: 1, scrypt, log, oauth: introOauth }, "127.0.0.1", 0);
});

after(async () => {
  await jwtServer?.close();
  await introServer?.close();
  introspection?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("JWT access tokens against the JWKS file", () => {
  for (const alg of ["RS256", "ES256", "EdDSA"] as const) {
    test(`${alg}: OK, the backend of the protocol, Auth-User the mailbox claim, Auth-Pass the stored secret`, async () => {
      const token = signJwt(keys[alg], validClaims(MAILBOX));
      const r = await ask(jwtServer.address.port, "imap", bearer(token, MAILBOX));
      assert.equal(r.failure, undefined, r.raw);
      assert.deepEqual([s(r.server), s(r.port), s(r.user), s(r.pass)], ["127.0.0.1", "1143", MAILBOX, "mailbox-secret"]);
      assert.equal(r.errorSasl, undefined);
    });
  }

  const refusals: Array<[string, () => string]> = [
    ["an expired token", () => signJwt(keys.RS256, validClaims(MAILBOX, { exp: Math.floor(Date.now() / 1000) - 120 }))],
    ["a token without exp", () => signJwt(keys.RS256, validClaims(MAILBOX, { exp: undefined }))],
    ["a token not yet valid (nbf)", () => signJwt(keys.ES256, validClaims(MAILBOX, { nbf: Math.floor(Date.now() / 1000) + 600 }))],
    ["a wrong issuer", () => signJwt(keys.EdDSA, validClaims(MAILBOX, { iss: "https://evil.example" }))],
    ["a wrong audience", () => signJwt(keys.RS256, validClaims(MAILBOX, { aud: ["other"] }))],
    ["a key not in the JWKS (same kid)", () => signJwt(other, validClaims(MAILBOX))],
    ["alg none", () => `${Buffer.from('{"alg":"none"}').toString("base64url")}.${Buffer.from(JSON.stringify(validClaims(MAILBOX))).toString("base64url")}.AA`],
    ["HS256 keyed with the public key", () => signJwt(keys.RS256, validClaims(MAILBOX), { alg: "HS256" })],
    [
      "a tampered payload",
      () =>
        signJwt(keys.RS256, validClaims(MAILBOX)).replace(
          /\.[^.]+\./,
          `.${Buffer.from(JSON.stringify(validClaims("mallory@example.com"))).toString("base64url")}.`,
        ),
    ],
    ["a mailbox not in the users file", () => signJwt(keys.RS256, validClaims("nobody@example.com"))],
    ["not a JWT at all", () => "opaque-good"],
  ];
  for (const [what, token] of refusals) {
    test(`${what}: refused with Auth-Wait and Auth-Error-SASL (RFC 7628 invalid_token)`, async () => {
      const r = await ask(jwtServer.address.port, "smtp", { ...bearer(token()), method: "xoauth2" });
      assert.equal(s(r.failure), "Invalid login or password", r.raw);
      assert.equal(s(r.errorSasl), INVALID_TOKEN_SASL_ERROR);
      assert.deepEqual(JSON.parse(Buffer.from(INVALID_TOKEN_SASL_ERROR, "base64").toString()), { status: "invalid_token", schemes: "bearer" });
      assert.equal(r.sleep, 1);
      assert.equal(s(r.errorCode), "535 5.7.8");
    });
  }

  test("a client authorization identity other than the token's mailbox is refused", async () => {
    const r = await ask(jwtServer.address.port, "imap", bearer(signJwt(keys.RS256, validClaims(MAILBOX)), "bob@example.com"));
    assert.equal(s(r.failure), "Invalid login or password");
    assert.ok(logLines.some((l) => l.includes("token is for another mailbox")));
  });

  test("no token ever reaches the service's log", () => {
    const all = logLines.join("\n");
    assert.ok(!/eyJ/.test(all), all);
    assert.ok(!all.includes("opaque-good"));
  });

  test("JwksKeys refuses a JWKS holding a private key, and one without usable keys", () => {
    const priv = keys.RS256.privateKey.export({ format: "jwk" });
    assert.throws(() => JwksKeys.parse(JSON.stringify({ keys: [priv] })), /private key/);
    assert.throws(() => JwksKeys.parse(JSON.stringify({ keys: [{ kty: "oct", k: "AAAA" }] })), /no RS256, ES256 or EdDSA/);
    assert.equal(JwksKeys.parse(jwks([keys.ES256])).verify(signJwt(keys.ES256, validClaims(MAILBOX)), POLICY, Date.now() / 1000).ok, true);
  });
});

describe("RFC 7662 introspection", () => {
  test("an active token: OK as the mailbox claim; the endpoint got the token with HTTP Basic client credentials", async () => {
    const r = await ask(introServer.address.port, "imap", bearer("opaque-good"));
    assert.equal(r.failure, undefined, r.raw);
    assert.equal(s(r.user), MAILBOX);
    const last = introspected[introspected.length - 1]!;
    assert.equal(last.auth, `Basic ${Buffer.from("postern:client-secret").toString("base64")}`);
    assert.equal(new URLSearchParams(last.body).get("token"), "opaque-good");
    assert.equal(new URLSearchParams(last.body).get("token_type_hint"), "access_token");
  });

  test("an inactive token: refused with Auth-Error-SASL", async () => {
    const r = await ask(introServer.address.port, "pop3", bearer("revoked"));
    assert.equal(s(r.failure), "Invalid login or password");
    assert.equal(s(r.errorSasl), INVALID_TOKEN_SASL_ERROR);
  });
});

test("HTTP/1.1 keep-alive: two requests answered on one connection", async () => {
  const token = signJwt(keys.RS256, validClaims(MAILBOX));
  const one = authRequest("imap", bearer(token)).toString("latin1").replace("HTTP/1.0", "HTTP/1.1");
  const answers = await new Promise<string>((resolve, reject) => {
    const sock = connect(jwtServer.address.port, "127.0.0.1");
    let data = "";
    sock.on("data", (d) => {
      data += d.toString("latin1");
      if ((data.match(/Auth-Status: OK/g) ?? []).length === 2) {
        sock.end();
        resolve(data);
      }
    });
    sock.on("error", reject);
    sock.write(one);
    sock.once("data", () => sock.write(one));
  });
  assert.equal((answers.match(/^HTTP\/1\.1 200 OK\r\n/gm) ?? []).length, 2);
  assert.doesNotMatch(answers, /Connection: close/i);
});

test("oauthSettings: options that need --jwks or --introspect, a bad URL, a missing JWKS file", async () => {
  assert.equal(await oauthSettings(new Map([["--issuer", "x"]])), 'option "--issuer" needs --jwks or --introspect');
  const badUrl = await oauthSettings(new Map([["--introspect", "ftp://x"]]));
  const missing = await oauthSettings(new Map([["--jwks", join(dir, "missing")]]));
  assert.ok(typeof badUrl === "string" && typeof missing === "string");
  assert.match(badUrl, /invalid --introspect/);
  assert.match(missing, /^cannot load JWKS file/);
  assert.equal(await oauthSettings(new Map()), undefined);
});

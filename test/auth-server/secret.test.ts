/**
 * The auth service's shared secret: without the right X-Auth-Key it answers
 * 403 and uses nothing of the request (its Client-IP least of all); nginx
 * and Postern send the key with `auth_http_header` and log in through it.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runAuthServer } from "../../src/auth-server/cli.js";
import { startAuthServer, type RunningAuthServer } from "../../src/auth-server/server.js";
import { formatUserLine, hashPasswordAsync } from "../../src/auth-server/users.js";
import { MailClient } from "../support/client.js";
import { startFakePop3, type FakeBackend } from "../support/fake-backend.js";
import { nginxAvailable, startNginx } from "../support/nginx.js";
import { freePorts } from "../support/ports.js";
import { startPostern } from "../support/postern.js";
import { ask, authRequest, exchange, io, plain, text } from "./helpers.js";

/** The header name docs/auth-server.md documents (nginx's own example). */
const SECRET_HEADER = "X-Auth-Key";
const SECRET = "4f1c0e9a7b2d6c3e8f5a1b0c9d8e7f6a";
const TEST_SCRYPT = { N: 1024, r: 8, p: 1 };
const key = (value: string) => [{ name: SECRET_HEADER, value }];

let dir = "";
let server: RunningAuthServer | undefined;
let backend: FakeBackend | undefined;
const logLines: string[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "postern-authkey-"));
  backend = await startFakePop3();
  const usersFile = join(dir, "users");
  writeFileSync(
    usersFile,
    formatUserLine({
      login: "alice",
      hash: await hashPasswordAsync("right pw", TEST_SCRYPT),
      backends: { pop3: { host: "127.0.0.1", port: backend.port } },
    }) + "\n",
  );
  server = await startAuthServer(
    {
      usersFile,
      wait: 0,
      scrypt: TEST_SCRYPT,
      secret: Buffer.from(SECRET),
      log: (l) => logLines.push(l),
    },
    "127.0.0.1",
    0,
  );
});

after(async () => {
  await server?.close();
  await backend?.close();
  rmSync(dir, { recursive: true, force: true });
});

test("without the right X-Auth-Key: 403, and nothing of the request is used", async () => {
  const port = server!.address.port;
  const wrong = [[], key("not the secret"), key(SECRET.slice(0, -1)), key(SECRET + "x"), key(SECRET.toUpperCase())];
  for (const headers of wrong) {
    const raw = await exchange(port, authRequest("pop3", plain("alice", "right pw"), "127.0.0.1", headers));
    assert.match(raw, /^HTTP\/1\.[01] 403 /, raw);
    assert.match(raw, /\r\nAuth-Status: Temporary server problem, try again later\r\n/);
    assert.doesNotMatch(raw, /Auth-Server|Auth-Port/, "a correct password without the key gets no backend");
  }
  // the key sent twice (once right) is refused too
  const twice = authRequest("pop3", plain("alice", "right pw"), "127.0.0.1", [...key("nope"), ...key(SECRET)]);
  assert.match(await exchange(port, twice), /^HTTP\/1\.[01] 403 /);
  // forged Client-IP values from an outsider do not feed the failure limiter
  for (let i = 0; i < 25; i++) await exchange(port, authRequest("pop3", plain("alice", "bad pw"), "192.0.2.7"));
  const ok = await ask(port, "pop3", plain("alice", "right pw"), "192.0.2.7", key(SECRET));
  assert.equal(ok.failure, undefined, "192.0.2.7 was not blocked by requests without the key");
  assert.equal(text(ok.port), String(backend!.port));
  assert.ok(
    logLines.some((l) => new RegExp(`^request from 127\\.0\\.0\\.1 refused: missing or wrong ${SECRET_HEADER} `).test(l)),
    logLines.join("\n"),
  );
  for (const l of logLines) assert.doesNotMatch(l, new RegExp(SECRET));
});

test("with the right X-Auth-Key the service answers as before, limiter included", async () => {
  const port = server!.address.port;
  for (let i = 0; i < 20; i++) {
    const r = await ask(port, "pop3", plain("alice", "bad pw"), "192.0.2.8", key(SECRET));
    assert.equal(text(r.failure), "Invalid login or password");
  }
  const blocked = await ask(port, "pop3", plain("alice", "right pw"), "192.0.2.8", key(SECRET));
  assert.equal(text(blocked.failure), "Too many failed login attempts, try again later");
});

test("nginx and Postern with auth_http_header X-Auth-Key log in through it; without the header the client is refused", async () => {
  assert.ok(nginxAvailable(), "nginx is the oracle");
  const authPort = server!.address.port;
  for (const start of [startPostern, startNginx]) {
    const [withKey, withoutKey] = await freePorts(2);
    const proxy = await start(`
      auth_http 127.0.0.1:${authPort}/auth;
      server { listen 127.0.0.1:${withKey}; protocol pop3; auth_http_header ${SECRET_HEADER} "${SECRET}"; }
      server { listen 127.0.0.1:${withoutKey}; protocol pop3; }
    `);
    try {
      const before = backend!.connections.length;
      const c = await MailClient.connect({ port: withKey! });
      await c.read(/^\+OK.*\r\n/);
      await c.send("USER alice\r\n");
      await c.read(/^\+OK.*\r\n/);
      await c.send("PASS right pw\r\n");
      assert.match(await c.read(/\r\n/), /^\+OK/, `${proxy.kind}: logged in`);
      const [conn] = (await backend!.waitForConnections(before + 1)).slice(before);
      assert.equal(conn!.login, "alice", proxy.kind);
      assert.equal(conn!.password, "right pw", proxy.kind);
      await c.send("QUIT\r\n");
      await c.expectClosed();

      const d = await MailClient.connect({ port: withoutKey! });
      await d.read(/^\+OK.*\r\n/);
      await d.send("USER alice\r\n");
      await d.read(/^\+OK.*\r\n/);
      await d.send("PASS right pw\r\n");
      assert.equal(await d.read(/\r\n/), "-ERR Temporary server problem, try again later\r\n", proxy.kind);
      assert.equal(backend!.connections.length, before + 1, `${proxy.kind}: no backend connection without the key`);
    } finally {
      await proxy.stop();
    }
  }
});

test("auth-server --secret-file: the secret is read from a file and checked for form", async () => {
  const usersFile = join(dir, "users");
  const secretFile = join(dir, "secret");
  writeFileSync(secretFile, `${SECRET}\n`);
  let stop: () => void = () => {};
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  const x = { ...io(""), stopped };
  const running = runAuthServer(["--listen", "127.0.0.1:0", "--users", usersFile, "--secret-file", secretFile, "--scrypt-n", "1024"], x);
  let port = 0;
  for (let i = 0; i < 250 && port === 0; i++) {
    await new Promise((r) => setTimeout(r, 20));
    port = Number(/listening on 127\.0\.0\.1:(\d+) \(requests must carry X-Auth-Key\)/.exec(x.out())?.[1] ?? 0);
  }
  assert.ok(port > 0, x.out() + x.err());
  assert.match(await exchange(port, authRequest("pop3", plain("alice", "right pw"))), /^HTTP\/1\.[01] 403 /);
  assert.equal((await ask(port, "pop3", plain("alice", "right pw"), "127.0.0.1", key(SECRET))).failure, undefined);
  stop();
  assert.equal(await running, 0);
  for (const bad of ["short\n", "has a space in it, sixteen+\n", ""]) {
    writeFileSync(secretFile, bad);
    const y = io("");
    assert.equal(await runAuthServer(["--users", usersFile, "--secret-file", secretFile], y), 1, bad);
    assert.match(y.err(), /must hold one line of 16 to 1024 visible ASCII characters/);
  }
  const z = io("");
  assert.equal(await runAuthServer(["--users", usersFile, "--secret-file", join(dir, "missing")], z), 1);
  assert.match(z.err(), /cannot read secret file/);
  // without a secret the service still runs, with a warning
  const w = { ...io(""), stopped: Promise.resolve() };
  assert.equal(await runAuthServer(["--listen", "127.0.0.1:0", "--users", usersFile, "--scrypt-n", "1024"], w), 0);
  assert.match(w.err(), /warning: no --secret-file/);
});

/**
 * Keep-alive and the cache against the bundled `postern auth-server` (a
 * node:http service): a counting TCP relay in front of it shows how many
 * connections the logins used, and the service's own verdicts (scrypt
 * hashes, a changed password) come through unchanged.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect, type AddressInfo, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAuthServer, type RunningAuthServer } from "../../../src/auth-server/server.js";
import { authenticate } from "../../../src/mail/auth-http/client.js";
import { AuthAnswerCache } from "../../../src/mail/auth-http/cache.js";
import { closeIdle } from "../../../src/mail/auth-http/pool.js";
import { authAnswerStore } from "../../../src/event/auth-answer-ipc.js";
import { passwd } from "../../auth-server/helpers.js";
import { makeSetup, plain } from "./helpers.js";

const dir = mkdtempSync(join(tmpdir(), "postern-ahpath-"));
const usersFile = join(dir, "users");
let service: RunningAuthServer;
let relay: Server;
let relayPort: number;
let connections = 0;
const sockets = new Set<Socket>();

before(async () => {
  await passwd(["--scrypt-n", "1024", usersFile, "alice", "imap=127.0.0.1:1143"], "first");
  service = await startAuthServer({ usersFile, wait: 0, scrypt: { N: 1024, r: 8, p: 1 }, log: () => undefined }, "127.0.0.1", 0);
  relay = createServer((client) => {
    connections++;
    const upstream = connect(service.address.port, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
  relayPort = (relay.address() as AddressInfo).port;
});
after(async () => {
  closeIdle();
  for (const s of sockets) s.destroy();
  await new Promise((resolve) => relay.close(resolve));
  await service.close();
  rmSync(dir, { recursive: true, force: true });
});

const OK = { kind: "ok", backend: { host: "127.0.0.1", port: 1143 }, login: Buffer.from("alice"), password: Buffer.from("first") };

test("keep-alive with the bundled auth-server: four logins (right and wrong password) over one connection", async () => {
  connections = 0;
  const { params, lines } = makeSetup([`127.0.0.1:${relayPort}/auth`], { keepalive: 4, keepaliveTimeout: 3000 });
  assert.deepEqual(await authenticate(params(plain("alice", "first"))), OK);
  assert.equal((await authenticate(params(plain("alice", "wrong")))).kind, "refused");
  assert.deepEqual(await authenticate(params(plain("alice", "first"))), OK);
  assert.deepEqual(await authenticate(params(plain("alice", "first"))), OK);
  assert.equal(connections, 1);
  assert.deepEqual(lines(), ['[info] client login failed: "Invalid login or password" while in http auth state']);
});

test("the cache in front of the bundled auth-server: a hit skips the service; the new password misses, the old one still hits until ok= ends", async () => {
  closeIdle();
  connections = 0;
  const conf = { zone: "bundled", size: 1 << 20, okMs: 60_000, failMs: 0 };
  const cache = new AuthAnswerCache(authAnswerStore(conf.zone, conf.size), conf, "bundled");
  const { params } = makeSetup([`127.0.0.1:${relayPort}/auth`], { cache });
  assert.deepEqual(await authenticate(params(plain("alice", "first"))), OK);
  assert.deepEqual(await authenticate(params(plain("alice", "first"))), OK);
  assert.equal(connections, 1, "the second login was a hit");
  await passwd(["--scrypt-n", "1024", usersFile, "alice", "imap=127.0.0.1:1143"], "second");
  const fresh = await authenticate(params(plain("alice", "second")));
  assert.equal(connections, 2, "the new password is another key");
  // the documented trade-off: the old password's success stays cached for ok=
  assert.deepEqual(await authenticate(params(plain("alice", "first"))), OK);
  assert.equal(connections, 2);
  assert.deepEqual(fresh, { ...OK, password: Buffer.from("second") });
});

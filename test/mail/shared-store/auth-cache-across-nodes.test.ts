/**
 * auth_http_cache with `sync` across three real nodes sharing one Redis:
 * a login answered once through node A is served from the cache through
 * nodes B and C (the auth service sees one request); the value in Redis
 * is sealed (neither the login, the password nor the backend's address in
 * clear); a forged or garbage value under the entry's key is discarded
 * (the auth service is asked again, the client is served, no crash).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { type Cluster, eventually, login, logLines, startCluster } from "./cluster.js";

let cluster: Cluster;

before(async () => {
  cluster = await startCluster({ nodes: 3, mail: "auth_http_cache zone=answers:64k ok=1m sync;" });
});

after(async () => {
  await cluster?.close();
});

const asked = (user: string): number => cluster.auth.parsed.filter((r) => r.header("Auth-User") === user).length;

test("a login answered through node A is served from the shared cache through nodes B and C", async () => {
  const [a, b, c] = cluster.nodes as [(typeof cluster.nodes)[0], (typeof cluster.nodes)[0], (typeof cluster.nodes)[0]];
  assert.match(await login(a, "alice"), /^a1 OK/);
  assert.equal(asked("alice"), 1);
  // B and C (each with two workers) have never seen alice: their answers come from Redis
  for (const node of [b, c, b, c]) assert.match(await login(node, "alice"), /^a1 OK/);
  assert.equal(asked("alice"), 1, "the auth service saw one request");
  // another password is another question
  assert.match(await login(b, "alice", "other"), /^a1 OK/);
  assert.equal(asked("alice"), 2);

  // the second answer is written to Redis after its login is answered
  let keys: string[] = [];
  await eventually(
    async () => (keys = await cluster.inspect.keys("postern:auth-answer:*")).length === 2,
    5_000,
    () => `${keys.length} keys`,
  );
  for (const k of keys) {
    const value = (await cluster.inspect.getBuffer(k))!;
    for (const clear of ["alice", "secret", "127.0.0.1", String(cluster.backend.port), "OK"]) assert.equal(value.includes(clear), false, clear);
    const ttl = await cluster.inspect.pttl(k);
    assert.ok(ttl > 50_000 && ttl <= 60_000, `expires with ok=1m: ${ttl}`);
  }
});

test("forged, garbage and wrong-type values under the cache's keys are discarded: the auth service is asked, the client is served", async () => {
  const [a, b, c] = cluster.nodes as [(typeof cluster.nodes)[0], (typeof cluster.nodes)[0], (typeof cluster.nodes)[0]];
  const earlier = await cluster.inspect.keys("postern:auth-answer:*");
  assert.match(await login(a, "bob"), /^a1 OK/);
  // the answer is written to Redis after the login is answered, not before
  let all: string[] = [];
  await eventually(
    async () => (all = await cluster.inspect.keys("postern:auth-answer:*")).length === earlier.length + 1,
    5_000,
    () => `bob's entry: ${all.length} keys`,
  );
  // every entry replaced: garbage, a value too large, an entry moved from another key (alice's at bob's)
  const sample = (await cluster.inspect.getBuffer(earlier[0]!))!;
  for (const [i, k] of all.entries()) {
    if (i % 3 === 0) await cluster.inspect.set(k, Buffer.from("Auth-Status: OK\r\nAuth-Server: 10.0.0.1\r\n"));
    else if (i % 3 === 1) await cluster.inspect.set(k, Buffer.alloc(1 << 20, 0x41));
    else await cluster.inspect.set(k, sample);
  }
  const before = asked("bob");
  assert.match(await login(b, "bob"), /^a1 OK/);
  assert.equal(asked("bob"), before + 1, "the forged entry was not used");
  // a key of another type, several times: a miss each time, and the store is not taken for down
  for (const k of await cluster.inspect.keys("postern:auth-answer:*")) {
    await cluster.inspect.del(k);
    await cluster.inspect.hset(k, "x", "y");
  }
  for (let i = 0; i < 4; i++) assert.match(await login(c, "bob", "wrong-type" + i), /^a1 OK/);
  assert.equal(asked("bob"), before + 5);
  assert.equal(logLines(c, /shared store .* unavailable/).length, 0, "a bad entry is not an outage");
  // every node still serves
  for (const node of cluster.nodes) assert.match(await login(node, "carol"), /^a1 OK/);
  for (const node of cluster.nodes) assert.equal(logLines(node, /\[(alert|crit|emerg)\]|exited on signal|worker process \d+ exited/).length, 0);
});

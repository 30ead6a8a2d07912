/**
 * The limit store across processes, on in-memory IPC pairs: two workers'
 * acquires count in the master's one zone; a worker's release frees only
 * what it holds; a worker that exits gives back all it held; the login-hash
 * key reaches the workers; every malformed message is dropped.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { LIMIT_MESSAGE, connectLimitWorker, installLimitMaster, isLimitMessage, limitMaster, limitStore, loginKey } from "../../src/event/limit-ipc.js";
import { MIN_ZONE_SIZE } from "../../src/event/limit-store.js";
import type { IpcEndpoint } from "../../src/event/tls-session-ipc.js";

/** One end of a pair: what it sends arrives at the other end, JSON-copied, on a later turn (as IPC). */
class End extends EventEmitter implements IpcEndpoint {
  peer!: End;
  connected = true;
  send(message: unknown): boolean {
    if (!this.connected) return false;
    const copy: unknown = JSON.parse(JSON.stringify(message));
    setImmediate(() => this.peer.emit("message", copy));
    return true;
  }
}

function pair(): { worker: End; master: End } {
  const worker = new End();
  const master = new End();
  worker.peer = master;
  master.peer = worker;
  return { worker, master };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

test("two workers count in one zone; release frees only the worker's own; a worker that exits gives all back", async () => {
  const one = pair();
  const two = pair();
  const forgetOne = installLimitMaster(one.master);
  const forgetTwo = installLimitMaster(two.master);
  connectLimitWorker(one.worker);
  const storeOne = limitStore();
  connectLimitWorker(two.worker);
  const storeTwo = limitStore();
  const zone = { name: "ipc-test", size: MIN_ZONE_SIZE };
  const claim = { zone, key: "0a000001", limit: 3 };
  assert.deepEqual(await storeOne.acquire([claim]), { ok: true });
  assert.deepEqual(await storeOne.acquire([claim]), { ok: true });
  assert.deepEqual(await storeTwo.acquire([claim]), { ok: true });
  assert.deepEqual(await storeTwo.acquire([claim]), { ok: false, index: 0, reason: "limit" });
  // worker two releases twice: only its one connection is freed
  storeTwo.release([claim]);
  storeTwo.release([claim]);
  await turn();
  await turn();
  assert.equal(limitMaster.store.local.connZone(zone).count("0a000001"), 2);
  // worker one dies: its two go back
  forgetOne();
  assert.equal(limitMaster.store.local.connZone(zone).count("0a000001"), 0);
  forgetTwo();
});

test("the master's login-hash key reaches a worker: the same login gives the same key there, never the login itself", async () => {
  const p = pair();
  const forget = installLimitMaster(p.master);
  connectLimitWorker(p.worker);
  const inWorker = await loginKey(Buffer.from("alice@example.com"));
  assert.doesNotMatch(inWorker, /alice/);
  assert.match(inWorker, /^l[A-Za-z0-9_-]{43}$/);
  assert.notEqual(await loginKey(Buffer.from("bob@example.com")), inWorker);
  // the failures a worker records are the master's
  const zone = { name: "ipc-fail", size: MIN_ZONE_SIZE, windowMs: 60_000 };
  await limitStore().recordFailure(zone, [inWorker]);
  assert.equal(await limitStore().failures(zone, [inWorker]), 1);
  assert.equal(limitMaster.store.local.failuresNow(zone, [inWorker]), 1);
  forget();
});

test("malformed messages are dropped, never applied", () => {
  const ok = { type: LIMIT_MESSAGE, op: "acquire", id: 1, claims: [["z", MIN_ZONE_SIZE, "0a000001", 1, false]] };
  assert.equal(isLimitMessage(ok), true);
  const bad: unknown[] = [
    null,
    "x",
    { ...ok, type: "other" },
    { ...ok, op: "nope" },
    { ...ok, id: -1 },
    { ...ok, id: 1.5 },
    { ...ok, claims: [] },
    { ...ok, claims: [["", MIN_ZONE_SIZE, "0a", 1, false]] },
    { ...ok, claims: [["z", 1024, "0a", 1, false]] },
    { ...ok, claims: [["z", MIN_ZONE_SIZE, "0A", 1, false]] },
    { ...ok, claims: [["z", MIN_ZONE_SIZE, "0a0", 1, false]] },
    { ...ok, claims: [["z", MIN_ZONE_SIZE, "0a", 0, false]] },
    { ...ok, claims: [["z", MIN_ZONE_SIZE, "0a", 65536, false]] },
    { ...ok, claims: Array(65).fill(["z", MIN_ZONE_SIZE, "0a", 1, false]) },
    { type: LIMIT_MESSAGE, op: "release", claims: "x" },
    // the sync flag of a zone reference is checked like every other field
    { ...ok, claims: [["z", MIN_ZONE_SIZE, "0a", 1]] },
    { ...ok, claims: [["z", MIN_ZONE_SIZE, "0a", 1, "yes"]] },
    { type: LIMIT_MESSAGE, op: "fail", id: 1, zone: ["z", MIN_ZONE_SIZE, 1000, 1], keys: ["a1"] },
    { type: LIMIT_MESSAGE, op: "fail", id: 1, zone: ["z", MIN_ZONE_SIZE, 0, false], keys: ["a1"] },
    { type: LIMIT_MESSAGE, op: "fail", id: 1, zone: ["z", MIN_ZONE_SIZE, 1000, false], keys: ["a b"] },
    { type: LIMIT_MESSAGE, op: "failures", zone: ["z", MIN_ZONE_SIZE, 1000], keys: ["a1"] },
    { type: LIMIT_MESSAGE, op: "acquired", id: 1, ok: false, index: 0, reason: "other" },
    { type: LIMIT_MESSAGE, op: "count", id: 1, count: Infinity },
    { type: LIMIT_MESSAGE, op: "secret", key: "short" },
  ];
  for (const m of bad) assert.equal(isLimitMessage(m), false, JSON.stringify(m));
  // the master ignores them: no reply, no count
  const p = pair();
  const forget = installLimitMaster(p.master);
  const replies: unknown[] = [];
  p.worker.on("message", (m) => replies.push(m));
  for (const m of bad) p.master.emit("message", m);
  forget();
  assert.equal(limitMaster.store.local.connZone({ name: "z", size: MIN_ZONE_SIZE }).keys, 0);
});

test("a master that never answers: the worker goes on unlimited after 5 s instead of holding the session", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const silent: IpcEndpoint = { send: () => true, on: () => silent };
  connectLimitWorker(silent);
  const store = limitStore();
  let result: unknown;
  const asked = store.acquire([{ zone: { name: "silent", size: MIN_ZONE_SIZE }, key: "0a000001", limit: 1 }]).then((r) => (result = r));
  await Promise.resolve();
  t.mock.timers.tick(4999);
  await Promise.resolve();
  assert.equal(result, undefined);
  t.mock.timers.tick(1);
  await asked;
  assert.deepEqual(result, { ok: true });
});

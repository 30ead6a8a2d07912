/**
 * The master never trusts what comes over a worker's channel: malformed
 * messages (from a broken or compromised worker) are dropped, they neither
 * throw in the master's listeners nor disturb the shared session cache.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import {
  ReplicatedSessionStore,
  SESSION_CACHE_MESSAGE,
  connectSessionCacheWorker,
  installSessionCacheMaster,
  replicasLoaded,
  sessionCacheMaster,
} from "../../src/event/tls-session-ipc.js";
import { workerMessage } from "../../src/process/worker-config.js";

const T = SESSION_CACHE_MESSAGE;
const GARBAGE: unknown[] = [
  null,
  undefined,
  0,
  "listening",
  [],
  {},
  { t: 1 },
  { t: "failed", message: 7 },
  { type: T },
  { type: T, op: "subscribe" },
  { type: T, op: "subscribe", cache: "c", size: 0 },
  { type: T, op: "put", cache: "c", size: 1024, entries: [["0102", null, 1]] },
  { type: T, op: "put", cache: "c", size: 1024, entries: [["not hex", "AA==", 1]] },
  { type: T, op: "put", cache: "c", size: 1024, entries: [["0102", "AA==", Number.NaN]] },
  { type: T, op: "put", cache: "c", size: -1, entries: [] },
  { type: T, op: "put", cache: "c", size: 1024, entries: "x" },
  { type: T, op: "drop", cache: {}, size: 1024, ids: ["0102"] },
  { type: T, op: "drop", cache: "c", size: 1024, ids: [7] },
  { type: T, op: "ticketKey", cache: "c", size: 1024, rotateSec: 0 },
  { type: T, op: "ticketKey", cache: "c", size: 1024, rotateSec: Number.NaN },
  { type: T, op: "synced", cache: 7 },
  { type: T, op: "nope" },
];

test("a worker's own messages are recognised; anything else is not", () => {
  assert.deepEqual(workerMessage({ t: "listening" }), { t: "listening" });
  assert.deepEqual(workerMessage({ t: "failed", message: "x" }), { t: "failed", message: "x" });
  assert.deepEqual(workerMessage({ t: "failed", message: 7 }), { t: "failed", message: "worker failed" });
  for (const m of [null, undefined, 0, "listening", [], {}, { t: 1 }, { type: T, op: "subscribe" }]) assert.equal(workerMessage(m), undefined);
});

function fakeWorker(): EventEmitter & { sent: unknown[]; send(m: unknown): boolean } {
  const worker = new EventEmitter() as EventEmitter & { sent: unknown[]; send(m: unknown): boolean };
  worker.sent = [];
  worker.send = (m: unknown) => {
    worker.sent.push(m);
    return true;
  };
  return worker;
}

test("malformed session-cache messages are dropped; the cache keeps working", async () => {
  // the process's one registry, as in the master; cache "c" is this test's alone
  const master = sessionCacheMaster;
  const a = fakeWorker();
  const b = fakeWorker();
  const uninstall = [installSessionCacheMaster(a), installSessionCacheMaster(b)];
  try {
    for (const m of GARBAGE) assert.doesNotThrow(() => a.emit("message", m), JSON.stringify(m));
    assert.deepEqual(a.sent, [], "no answer to garbage");
    const expires = Date.now() + 60_000;
    a.emit("message", { type: T, op: "subscribe", cache: "c", size: 1 << 20 });
    b.emit("message", { type: T, op: "subscribe", cache: "c", size: 1 << 20 });
    // nothing live yet: each subscriber is told at once that its replica is loaded
    const synced = { type: T, op: "synced", cache: "c" };
    assert.deepEqual(a.sent, [synced]);
    a.emit("message", { type: T, op: "put", cache: "c", size: 1 << 20, entries: [["0102", "c2Vzc2lvbg==", expires]] });
    assert.equal(String(master.cache("c", 1 << 20).lookup(Buffer.from([1, 2]))), "session");
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(a.sent, [synced], "a worker does not hear back its own sessions");
    assert.deepEqual(b.sent, [synced, { type: T, op: "put", cache: "c", size: 1, entries: [["0102", "c2Vzc2lvbg==", expires]] }]);
    // A worker that starts later receives the live entries, then the word that they are all there.
    const c = fakeWorker();
    uninstall.push(installSessionCacheMaster(c));
    c.emit("message", { type: T, op: "subscribe", cache: "c", size: 1 << 20 });
    assert.deepEqual(c.sent, [{ type: T, op: "put", cache: "c", size: 1 << 20, entries: [["0102", "c2Vzc2lvbg==", expires]] }, synced]);
    b.emit("message", { type: T, op: "drop", cache: "c", size: 1 << 20, ids: ["0102"] });
    assert.equal(master.cache("c", 1 << 20).lookup(Buffer.from([1, 2])), undefined);
  } finally {
    for (const u of uninstall) u();
  }
});

test("a starting worker accepts once its replicas hold the master's entries (a reload loses no session), or after the wait", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  // this test file's process plays the worker: its `process` is the channel to the master
  connectSessionCacheWorker();
  const fromMaster = (m: unknown): boolean => (process as unknown as EventEmitter).emit("message", m);
  const store = new ReplicatedSessionStore(process, "r", 1 << 20);
  let loaded = false;
  const waiting = replicasLoaded(2000).then(() => void (loaded = true));
  // the snapshot arrives: an entry, then the end of it
  fromMaster({ type: T, op: "put", cache: "r", size: 1 << 20, entries: [["0a0b", "c2Vzc2lvbg==", Date.now() + 60_000]] });
  await new Promise((r) => setImmediate(r));
  assert.equal(loaded, false, "not before the master says the snapshot is complete");
  fromMaster({ type: T, op: "synced", cache: "r" });
  await waiting;
  assert.equal(String(store.lookup(Buffer.from([10, 11]))), "session", "the old worker's session is there at the first accept");
  // once loaded, nothing more to wait for
  await replicasLoaded(2000);

  // a cache whose master never answers: the worker serves after the wait, not never
  new ReplicatedSessionStore(process, "silent", 1 << 20);
  let gaveUp = false;
  const bounded = replicasLoaded(2000).then(() => void (gaveUp = true));
  t.mock.timers.tick(1999);
  await new Promise((r) => setImmediate(r));
  assert.equal(gaveUp, false);
  t.mock.timers.tick(1);
  await bounded;
  assert.equal(gaveUp, true);
});

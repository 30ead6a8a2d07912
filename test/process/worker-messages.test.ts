/**
 * The master never trusts what comes over a worker's channel: malformed
 * messages (from a broken or compromised worker) are dropped, they neither
 * throw in the master's listeners nor disturb the shared session cache.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { SESSION_CACHE_MESSAGE, installSessionCacheMaster, sessionCacheMaster } from "../../src/event/tls-session-ipc.js";
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
    a.emit("message", { type: T, op: "put", cache: "c", size: 1 << 20, entries: [["0102", "c2Vzc2lvbg==", expires]] });
    assert.equal(String(master.cache("c", 1 << 20).lookup(Buffer.from([1, 2]))), "session");
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(a.sent, [], "a worker does not hear back its own sessions");
    assert.deepEqual(b.sent, [{ type: T, op: "put", cache: "c", size: 1, entries: [["0102", "c2Vzc2lvbg==", expires]] }]);
    // A worker that starts later receives the live entries.
    const c = fakeWorker();
    uninstall.push(installSessionCacheMaster(c));
    c.emit("message", { type: T, op: "subscribe", cache: "c", size: 1 << 20 });
    assert.deepEqual(c.sent, [{ type: T, op: "put", cache: "c", size: 1 << 20, entries: [["0102", "c2Vzc2lvbg==", expires]] }]);
    b.emit("message", { type: T, op: "drop", cache: "c", size: 1 << 20, ids: ["0102"] });
    assert.equal(master.cache("c", 1 << 20).lookup(Buffer.from([1, 2])), undefined);
  } finally {
    for (const u of uninstall) u();
  }
});

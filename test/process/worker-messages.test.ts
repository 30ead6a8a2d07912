/**
 * The master never trusts what comes over a worker's channel: malformed
 * messages (from a broken or compromised worker) are dropped, they neither
 * throw in the master's listeners nor disturb the shared session cache.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { SESSION_CACHE_MESSAGE, SessionCacheMaster, installSessionCacheMaster } from "../../src/event/tls-session-store.js";
import { workerMessage } from "../../src/process/worker-config.js";

const T = SESSION_CACHE_MESSAGE;
const GARBAGE: unknown[] = [
  null, undefined, 0, "listening", [], {}, { t: 1 }, { t: "failed", message: 7 },
  { type: T }, { type: T, op: "get" }, { type: T, op: "get", seq: 1, cache: "c", size: 1024, id: 5 },
  { type: T, op: "set", cache: "c", size: 1024, id: "AA==", data: null, ttl: 1 },
  { type: T, op: "set", cache: "c", size: -1, id: "AA==", data: "AA==", ttl: 1 },
  { type: T, op: "delete", cache: {}, size: 1024, id: "AA==" },
  { type: T, op: "ticketKey", cache: "c", size: 1024, rotateSec: 0 },
  { type: T, op: "ticketKey", cache: "c", size: 1024, rotateSec: Number.NaN },
  { type: T, op: "nope" },
];

test("a worker's own messages are recognised; anything else is not", () => {
  assert.deepEqual(workerMessage({ t: "listening" }), { t: "listening" });
  assert.deepEqual(workerMessage({ t: "failed", message: "x" }), { t: "failed", message: "x" });
  assert.deepEqual(workerMessage({ t: "failed", message: 7 }), { t: "failed", message: "worker failed" });
  for (const m of [null, undefined, 0, "listening", [], {}, { t: 1 }, { type: T, op: "get" }]) assert.equal(workerMessage(m), undefined);
});

test("malformed session-cache messages are dropped; the cache keeps working", () => {
  const master = new SessionCacheMaster();
  const worker = new EventEmitter() as EventEmitter & { sent: unknown[]; send(m: unknown): boolean };
  worker.sent = [];
  worker.send = (m: unknown) => {
    worker.sent.push(m);
    return true;
  };
  const uninstall = installSessionCacheMaster(worker, master);
  try {
    for (const m of GARBAGE) assert.doesNotThrow(() => worker.emit("message", m), JSON.stringify(m));
    assert.deepEqual(worker.sent, [], "no answer to garbage");
    worker.emit("message", { type: T, op: "set", cache: "c", size: 1 << 20, id: "AQI=", data: "c2Vzc2lvbg==", ttl: 60 });
    worker.emit("message", { type: T, op: "get", seq: 9, cache: "c", size: 1 << 20, id: "AQI=" });
    assert.deepEqual(worker.sent, [{ type: T, op: "reply", seq: 9, data: "c2Vzc2lvbg==" }]);
  } finally {
    uninstall();
    master.close();
  }
});

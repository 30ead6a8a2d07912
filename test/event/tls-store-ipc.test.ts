/**
 * The IPC messages of `ssl_session_cache ... sync` (event/tls-store-ipc.ts):
 * every field is checked, so a broken peer's message is dropped, never used.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { isTlsStoreMessage, TLS_STORE_MESSAGE } from "../../src/event/tls-store-ipc.js";

const type = TLS_STORE_MESSAGE;
const key = Buffer.alloc(48, 7).toString("base64");

test("well-formed messages pass; anything malformed, oversized or of another kind is dropped", () => {
  const good = [
    { type, op: "fetch", seq: 1, cache: "MAIL", context: "ab12", id: "00ff" },
    { type, op: "fetched", seq: 1, data: null },
    { type, op: "fetched", seq: 1, data: "AAAA" },
    { type, op: "save", cache: "MAIL", context: "ab12", id: "00ff", data: "AAAA", ttl: 300 },
    { type, op: "remove", cache: "MAIL", context: "ab12", id: "00ff" },
    { type, op: "keys", cache: "MAIL", period: 300 },
    { type, op: "ring", cache: "MAIL", period: 300, current: 5, keys: [[5, key]] },
  ];
  for (const m of good) assert.equal(isTlsStoreMessage(m), true, JSON.stringify(m));
  const bad: unknown[] = [
    null,
    "x",
    { type: "other", op: "fetch", seq: 1, cache: "MAIL", context: "ab12", id: "00ff" },
    { type, op: "fetch", seq: -1, cache: "MAIL", context: "ab12", id: "00ff" },
    { type, op: "fetch", seq: 1, cache: "MAIL", context: "ab12", id: "zz" },
    { type, op: "fetch", seq: 1, cache: "MAIL", context: "not hex", id: "00ff" },
    { type, op: "fetch", seq: 1, cache: "x".repeat(300), context: "ab12", id: "00ff" },
    { type, op: "fetched", seq: 1, data: "not base64!" },
    { type, op: "fetched", seq: 1, data: "A".repeat(50_000) },
    { type, op: "save", cache: "MAIL", context: "ab12", id: "00ff", data: "AAAA", ttl: 0 },
    { type, op: "keys", cache: "MAIL", period: 1.5 },
    { type, op: "ring", cache: "MAIL", period: 300, current: 5, keys: [[5, "short"]] },
    { type, op: "ring", cache: "MAIL", period: 300, current: 5, keys: Array.from({ length: 9 }, (_, i) => [i, key]) },
    { type, op: "unknown" },
  ];
  for (const m of bad) assert.equal(isTlsStoreMessage(m), false, JSON.stringify(m)?.slice(0, 100));
});

/**
 * The limit store's zones: limit_conn counts per key bounded by the zone's
 * bytes (a full zone refuses new keys, as nginx's slab does), all-or-none
 * acquires, and failure counts forgotten a window after the last failure
 * (mock Date), the least recently used entry dropped when a zone is full.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ConnZone, FailZone, MIN_ZONE_SIZE, MemoryLimitStore, connNodeBytes } from "../../src/event/limit-store.js";

test("a key costs what nginx's slab gives it: 64 bytes for IPv4 and IPv6 binary addresses, more for long keys", () => {
  assert.equal(connNodeBytes(4), 64);
  assert.equal(connNodeBytes(16), 64);
  assert.equal(connNodeBytes(28), 64);
  assert.equal(connNodeBytes(29), 128);
  assert.equal(connNodeBytes(255), 512);
});

test("a conn zone counts per key up to the limit, frees a key at zero, and refuses new keys when full", () => {
  const zone = new ConnZone(MIN_ZONE_SIZE);
  assert.equal(zone.take("7f000001", 2), "ok");
  assert.equal(zone.take("7f000001", 2), "ok");
  assert.equal(zone.take("7f000001", 2), "limit");
  zone.give("7f000001");
  assert.equal(zone.count("7f000001"), 1);
  zone.give("7f000001");
  assert.equal(zone.keys, 0);
  // 32k less two pages for the pool: 384 keys of 64 bytes
  for (let i = 0; i < 384; i++) assert.equal(zone.take(i.toString(16).padStart(8, "0"), 1), "ok", `key ${i}`);
  assert.equal(zone.take("ffffffff", 1), "full");
  // a known key still counts while the zone is full; a freed node makes room
  assert.equal(zone.take("00000001", 2), "ok");
  zone.give("00000005");
  assert.equal(zone.take("ffffffff", 1), "ok");
});

test("an acquire takes every claim or none: a later refusal gives the earlier ones back", async () => {
  const store = new MemoryLimitStore();
  const a = { name: "a", size: MIN_ZONE_SIZE };
  const b = { name: "b", size: MIN_ZONE_SIZE };
  assert.deepEqual(await store.acquire([{ zone: b, key: "01", limit: 1 }]), { ok: true });
  assert.deepEqual(
    await store.acquire([
      { zone: a, key: "01", limit: 1 },
      { zone: b, key: "01", limit: 1 },
    ]),
    { ok: false, index: 1, reason: "limit" },
  );
  assert.equal(store.connZone(a).count("01"), 0);
  store.release([{ zone: b, key: "01", limit: 1 }]);
  assert.deepEqual(
    await store.acquire([
      { zone: a, key: "01", limit: 1 },
      { zone: b, key: "01", limit: 1 },
    ]),
    { ok: true },
  );
  // the same name with another size is another zone (a reload that resizes starts afresh, as nginx's shared memory)
  assert.equal(store.connZone({ name: "a", size: 2 * MIN_ZONE_SIZE }).count("01"), 0);
});

test("failures are forgotten a window after the last one", (t) => {
  t.mock.timers.enable({ apis: ["Date"], now: 1_000_000 });
  const store = new MemoryLimitStore();
  const zone = { name: "f", size: MIN_ZONE_SIZE, windowMs: 60_000 };
  store.recordFailureNow(zone, ["aX", "lY"]);
  t.mock.timers.tick(50_000);
  store.recordFailureNow(zone, ["aX", "lZ"]);
  assert.equal(store.failuresNow(zone, ["aX"]), 2);
  assert.equal(store.failuresNow(zone, ["aQ", "lY"]), 1);
  t.mock.timers.tick(10_000);
  // lY's window is over; aX's last failure was 10 s ago
  assert.equal(store.failuresNow(zone, ["aQ", "lY"]), 0);
  assert.equal(store.failuresNow(zone, ["aX", "lY"]), 2);
  t.mock.timers.tick(50_000);
  assert.equal(store.failuresNow(zone, ["aX"]), 0);
  store.recordFailureNow(zone, ["aX"]);
  assert.equal(store.failuresNow(zone, ["aX"]), 1);
});

test("a full failure zone drops its least recently failed entry", () => {
  const zone = new FailZone(MIN_ZONE_SIZE); // 24k / 128 bytes: 192 entries
  for (let i = 0; i < 192; i++) zone.record(`k${i}`, 60_000, 0);
  zone.record("k0", 60_000, 1);
  zone.record("new", 60_000, 2);
  assert.equal(zone.size, 192);
  assert.equal(zone.count("k1", 3), 0);
  assert.equal(zone.count("k0", 3), 2);
  assert.equal(zone.count("new", 3), 1);
});

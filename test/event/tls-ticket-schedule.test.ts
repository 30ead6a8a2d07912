/**
 * The shared ticket key schedule (event/tls-ticket-schedule.ts) against a
 * real Redis, two schedules standing for two nodes, on a mocked clock; and
 * the choice of context by key name (mail/ssl/ticket-ring.ts).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import type tls from "node:tls";
import { Redis } from "ioredis";
import { SharedStoreClient } from "../../src/event/shared-store/client.js";
import { setSharedStoreClient } from "../../src/event/shared-store/current.js";
import { TicketSchedule, type TicketRing, pollDelay } from "../../src/event/tls-ticket-schedule.js";
import { TicketContexts } from "../../src/mail/ssl/ticket-ring.js";
import { type RedisServer, startRedis } from "../support/redis.js";

let redis: RedisServer;
let client: SharedStoreClient;
let inspect: Redis;
const P = 60_000;

before(async () => {
  redis = await startRedis();
  client = new SharedStoreClient(
    { address: { host: "127.0.0.1", port: redis.port }, prefix: "t:", timeoutMs: 500, db: 0, secret: randomBytes(32), text: "redis test" },
    () => undefined,
  );
  inspect = new Redis(redis.port, "127.0.0.1");
  const deadline = Date.now() + 5000;
  while (!client.up && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
});

after(async () => {
  setSharedStoreClient(undefined);
  await client.close();
  inspect.disconnect();
  await redis.close();
});

function node(logs: string[]): { schedule: TicketSchedule; ring: () => TicketRing | undefined } {
  const schedule = new TicketSchedule("C", P, (_level, m) => logs.push(m));
  let last: TicketRing | undefined;
  schedule.subscribe((r) => (last = r));
  return { schedule, ring: () => last };
}

const hex = (ring: TicketRing | undefined, slot: number): string | undefined => ring?.keys.get(slot)?.toString("hex");

test("two nodes agree on every slot's key; only one key per slot in the store; garbage is replaced; a node alone makes its own and adopts the store's", async (t) => {
  t.mock.timers.enable({ apis: ["Date"], now: 1000 * P + 10 });
  setSharedStoreClient(client);
  const logsA: string[] = [];
  const logsB: string[] = [];
  const a = node(logsA);
  const b = node(logsB);
  try {
    await a.schedule.tick();
    await b.schedule.tick();
    assert.equal(a.ring()?.current, 1000);
    for (const slot of [1000, 1001]) {
      assert.ok(hex(a.ring(), slot), `slot ${slot} known`);
      assert.equal(hex(a.ring(), slot), hex(b.ring(), slot), `slot ${slot}: the same key on both nodes`);
    }
    assert.equal((await inspect.keys("t:ticket-keys:*")).length, 2, "the current and the next slot");
    assert.deepEqual([...(a.ring()?.keys.keys() ?? [])].sort(), [1000, 1001]);

    // a period later: the next key, published a period ahead, becomes current; the old one still opens
    const next = hex(a.ring(), 1001);
    t.mock.timers.setTime(1001 * P + 5);
    await b.schedule.tick();
    await a.schedule.tick();
    assert.equal(a.ring()?.current, 1001);
    assert.equal(hex(a.ring(), 1001), next);
    assert.deepEqual([...(a.ring()?.keys.keys() ?? [])].sort(), [1000, 1001, 1002]);
    assert.equal(hex(a.ring(), 1002), hex(b.ring(), 1002));

    // garbage in the store: the known keys stay, and the garbage is replaced by them
    for (const k of await inspect.keys("t:ticket-keys:*")) await inspect.set(k, "garbage");
    await a.schedule.tick();
    await b.schedule.tick();
    assert.equal(hex(a.ring(), 1002), hex(b.ring(), 1002));
    assert.equal(hex(a.ring(), 1001), next);
    // slots 1001 and 1002 are rewritten; the past slot's key (1000) is only read, so its garbage stays (a miss)
    const stored = await Promise.all((await inspect.keys("t:ticket-keys:*")).map((k) => inspect.getBuffer(k)));
    assert.equal(stored.length, 3);
    assert.equal(stored.filter((v) => v?.equals(Buffer.from("garbage"))).length, 1);

    // the store away across two rotations: each node makes its own key for the slot it does not know
    setSharedStoreClient(undefined);
    t.mock.timers.setTime(1003 * P + 5);
    await a.schedule.tick();
    await b.schedule.tick();
    assert.match(logsA.join("\n"), /ssl_session_cache "C": ticket key made on this node/);
    assert.notEqual(hex(a.ring(), 1003), hex(b.ring(), 1003), "node-local keys differ");
    // back: the first node offers its key, the other adopts it and says so
    setSharedStoreClient(client);
    await a.schedule.tick();
    await b.schedule.tick();
    assert.equal(hex(a.ring(), 1003), hex(b.ring(), 1003));
    assert.match(logsB.join("\n"), /the shared store's ticket key is used again/);
    assert.equal(hex(a.ring(), 1004), hex(b.ring(), 1004));
  } finally {
    a.schedule.stop();
    b.schedule.stop();
    setSharedStoreClient(undefined);
  }
});

test("the context follows the ticket's key name; a previous key's ticket moves to the current key with a probability rising across the period", () => {
  const made: Buffer[] = [];
  const make = (key: Buffer): tls.SecureContext => {
    made.push(key);
    return { key } as unknown as tls.SecureContext;
  };
  const initial = { key: undefined } as unknown as tls.SecureContext;
  const ring = new TicketContexts(initial, make);
  const name = (k: Buffer): Buffer => k.subarray(0, 16);
  assert.equal(ring.select(randomBytes(16)), initial, "before the first ring: the server's own context");
  const keys = new Map([9, 10, 11].map((s) => [s, randomBytes(48)]));
  ring.update({ periodMs: 1000, current: 10, keys });
  assert.equal(made.length, 3);
  const keyOf = (c: tls.SecureContext): Buffer => (c as unknown as { key: Buffer }).key;
  assert.equal(keyOf(ring.select(undefined)), keys.get(10), "no ticket: the current key");
  assert.equal(keyOf(ring.select(randomBytes(16))), keys.get(10), "an unknown key: the current key (full handshake)");
  assert.equal(keyOf(ring.select(name(keys.get(11)!))), keys.get(11), "a node a little ahead: its next key opens");
  assert.equal(keyOf(ring.select(name(keys.get(10)!))), keys.get(10));
  // the previous key: kept while random() >= the elapsed fraction of the current period
  assert.equal(keyOf(ring.select(name(keys.get(9)!), 10_100, () => 0.2)), keys.get(9), "10% into the period, random 0.2: resumes");
  assert.equal(keyOf(ring.select(name(keys.get(9)!), 10_300, () => 0.2)), keys.get(10), "30% into it, random 0.2: moves to the current key");
  let moved = 0;
  for (let i = 0; i < 1000; i++) if (keyOf(ring.select(name(keys.get(9)!), 10_500, Math.random)) === keys.get(10)) moved++;
  assert.ok(moved > 400 && moved < 600, `about half moved half-way (${moved})`);
  // a rotation keeps the contexts of keys still known
  ring.update({ periodMs: 1000, current: 11, keys: new Map([10, 11, 12].map((s) => [s, s === 12 ? randomBytes(48) : keys.get(s)!])) });
  assert.equal(made.length, 4, "one new context, for the new key only");
  assert.equal(keyOf(ring.select(name(keys.get(9)!))), keys.get(11), "the retired key: full handshake");
  assert.deepEqual(ring.slots, [10, 11, 12]);
});

test("a node serving its own key asks the store each second; otherwise a quarter period, at most a minute", () => {
  assert.equal(pollDelay(300_000, false), 60_000, "ssl_session_timeout 5m: once a minute");
  assert.equal(pollDelay(300_000, true), 1000, "until the store's key is back");
  assert.equal(pollDelay(4000, false), 1000);
  assert.equal(pollDelay(400, true), 250, "never slower than the usual poll");
});

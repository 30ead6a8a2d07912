/**
 * limit_conn and failure counts of `sync` zones in the shared store, as
 * one node (its master) sees them. The node's own counts stay in its
 * MemoryLimitStore and are the truth for this node (limit-node-store.ts);
 * the store only learns them, so that every node can add up the others'.
 *
 *  - Connections: per zone and key, one hash whose fields are node ids
 *    (random per master start) holding that node's count. A Lua script
 *    adds up the fields of live nodes (heartbeats in a sorted set, Redis's
 *    clock) and writes the node's new count only if the sum stays within
 *    the limit, atomically. A release writes the node's count (HDEL at 0).
 *    Writing counts rather than increments makes a repeated or lost
 *    message harmless: the next write or re-publish sets the truth.
 *  - Fields of dead nodes (no heartbeat for NODE_TTL_MS) are not counted
 *    and are deleted when seen; a crashed node's connections stop counting
 *    within that time.
 *  - When a write was lost (store down, timeout) or the store forgot the
 *    node (restart, flush: its heartbeat entry is new again), the node
 *    re-publishes every count it holds on the next heartbeat.
 *  - Failures: INCR + PEXPIRE window per key; a failure check takes the
 *    highest count among the keys.
 *
 * Names are seal.key('limit', ...): no address or login hash in clear.
 * Counts are plain integers (Redis adds them up), so everything read is
 * parsed and clamped, and a key of the wrong type is deleted by the script
 * rather than failing every login.
 * Rules: docs/shared-store.md#limits.
 */
import { randomBytes } from "node:crypto";
import type { SharedStoreClient } from "./client.js";

/** How often the node tells the store it is alive. */
export const HEARTBEAT_MS = 2000;
/** A node whose last heartbeat is older than this no longer counts. */
export const NODE_TTL_MS = 3 * HEARTBEAT_MS + 1000;
/** A connection hash nobody touched for this long is dropped by Redis (live counts are re-published long before). */
const CONN_KEY_TTL_MS = 10 * 60 * 1000;
/** Every held count is re-published this often anyway (a flushed store learns them again). */
const REPUBLISH_EVERY_MS = 60 * 1000;
/** The highest count one node can hold for one key (limit_conn's own maximum). */
const MAX_COUNT = 65535;
/** The highest failure count believed. */
const MAX_FAILURES = 1_000_000;

/** KEYS: conn hash, nodes zset. ARGV: node, new count, limit, node ttl, key ttl. -1 when written, else the other nodes' sum. */
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local fields = redis.pcall('HGETALL', KEYS[1])
if type(fields) ~= 'table' or fields.err then redis.call('DEL', KEYS[1]); fields = {} end
local others = 0
for i = 1, #fields, 2 do
  local node = fields[i]
  if node ~= ARGV[1] then
    local seen = redis.pcall('ZSCORE', KEYS[2], node)
    if type(seen) == 'table' then redis.call('DEL', KEYS[2]); seen = nil end
    local n = tonumber(fields[i + 1])
    -- a heartbeat from the future is no node's: only Redis's clock writes them
    if seen and tonumber(seen) and tonumber(seen) >= now - tonumber(ARGV[4]) and tonumber(seen) <= now + 1000 and n and n >= 1 then
      others = others + math.min(math.floor(n), ${MAX_COUNT})
    else
      redis.call('HDEL', KEYS[1], node)
    end
  end
end
if others + tonumber(ARGV[2]) > tonumber(ARGV[3]) then return others end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return -1
`;

/** KEYS: conn hashes. ARGV: node, key ttl, then one count per key. Sets (or, at 0, deletes) the node's field. */
const PUBLISH = `
for i = 1, #KEYS do
  local n = tonumber(ARGV[i + 2])
  local ok = redis.pcall('HLEN', KEYS[i])
  if type(ok) == 'table' then redis.call('DEL', KEYS[i]) end
  if n > 0 then
    redis.call('HSET', KEYS[i], ARGV[1], n)
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  else
    redis.call('HDEL', KEYS[i], ARGV[1])
  end
end
return #KEYS
`;

/** KEYS: nodes zset. ARGV: node, node ttl. 1 when the store did not know the node (new, flushed, restarted). */
const HEARTBEAT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ok = redis.pcall('ZCARD', KEYS[1])
if type(ok) == 'table' then redis.call('DEL', KEYS[1]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return redis.call('ZADD', KEYS[1], now, ARGV[1])
`;

/** KEYS: failure keys. ARGV: window ms. A key holding anything but a counter starts again at 1. */
const RECORD_FAILURE = `
for i = 1, #KEYS do
  local n = redis.pcall('INCR', KEYS[i])
  if type(n) == 'table' then redis.call('DEL', KEYS[i]); redis.call('INCR', KEYS[i]) end
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
return #KEYS
`;

/** A count read from the store: an integer in [0, max], else 0 (garbage counts for nothing). */
export function parseCount(value: unknown, max: number): number {
  const text = typeof value === "number" ? String(value) : Buffer.isBuffer(value) ? value.toString("latin1") : typeof value === "string" ? value : "";
  if (!/^-?\d{1,15}$/.test(text)) return 0;
  const n = Number(text);
  return n < 0 ? 0 : Math.min(n, max);
}

/** A connection count the node holds: where it lives in the store and how many. */
export interface HeldCount {
  readonly zone: string;
  readonly key: string;
  readonly count: number;
}

/** The store's side of the sync zones for one node. */
export class SharedLimits {
  /** This master's id in every connection hash: random, so a restarted node never inherits a dead one's counts. */
  readonly node = randomBytes(16).toString("hex");
  /** The counts the store may have wrong: keys whose write was lost since the last re-publish. */
  readonly #stale = new Map<string, { zone: string; key: string }>();
  #republishAll = true;
  #lastRepublish = 0;
  #timer: NodeJS.Timeout | undefined;
  readonly #client: () => SharedStoreClient | undefined;
  readonly #held: () => Iterable<HeldCount>;
  readonly #count: (zone: string, key: string) => number;

  /**
   * `client` is looked up at each use (a reload may change it); `held`
   * lists the node's live counts of sync zones; `count` is one of them.
   */
  constructor(client: () => SharedStoreClient | undefined, held: () => Iterable<HeldCount>, count: (zone: string, key: string) => number) {
    this.#client = client;
    this.#held = held;
    this.#count = count;
  }

  /** Starts the heartbeat (idempotent; the timer never keeps the process alive). */
  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => void this.heartbeat(), HEARTBEAT_MS);
    this.#timer.unref();
    void this.heartbeat();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #connKey(client: SharedStoreClient, zone: string, key: string): string {
    return client.seal.key("limit", "conn", zone, key);
  }

  #nodesKey(client: SharedStoreClient): string {
    return client.seal.key("limit", "nodes");
  }

  /**
   * Asks the store whether the node may hold `count` connections for
   * `key` given the other live nodes' counts, and records them if so.
   * "ok", "limit", or undefined when the store did not answer (the
   * node-local count decides alone).
   */
  async acquire(zone: string, key: string, count: number, limit: number): Promise<"ok" | "limit" | undefined> {
    const client = this.#client();
    if (!client) return undefined;
    this.start();
    const connKey = this.#connKey(client, zone, key);
    const nodes = this.#nodesKey(client);
    const answer = await client.run("limit_conn", (r) => r.eval(ACQUIRE, 2, connKey, nodes, this.node, count, limit, NODE_TTL_MS, CONN_KEY_TTL_MS));
    if (answer === -1) return "ok";
    if (typeof answer === "number" && Number.isInteger(answer) && answer >= 0) return "limit";
    // no answer (or one no script of ours gives): the store may not hold what the node holds
    this.#stale.set(connKey, { zone, key });
    return undefined;
  }

  /** Tells the store the node's count for `key` now (after a release or a refused acquire). */
  publish(zone: string, key: string): void {
    const client = this.#client();
    if (!client) return;
    const connKey = this.#connKey(client, zone, key);
    const count = this.#count(zone, key);
    void client
      .run("limit_conn", (r) => r.eval(PUBLISH, 1, connKey, this.node, CONN_KEY_TTL_MS, count))
      .then((answer) => {
        if (answer === undefined) this.#stale.set(connKey, { zone, key });
      });
  }

  /** One heartbeat; then the counts the store may have wrong are written again. */
  async heartbeat(now = Date.now()): Promise<void> {
    const client = this.#client();
    if (!client) return;
    const answer = await client.run("limit_conn", (r) => r.eval(HEARTBEAT, 1, this.#nodesKey(client), this.node, NODE_TTL_MS));
    if (answer === undefined) {
      // the store missed this node's heartbeat: it may have dropped its counts meanwhile
      this.#republishAll = true;
      return;
    }
    if (answer === 1 || now - this.#lastRepublish >= REPUBLISH_EVERY_MS) this.#republishAll = true;
    await this.#republish(client, now);
  }

  async #republish(client: SharedStoreClient, now: number): Promise<void> {
    const batch = new Map<string, number>();
    if (this.#republishAll) {
      for (const h of this.#held()) batch.set(this.#connKey(client, h.zone, h.key), h.count);
    }
    for (const [connKey, { zone, key }] of this.#stale) batch.set(connKey, this.#count(zone, key));
    if (batch.size === 0 && !this.#republishAll) return;
    const all = this.#republishAll;
    this.#republishAll = false;
    this.#stale.clear();
    this.#lastRepublish = now;
    const entries = [...batch];
    for (let i = 0; i < entries.length; i += 500) {
      const part = entries.slice(i, i + 500);
      const answer = await client.run("limit_conn", (r) =>
        r.eval(PUBLISH, part.length, ...part.map((e) => e[0]), this.node, CONN_KEY_TTL_MS, ...part.map((e) => e[1])),
      );
      if (answer === undefined) {
        // try again at the next heartbeat
        this.#republishAll = all || this.#republishAll;
        return;
      }
    }
  }

  #failKey(client: SharedStoreClient, zone: string, key: string): string {
    return client.seal.key("limit", "fail", zone, key);
  }

  /** The highest failure count among `keys` in the store, or undefined when it did not answer. */
  async failures(zone: string, keys: readonly string[]): Promise<number | undefined> {
    const client = this.#client();
    if (!client) return undefined;
    const names = keys.map((k) => this.#failKey(client, zone, k));
    // MGET answers nil for a key of another type: garbage never fails the check
    const values = await client.run("auth_fail", (r) => r.mgetBuffer(...names));
    if (!Array.isArray(values)) return undefined;
    return values.reduce<number>((max, v) => Math.max(max, parseCount(v, MAX_FAILURES)), 0);
  }

  /** Counts one failure for every key, forgotten `windowMs` after the last. */
  async recordFailure(zone: string, keys: readonly string[], windowMs: number): Promise<void> {
    const client = this.#client();
    if (!client) return;
    const names = keys.map((k) => this.#failKey(client, zone, k));
    // awaited (within the store's timeout): the next attempt, on any node, must see this one
    await client.run("auth_fail", (r) => r.eval(RECORD_FAILURE, names.length, ...names, windowMs));
  }
}

/**
 * The counters behind `limit_conn` and authentication failure throttling,
 * as one small interface: the master holds the only authoritative copy
 * (limit-ipc.ts carries the workers' requests to it), a single-process
 * server uses a MemoryLimitStore directly, and a later store (Redis) can
 * stand behind the same interface.
 *
 * Keys arrive already made (hex bytes of a limit_conn key; a keyed hash of
 * a login, never the login): the store never sees who they stand for.
 * Rules: docs/limits.md.
 */

/** A named zone with its size in bytes, as `zone=name:size` declares it. */
export interface ZoneRef {
  readonly name: string;
  readonly size: number;
  /** `sync`: counted across the nodes of a cluster through the shared store (limit-node-store.ts). */
  readonly sync?: boolean;
}

/** One limit_conn check: at most `limit` connections per `key` (hex) in `zone`. */
export interface ConnClaim {
  readonly zone: ZoneRef;
  readonly key: string;
  readonly limit: number;
}

/** An acquire either takes every claim or none; `index` names the claim that refused. */
export type AcquireResult = { readonly ok: true } | { readonly ok: false; readonly index: number; readonly reason: "limit" | "full" };

/** A failure zone: a zone plus how long a failure is remembered after the last one. */
export interface FailZoneRef extends ZoneRef {
  readonly windowMs: number;
}

/** The counters, wherever they live. */
export interface LimitStore {
  /** Takes one connection for every claim, or none (nginx releases the ones taken when a later limit refuses). */
  acquire(claims: readonly ConnClaim[]): Promise<AcquireResult>;
  /** Gives back connections taken by a successful acquire. */
  release(claims: readonly ConnClaim[]): void;
  /** The highest failure count among `keys` still inside the window. */
  failures(zone: FailZoneRef, keys: readonly string[]): Promise<number>;
  /**
   * Counts one failed authentication for every key; settles once counted
   * (or once the store gave up), so the refusal reaches the client only
   * when the next attempt, on any worker or node, will see it.
   */
  recordFailure(zone: FailZoneRef, keys: readonly string[]): Promise<void>;
}

/** nginx's page size: the smallest zone is 8 pages, as ngx_stream_limit_conn_zone requires. */
export const ZONE_PAGE = 4096;
export const MIN_ZONE_SIZE = 8 * ZONE_PAGE;

/**
 * What one key costs in nginx's slab allocator: the rbtree node up to its
 * colour field (32 bytes), the counter (4) and the key, rounded up to a
 * power of two (a 4-byte IPv4 key and a 16-byte IPv6 key both take 64).
 */
export function connNodeBytes(keyBytes: number): number {
  let size = 8;
  while (size < 36 + keyBytes) size *= 2;
  return size;
}

/** The bytes of a zone left for keys: nginx's slab pool keeps about two pages for itself. */
function usableBytes(size: number): number {
  return Math.max(size - 2 * ZONE_PAGE, ZONE_PAGE);
}

/** One limit_conn zone: connection counts per key, bounded by the zone's bytes. */
export class ConnZone {
  readonly #counts = new Map<string, number>();
  readonly #capacity: number;
  #used = 0;

  constructor(size: number) {
    this.#capacity = usableBytes(size);
  }

  /** Takes one connection for `key` unless it holds `limit` already or the zone is full. */
  take(key: string, limit: number): "ok" | "limit" | "full" {
    const n = this.#counts.get(key);
    if (n === undefined) {
      const cost = connNodeBytes(key.length / 2);
      if (this.#used + cost > this.#capacity) return "full";
      this.#used += cost;
      this.#counts.set(key, 1);
      return "ok";
    }
    if (n >= limit) return "limit";
    this.#counts.set(key, n + 1);
    return "ok";
  }

  /** Gives one connection back; the key's node is freed at zero, as nginx's cleanup does. */
  give(key: string): void {
    const n = this.#counts.get(key);
    if (n === undefined) return;
    if (n > 1) {
      this.#counts.set(key, n - 1);
      return;
    }
    this.#counts.delete(key);
    this.#used -= connNodeBytes(key.length / 2);
  }

  count(key: string): number {
    return this.#counts.get(key) ?? 0;
  }

  /** Every key with its count (the node re-publishes them to the shared store). */
  entries(): IterableIterator<[string, number]> {
    return this.#counts.entries();
  }

  get keys(): number {
    return this.#counts.size;
  }
}

/** What a failure entry costs: a 43-character key plus the count and expiry, in a 128-byte node. */
export const FAIL_NODE_BYTES = 128;

/**
 * One failure zone: per key, the failures counted and when they are
 * forgotten (`window` after the last one). When the zone is full the entry
 * used least recently goes, as nginx's limit_req zone drops its oldest.
 */
export class FailZone {
  /** Insertion order is recency order: a touched key is moved to the end. */
  readonly #entries = new Map<string, { count: number; expires: number }>();
  readonly #capacity: number;

  constructor(size: number) {
    this.#capacity = Math.max(1, Math.floor(usableBytes(size) / FAIL_NODE_BYTES));
  }

  count(key: string, now: number): number {
    const e = this.#entries.get(key);
    if (e === undefined) return 0;
    if (e.expires <= now) {
      this.#entries.delete(key);
      return 0;
    }
    return e.count;
  }

  record(key: string, windowMs: number, now: number): void {
    const e = this.#entries.get(key);
    const count = e !== undefined && e.expires > now ? e.count + 1 : 1;
    this.#entries.delete(key);
    while (this.#entries.size >= this.#capacity) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
    this.#entries.set(key, { count, expires: now + windowMs });
  }

  get size(): number {
    return this.#entries.size;
  }
}

/** Zones by name and size: a zone whose size changes on reload is a new zone, as a shared memory zone is in nginx. */
function zoneId(zone: ZoneRef): string {
  return `${zone.name}:${zone.size}`;
}

/** The in-process store: the master's, or a single-process server's. */
export class MemoryLimitStore implements LimitStore {
  readonly #conn = new Map<string, ConnZone>();
  readonly #fail = new Map<string, FailZone>();

  connZone(zone: ZoneRef): ConnZone {
    const id = zoneId(zone);
    let z = this.#conn.get(id);
    if (!z) this.#conn.set(id, (z = new ConnZone(zone.size)));
    return z;
  }

  failZone(zone: ZoneRef): FailZone {
    const id = zoneId(zone);
    let z = this.#fail.get(id);
    if (!z) this.#fail.set(id, (z = new FailZone(zone.size)));
    return z;
  }

  /** Synchronous acquire, for the master's message handler. */
  acquireNow(claims: readonly ConnClaim[]): AcquireResult {
    for (let i = 0; i < claims.length; i++) {
      const c = claims[i]!;
      const result = this.connZone(c.zone).take(c.key, c.limit);
      if (result !== "ok") {
        this.release(claims.slice(0, i));
        return { ok: false, index: i, reason: result };
      }
    }
    return { ok: true };
  }

  acquire(claims: readonly ConnClaim[]): Promise<AcquireResult> {
    return Promise.resolve(this.acquireNow(claims));
  }

  release(claims: readonly ConnClaim[]): void {
    for (const c of claims) this.connZone(c.zone).give(c.key);
  }

  failuresNow(zone: FailZoneRef, keys: readonly string[]): number {
    const z = this.failZone(zone);
    const now = Date.now();
    return keys.reduce((max, k) => Math.max(max, z.count(k, now)), 0);
  }

  failures(zone: FailZoneRef, keys: readonly string[]): Promise<number> {
    return Promise.resolve(this.failuresNow(zone, keys));
  }

  recordFailureNow(zone: FailZoneRef, keys: readonly string[]): void {
    const z = this.failZone(zone);
    const now = Date.now();
    for (const k of keys) z.record(k, zone.windowMs, now);
  }

  recordFailure(zone: FailZoneRef, keys: readonly string[]): Promise<void> {
    this.recordFailureNow(zone, keys);
    return Promise.resolve();
  }
}

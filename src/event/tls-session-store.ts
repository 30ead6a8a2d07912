/**
 * Session stores for TLS resumption, apart from any protocol: the store
 * interface and the in-process LRU behind ssl_session_cache builtin, behind
 * a shared cache in a single process, and behind each worker's replica of a
 * shared cache (tls-session-ipc.ts keeps the replicas in step).
 */

/**
 * A cache of serialized TLS sessions keyed by session id. Lookups are
 * synchronous: a handshake waits for them, so they never leave the process.
 */
export interface SharedSessionStore {
  lookup(id: Buffer): Buffer | undefined;
  set(id: Buffer, data: Buffer, ttlSec: number): void;
  delete(id: Buffer): void;
}

/** nginx sizes shared caches at about 4000 sessions per megabyte. */
export function sessionsForBytes(size: number): number {
  return Math.max(1, Math.floor((size * 4000) / (1024 * 1024)));
}

interface Entry {
  readonly data: Buffer;
  /** Milliseconds since the epoch, as Date.now(). */
  readonly expires: number;
}

/** How often idle stores drop their expired sessions. */
const SWEEP_INTERVAL_MS = 10_000;
const sweepable = new Set<WeakRef<MemorySessionStore>>();
let sweeper: NodeJS.Timeout | undefined;

function sweepAll(): void {
  for (const ref of sweepable) {
    const store = ref.deref();
    if (store) store.sweep();
    else sweepable.delete(ref);
  }
}

/**
 * An in-process LRU with expiry; the oldest session goes when full.
 * Expired sessions are dropped when met, on every insert and every ten
 * seconds, so an idle server gives their memory back.
 */
export class MemorySessionStore implements SharedSessionStore {
  readonly #entries = new Map<string, Entry>();
  readonly #capacity: number;
  readonly #now: () => number;

  constructor(capacity: number, now: () => number = Date.now) {
    this.#capacity = capacity;
    this.#now = now;
    sweepable.add(new WeakRef(this));
    if (!sweeper) {
      sweeper = setInterval(sweepAll, SWEEP_INTERVAL_MS);
      sweeper.unref();
    }
  }

  /**
   * Drops expired sessions from the oldest end, stopping at the first live
   * one (entries are kept in insertion order, which is nearly expiry order).
   */
  sweep(): void {
    const now = this.#now();
    for (const [key, e] of this.#entries) {
      if (e.expires > now) return;
      this.#entries.delete(key);
    }
  }

  get size(): number {
    return this.#entries.size;
  }

  lookup(id: Buffer): Buffer | undefined {
    const key = id.toString("hex");
    const e = this.#entries.get(key);
    if (!e) return undefined;
    if (e.expires <= this.#now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return e.data;
  }

  set(id: Buffer, data: Buffer, ttlSec: number): void {
    this.setUntil(id.toString("hex"), data, this.#now() + ttlSec * 1000);
  }

  /** Stores under a hex key with an absolute expiry (replication keeps the origin's expiry). */
  setUntil(key: string, data: Buffer, expires: number): void {
    if (this.#capacity <= 0 || expires <= this.#now()) return;
    this.sweep();
    this.#entries.delete(key);
    while (this.#entries.size >= this.#capacity) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
    this.#entries.set(key, { data, expires });
  }

  delete(id: Buffer): void {
    this.deleteKey(id.toString("hex"));
  }

  deleteKey(key: string): void {
    this.#entries.delete(key);
  }

  /** Live entries, oldest first: what a new replica starts from. */
  *live(): IterableIterator<[key: string, data: Buffer, expires: number]> {
    const now = this.#now();
    for (const [key, e] of this.#entries) if (e.expires > now) yield [key, e.data, e.expires];
  }
}

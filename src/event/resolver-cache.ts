/**
 * The resolver's answer cache: bounded, with expired entries evicted.
 *
 * nginx keeps resolved names in rbtrees and expires them from a queue on
 * every lookup. Postern's first cache was a plain Map that only replaced an
 * entry when the same name was asked again, so a client with its own
 * reverse zone and many IPv6 addresses (a new PTR name per connection) grew
 * a worker's memory without limit. This cache:
 *  - holds at most `maxEntries` answers (the resolver's: DEFAULT_CACHE_ENTRIES);
 *    when full, expired entries go first, then the least recently used;
 *  - sweeps expired entries every SWEEP_MS on an unref'd timer (a quiet
 *    worker still frees them, and the timer never keeps a process alive);
 *    the timer runs only while the cache holds something, and holds the
 *    cache weakly, so a resolver dropped on reload can be collected.
 */

/**
 * Answers kept per `resolver` directive and worker: about 1 MiB with
 * ip6.arpa keys and ordinary names, about 3.5 MiB at worst (255-byte names,
 * measured); as many distinct clients as a busy worker sees within a
 * typical PTR TTL.
 */
export const DEFAULT_CACHE_ENTRIES = 4096;
/** How often expired answers are swept when nothing else evicts them. */
export const SWEEP_MS = 30_000;

interface Entry<T> {
  readonly expires: number;
  readonly value: T;
}

export class ExpiringLruCache<T> {
  readonly #max: number;
  // A Map iterates in insertion order: re-inserting on a hit makes the
  // first key the least recently used.
  readonly #entries = new Map<string, Entry<T>>();
  #sweeper: NodeJS.Timeout | undefined;

  constructor(maxEntries: number) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError(`cache size must be a positive integer, not ${maxEntries}`);
    this.#max = maxEntries;
  }

  /** Entries held now, expired ones not yet swept included. */
  get size(): number {
    return this.#entries.size;
  }

  /** The value of a live entry (marking it recently used); undefined if absent or expired. */
  get(key: string): T | undefined {
    const e = this.#entries.get(key);
    if (!e) return undefined;
    this.#entries.delete(key);
    if (e.expires <= Date.now()) {
      this.#stopWhenEmpty();
      return undefined;
    }
    this.#entries.set(key, e);
    return e.value;
  }

  /** Stores a value for `ttlMs`; makes room first when the cache is full. */
  set(key: string, value: T, ttlMs: number): void {
    this.#entries.delete(key);
    if (this.#entries.size >= this.#max) this.sweep();
    while (this.#entries.size >= this.#max) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
    this.#entries.set(key, { expires: Date.now() + ttlMs, value });
    this.#startSweeper();
  }

  /** Drops every expired entry. */
  sweep(): void {
    const now = Date.now();
    for (const [key, e] of this.#entries) if (e.expires <= now) this.#entries.delete(key);
    this.#stopWhenEmpty();
  }

  /** Empties the cache and stops its timer. */
  clear(): void {
    this.#entries.clear();
    this.#stopWhenEmpty();
  }

  #startSweeper(): void {
    if (this.#sweeper) return;
    // A weak reference: the timer must not keep a dropped resolver's cache alive.
    const self = new WeakRef(this);
    const timer = setInterval(() => {
      const cache = self.deref();
      if (cache) cache.sweep();
      else clearInterval(timer);
    }, SWEEP_MS);
    timer.unref();
    this.#sweeper = timer;
  }

  #stopWhenEmpty(): void {
    if (this.#entries.size > 0 || !this.#sweeper) return;
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }
}

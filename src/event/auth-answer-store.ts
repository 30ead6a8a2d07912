/**
 * Where auth_http_cache keeps its answers: a small interface, so the store
 * can live in the master (auth-answer-ipc.ts), in this process, or (issue
 * 16) in Redis. Entries are opaque: an id (a keyed hash) and a sealed value
 * the store cannot read (src/mail/auth-http/cache.ts).
 */

/** A store of opaque cached answers. */
export interface AuthAnswerStore {
  /** The live value of `id`, or undefined (also when the store cannot answer in time). */
  get(id: string): Promise<Buffer | undefined>;
  /** Stores `value` for `ttlMs`; fire and forget. */
  set(id: string, value: Buffer, ttlMs: number): void;
  /** The random key every cache key and seal is derived from: one per master, never written anywhere. */
  secret(): Promise<Buffer>;
}

/** Memory an entry costs besides its id and value (map slot, object, timestamps). */
const ENTRY_OVERHEAD = 96;

/** A bounded map of entries with expiry; the least recently used leaves first when full. */
export class MemoryAnswerStore {
  readonly #maxBytes: number;
  #bytes = 0;
  readonly #entries = new Map<string, { value: Buffer; expires: number }>();

  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  get size(): number {
    return this.#entries.size;
  }

  get(id: string, now = Date.now()): Buffer | undefined {
    const e = this.#entries.get(id);
    if (!e) return undefined;
    this.#entries.delete(id);
    if (e.expires <= now) {
      this.#bytes -= cost(id, e.value);
      return undefined;
    }
    this.#entries.set(id, e);
    return e.value;
  }

  set(id: string, value: Buffer, ttlMs: number, now = Date.now()): void {
    const old = this.#entries.get(id);
    if (old) {
      this.#entries.delete(id);
      this.#bytes -= cost(id, old.value);
    }
    const c = cost(id, value);
    if (c > this.#maxBytes || ttlMs <= 0) return;
    while (this.#bytes + c > this.#maxBytes) {
      const [oldestId, oldest] = this.#entries.entries().next().value as [string, { value: Buffer }];
      this.#entries.delete(oldestId);
      this.#bytes -= cost(oldestId, oldest.value);
    }
    this.#entries.set(id, { value, expires: now + ttlMs });
    this.#bytes += c;
  }
}

function cost(id: string, value: Buffer): number {
  return id.length + value.length + ENTRY_OVERHEAD;
}

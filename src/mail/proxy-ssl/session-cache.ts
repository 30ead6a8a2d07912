/**
 * The backend sessions one server may resume: the last session each
 * backend (address + verified name) gave us, in a small LRU. Per worker,
 * as nginx stream keeps its upstream sessions per worker: a miss costs a
 * full handshake, nothing else. Only sessions from connections whose
 * certificate passed verification are stored.
 */

/** At most this many backends per server are remembered. */
export const BACKEND_SESSIONS_MAX = 1024;

/** A session cache keyed by `address|name`. */
export class BackendSessionCache {
  readonly #sessions = new Map<string, Buffer>();
  readonly #max: number;

  constructor(max = BACKEND_SESSIONS_MAX) {
    this.#max = max;
  }

  /** The session to offer, if any (and marks it recently used). */
  get(key: string): Buffer | undefined {
    const s = this.#sessions.get(key);
    if (s === undefined) return undefined;
    this.#sessions.delete(key);
    this.#sessions.set(key, s);
    return s;
  }

  set(key: string, session: Buffer): void {
    this.#sessions.delete(key);
    this.#sessions.set(key, session);
    if (this.#sessions.size > this.#max) this.#sessions.delete(this.#sessions.keys().next().value as string);
  }

  /** Forgets a backend's session (after a failed resumption or verification). */
  delete(key: string): void {
    this.#sessions.delete(key);
  }

  get size(): number {
    return this.#sessions.size;
  }
}

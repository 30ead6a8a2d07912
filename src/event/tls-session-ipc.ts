/**
 * ssl_session_cache shared across worker processes. nginx keeps the cache
 * in shared memory; Node processes have none, so every worker holds a
 * replica and the master keeps the authoritative copy:
 *
 *  - a worker answers lookups from its replica, synchronously: a handshake
 *    never waits for another process (an IPC round trip per handshake cost
 *    more CPU than the handshake itself, bench/README.md);
 *  - a worker's new and removed sessions go to the master in batches, one
 *    message per event-loop turn, and the master passes them on to the
 *    other workers of the same cache, again batched;
 *  - a worker that starts (first start, reload, respawn) receives the
 *    master's live entries, so sessions survive a reload as they do in
 *    nginx's shared memory.
 *
 * The master also owns the auto-generated ticket keys of shared caches
 * (`ssl_session_tickets on` without a key file) and pushes every rotation.
 */
import { randomBytes } from "node:crypto";
import { timerMs } from "../conf/values.js";
import { MemorySessionStore, type SharedSessionStore, sessionsForBytes } from "./tls-session-store.js";

/** The message tag shared by workers and master. */
export const SESSION_CACHE_MESSAGE = "postern:sessionCache";

/** A replicated entry: hex session id, base64 session, expiry in ms since the epoch. */
export type WireEntry = [id: string, data: string, expires: number];

/** Worker -> master and master -> worker messages. */
export type SessionCacheMessage =
  | { type: typeof SESSION_CACHE_MESSAGE; op: "subscribe"; cache: string; size: number }
  /** Master -> worker: the live entries of `cache` have all been sent (the replica is loaded). */
  | { type: typeof SESSION_CACHE_MESSAGE; op: "synced"; cache: string }
  | { type: typeof SESSION_CACHE_MESSAGE; op: "put"; cache: string; size: number; entries: WireEntry[] }
  | { type: typeof SESSION_CACHE_MESSAGE; op: "drop"; cache: string; size: number; ids: string[] }
  | { type: typeof SESSION_CACHE_MESSAGE; op: "ticketKey"; cache: string; size: number; rotateSec: number }
  | { type: typeof SESSION_CACHE_MESSAGE; op: "key"; cache: string; key: string };

/** Either end of an IPC channel: `process` in a worker, a ChildProcess in the master. */
export interface IpcEndpoint {
  send?(message: unknown): boolean;
  on(event: "message", listener: (message: unknown) => void): unknown;
  off?(event: "message", listener: (message: unknown) => void): unknown;
}

const HEX_ID = /^[0-9a-f]{2,64}$/;

function isWireEntry(e: unknown): e is WireEntry {
  return (
    Array.isArray(e) &&
    e.length === 3 &&
    typeof e[0] === "string" &&
    HEX_ID.test(e[0]) &&
    typeof e[1] === "string" &&
    typeof e[2] === "number" &&
    Number.isFinite(e[2])
  );
}

/**
 * Every field is checked: the other end may be a broken process, and a bad
 * message must be dropped, never crash the master or a worker.
 */
export function isCacheMessage(m: unknown): m is SessionCacheMessage {
  if (typeof m !== "object" || m === null) return false;
  const x = m as Record<string, unknown>;
  if (x.type !== SESSION_CACHE_MESSAGE) return false;
  const str = (k: string): boolean => typeof x[k] === "string";
  const num = (k: string, min: number): boolean => typeof x[k] === "number" && Number.isFinite(x[k]) && x[k] >= min;
  switch (x.op) {
    case "subscribe":
      return str("cache") && num("size", 1);
    case "synced":
      return str("cache");
    case "put":
      return str("cache") && num("size", 1) && Array.isArray(x.entries) && x.entries.every(isWireEntry);
    case "drop":
      return str("cache") && num("size", 1) && Array.isArray(x.ids) && x.ids.every((i) => typeof i === "string" && HEX_ID.test(i));
    case "ticketKey":
      return str("cache") && num("size", 1) && num("rotateSec", 1);
    case "key":
      return str("cache") && str("key");
    default:
      return false;
  }
}

/** Changes waiting for the end of the event-loop turn, per cache. */
class Outbox {
  readonly #puts = new Map<string, WireEntry[]>();
  readonly #drops = new Map<string, string[]>();
  #scheduled = false;
  readonly #flush: (cache: string, puts: WireEntry[], drops: string[]) => void;

  constructor(flush: (cache: string, puts: WireEntry[], drops: string[]) => void) {
    this.#flush = flush;
  }

  put(cache: string, e: WireEntry): void {
    let list = this.#puts.get(cache);
    if (!list) this.#puts.set(cache, (list = []));
    list.push(e);
    this.#schedule();
  }

  drop(cache: string, id: string): void {
    let list = this.#drops.get(cache);
    if (!list) this.#drops.set(cache, (list = []));
    list.push(id);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      const caches = new Set([...this.#puts.keys(), ...this.#drops.keys()]);
      for (const cache of caches) {
        const puts = this.#puts.get(cache) ?? [];
        const drops = this.#drops.get(cache) ?? [];
        this.#puts.delete(cache);
        this.#drops.delete(cache);
        this.#flush(cache, puts, drops);
      }
    });
  }
}

function putMessage(cache: string, size: number, entries: WireEntry[]): SessionCacheMessage {
  return { type: SESSION_CACHE_MESSAGE, op: "put", cache, size, entries };
}

function dropMessage(cache: string, size: number, ids: string[]): SessionCacheMessage {
  return { type: SESSION_CACHE_MESSAGE, op: "drop", cache, size, ids };
}

/** Applies replicated changes to a store. */
function apply(store: MemorySessionStore, m: SessionCacheMessage): void {
  if (m.op === "put") for (const [id, data, expires] of m.entries) store.setUntil(id, Buffer.from(data, "base64"), expires);
  else if (m.op === "drop") for (const id of m.ids) store.deleteKey(id);
}

// ---- worker side ----

/** Per worker channel: the replicas by cache name, key listeners, and the outbox to the master. */
interface WorkerLink {
  readonly replicas: Map<string, { store: MemorySessionStore; size: number }>;
  /** Caches subscribed whose snapshot has not all arrived, and who waits for them (replicasLoaded). */
  readonly loading: Set<string>;
  readonly loaded: (() => void)[];
  readonly keyListeners: Map<string, Set<(key: Buffer) => void>>;
  readonly outbox: Outbox;
}
const links = new WeakMap<IpcEndpoint, WorkerLink>();

function link(endpoint: IpcEndpoint): WorkerLink {
  const l = links.get(endpoint);
  if (l) return l;
  const replicas = new Map<string, { store: MemorySessionStore; size: number }>();
  const created: WorkerLink = {
    replicas,
    loading: new Set(),
    loaded: [],
    keyListeners: new Map(),
    outbox: new Outbox((cache, puts, drops) => {
      const size = replicas.get(cache)?.size ?? 1;
      if (puts.length > 0) endpoint.send?.(putMessage(cache, size, puts));
      if (drops.length > 0) endpoint.send?.(dropMessage(cache, size, drops));
    }),
  };
  endpoint.on("message", (m) => {
    if (!isCacheMessage(m)) return;
    if (m.op === "key") {
      for (const set of created.keyListeners.get(m.cache) ?? []) set(Buffer.from(m.key, "base64"));
      return;
    }
    if (m.op === "synced") {
      if (created.loading.delete(m.cache) && created.loading.size === 0) for (const done of created.loaded.splice(0)) done();
      return;
    }
    const replica = replicas.get(m.cache);
    if (replica) apply(replica.store, m);
  });
  links.set(endpoint, created);
  return created;
}

/** A worker's replica of a shared cache: local lookups, changes sent to the master. */
export class ReplicatedSessionStore implements SharedSessionStore {
  readonly #store: MemorySessionStore;
  readonly #cache: string;
  readonly #outbox: Outbox;

  constructor(endpoint: IpcEndpoint, cache: string, size: number) {
    const l = link(endpoint);
    let replica = l.replicas.get(cache);
    if (!replica) {
      replica = { store: new MemorySessionStore(sessionsForBytes(size)), size };
      l.replicas.set(cache, replica);
      l.loading.add(cache);
      endpoint.send?.({ type: SESSION_CACHE_MESSAGE, op: "subscribe", cache, size } satisfies SessionCacheMessage);
    }
    this.#store = replica.store;
    this.#cache = cache;
    this.#outbox = l.outbox;
  }

  lookup(id: Buffer): Buffer | undefined {
    return this.#store.lookup(id);
  }

  set(id: Buffer, data: Buffer, ttlSec: number): void {
    const key = id.toString("hex");
    const expires = Date.now() + ttlSec * 1000;
    this.#store.setUntil(key, data, expires);
    this.#outbox.put(this.#cache, [key, data.toString("base64"), expires]);
  }

  delete(id: Buffer): void {
    const key = id.toString("hex");
    this.#store.deleteKey(key);
    this.#outbox.drop(this.#cache, key);
  }
}

/**
 * Resolves once every replica this worker subscribed to holds the master's
 * live entries, or after `timeoutMs` (a master that does not answer must not
 * keep the worker from serving). The worker accepts connections only then:
 * after a reload, a client resuming a session the old worker made finds it
 * in the new worker's replica, as it would in nginx's shared memory.
 */
export function replicasLoaded(timeoutMs: number): Promise<void> {
  const l = workerEndpoint && links.get(workerEndpoint);
  if (!l || l.loading.size === 0) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    timer.unref();
    l.loaded.push(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

// ---- master side ----

/** A 48-byte ticket key in Node's layout, current for one cache name. */
interface KeyState {
  key: Buffer;
  timer: NodeJS.Timeout;
}

/** Live entries go to a new replica in messages of this many. */
const SNAPSHOT_CHUNK = 1000;

/**
 * The master's side: named caches (created on first use with the size the
 * worker's config gives), the replicas subscribed to each, and one
 * auto-generated ticket key per cache name, rotated and pushed to every
 * worker that asked for it.
 */
class SessionCacheMaster {
  readonly #caches = new Map<string, MemorySessionStore>();
  readonly #replicas = new Map<string, Set<IpcEndpoint>>();
  readonly #keys = new Map<string, KeyState>();
  readonly #keySubscribers = new Map<string, Set<IpcEndpoint>>();
  readonly #local = new Map<string, Set<(key: Buffer) => void>>();
  /** One outbox per worker: changes forwarded to it, batched. */
  readonly #outboxes = new Map<IpcEndpoint, Outbox>();

  /** The cache of that name (workers and single-process servers share it). */
  cache(name: string, size: number): MemorySessionStore {
    let c = this.#caches.get(name);
    if (!c) {
      c = new MemorySessionStore(sessionsForBytes(size));
      this.#caches.set(name, c);
    }
    return c;
  }

  /** The current ticket key of a cache; `rotateSec` sets the rotation period on first use. */
  ticketKey(name: string, rotateSec: number): Buffer {
    let k = this.#keys.get(name);
    if (!k) {
      const state: KeyState = {
        key: randomBytes(48),
        // ssl_session_timeout 30d would overflow Node's timers and rotate every millisecond
        timer: setInterval(() => this.#rotate(name), timerMs(rotateSec * 1000)),
      };
      state.timer.unref();
      this.#keys.set(name, state);
      k = state;
    }
    return k.key;
  }

  #rotate(name: string): void {
    const k = this.#keys.get(name);
    if (!k) return;
    k.key = randomBytes(48);
    for (const set of this.#local.get(name) ?? []) set(k.key);
    for (const ep of this.#keySubscribers.get(name) ?? []) {
      ep.send?.({ type: SESSION_CACHE_MESSAGE, op: "key", cache: name, key: k.key.toString("base64") } satisfies SessionCacheMessage);
    }
  }

  /** Applies the cache's key now and after every rotation (servers in the master's own process). */
  subscribeLocal(name: string, rotateSec: number, set: (key: Buffer) => void): void {
    let subs = this.#local.get(name);
    if (!subs) this.#local.set(name, (subs = new Set()));
    subs.add(set);
    set(this.ticketKey(name, rotateSec));
  }

  #outbox(endpoint: IpcEndpoint): Outbox {
    let o = this.#outboxes.get(endpoint);
    if (!o) {
      o = new Outbox((cache, puts, drops) => {
        // the worker may have exited since the changes were queued
        if (!this.#outboxes.has(endpoint)) return;
        if (puts.length > 0) endpoint.send?.(putMessage(cache, 1, puts));
        if (drops.length > 0) endpoint.send?.(dropMessage(cache, 1, drops));
      });
      this.#outboxes.set(endpoint, o);
    }
    return o;
  }

  /** The other replicas of a cache, which must hear of a change. */
  *#others(cache: string, from: IpcEndpoint): IterableIterator<Outbox> {
    for (const ep of this.#replicas.get(cache) ?? []) if (ep !== from) yield this.#outbox(ep);
  }

  /** Handles one worker message; returns false for messages that are not ours. */
  handle(endpoint: IpcEndpoint, m: unknown): boolean {
    if (!isCacheMessage(m)) return false;
    switch (m.op) {
      case "subscribe": {
        let subs = this.#replicas.get(m.cache);
        if (!subs) this.#replicas.set(m.cache, (subs = new Set()));
        subs.add(endpoint);
        let chunk: WireEntry[] = [];
        for (const [id, data, expires] of this.cache(m.cache, m.size).live()) {
          chunk.push([id, data.toString("base64"), expires]);
          if (chunk.length === SNAPSHOT_CHUNK) {
            endpoint.send?.(putMessage(m.cache, m.size, chunk));
            chunk = [];
          }
        }
        if (chunk.length > 0) endpoint.send?.(putMessage(m.cache, m.size, chunk));
        endpoint.send?.({ type: SESSION_CACHE_MESSAGE, op: "synced", cache: m.cache } satisfies SessionCacheMessage);
        return true;
      }
      case "put": {
        const cache = this.cache(m.cache, m.size);
        apply(cache, m);
        for (const o of this.#others(m.cache, endpoint)) for (const e of m.entries) o.put(m.cache, e);
        return true;
      }
      case "drop": {
        apply(this.cache(m.cache, m.size), m);
        for (const o of this.#others(m.cache, endpoint)) for (const id of m.ids) o.drop(m.cache, id);
        return true;
      }
      case "ticketKey": {
        const key = this.ticketKey(m.cache, m.rotateSec);
        let subs = this.#keySubscribers.get(m.cache);
        if (!subs) this.#keySubscribers.set(m.cache, (subs = new Set()));
        subs.add(endpoint);
        endpoint.send?.({ type: SESSION_CACHE_MESSAGE, op: "key", cache: m.cache, key: key.toString("base64") } satisfies SessionCacheMessage);
        return true;
      }
      default:
        return false;
    }
  }

  /** Forgets a worker that exited. */
  unsubscribe(endpoint: IpcEndpoint): void {
    for (const subs of this.#keySubscribers.values()) subs.delete(endpoint);
    for (const subs of this.#replicas.values()) subs.delete(endpoint);
    this.#outboxes.delete(endpoint);
  }
}

/** The one master-side registry of the process. */
export const sessionCacheMaster = new SessionCacheMaster();

/**
 * The master-side hook: call it for every worker the master forks (a
 * ChildProcess). It answers `{type:'postern:sessionCache'}` messages and
 * ignores the rest; the returned function uninstalls it.
 */
export function installSessionCacheMaster(worker: IpcEndpoint): () => void {
  const listener = (m: unknown): void => {
    sessionCacheMaster.handle(worker, m);
  };
  worker.on("message", listener);
  return () => {
    worker.off?.("message", listener);
    sessionCacheMaster.unsubscribe(worker);
  };
}

/**
 * Subscribes to a shared cache's auto-generated ticket key: from the master
 * when this process is a worker, else from the in-process registry.
 */
export function subscribeTicketKey(cache: string, size: number, rotateSec: number, set: (key: Buffer) => void): void {
  const endpoint = ipcEndpoint();
  if (!endpoint) {
    sessionCacheMaster.subscribeLocal(cache, rotateSec, set);
    return;
  }
  const listeners = link(endpoint).keyListeners;
  let subs = listeners.get(cache);
  if (!subs) listeners.set(cache, (subs = new Set()));
  subs.add(set);
  endpoint.send?.({ type: SESSION_CACHE_MESSAGE, op: "ticketKey", cache, size, rotateSec } satisfies SessionCacheMessage);
}

/**
 * Set in worker processes only: a parent with an IPC channel is not
 * necessarily a Postern master (pm2 and the test runner have one too), so
 * the worker side is switched on explicitly.
 */
let workerEndpoint: IpcEndpoint | undefined;

/**
 * The worker-side hook: call once in each worker process, before building
 * TLS contexts, so shared caches and ticket keys go through the master.
 */
export function connectSessionCacheWorker(): void {
  workerEndpoint = process;
}

/** The master's channel in a worker, else undefined (single process: in-process caches). */
export function ipcEndpoint(): IpcEndpoint | undefined {
  return workerEndpoint;
}

/** The store a `shared:NAME:SIZE` cache uses in this process. */
export function sharedStore(name: string, size: number): SharedSessionStore {
  const endpoint = ipcEndpoint();
  return endpoint ? new ReplicatedSessionStore(endpoint, name, size) : sessionCacheMaster.cache(name, size);
}

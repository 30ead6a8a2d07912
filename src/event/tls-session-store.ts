/**
 * Session stores for TLS resumption, apart from any protocol: an
 * in-process LRU (ssl_session_cache builtin, and shared caches in a single
 * process), an IPC-backed store for worker processes, and the master-side
 * handler that owns the shared caches and the auto-generated ticket keys.
 */
import { randomBytes } from "node:crypto";

/** A cache of serialized TLS sessions keyed by session id. */
export interface SharedSessionStore {
  get(id: Buffer): Promise<Buffer | undefined>;
  set(id: Buffer, data: Buffer, ttlSec: number): void;
  delete(id: Buffer): void;
}

/** nginx sizes shared caches at about 4000 sessions per megabyte. */
export function sessionsForBytes(size: number): number {
  return Math.max(1, Math.floor((size * 4000) / (1024 * 1024)));
}

interface Entry {
  readonly data: Buffer;
  readonly expires: number;
}

/** An in-process LRU with expiry; the oldest session goes when full. */
export class MemorySessionStore implements SharedSessionStore {
  readonly #entries = new Map<string, Entry>();
  readonly #capacity: number;
  readonly #now: () => number;

  constructor(capacity: number, now: () => number = Date.now) {
    this.#capacity = capacity;
    this.#now = now;
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

  get(id: Buffer): Promise<Buffer | undefined> {
    return Promise.resolve(this.lookup(id));
  }

  set(id: Buffer, data: Buffer, ttlSec: number): void {
    if (this.#capacity <= 0) return;
    const key = id.toString("hex");
    this.#entries.delete(key);
    while (this.#entries.size >= this.#capacity) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
    this.#entries.set(key, { data, expires: this.#now() + ttlSec * 1000 });
  }

  delete(id: Buffer): void {
    this.#entries.delete(id.toString("hex"));
  }
}

/** The message tag shared by workers and master. */
export const SESSION_CACHE_MESSAGE = "postern:sessionCache";

/** Worker -> master and master -> worker messages. Buffers travel as base64. */
export type SessionCacheMessage =
  | { type: typeof SESSION_CACHE_MESSAGE; op: "get"; seq: number; cache: string; size: number; id: string }
  | { type: typeof SESSION_CACHE_MESSAGE; op: "set"; cache: string; size: number; id: string; data: string; ttl: number }
  | { type: typeof SESSION_CACHE_MESSAGE; op: "delete"; cache: string; size: number; id: string }
  | { type: typeof SESSION_CACHE_MESSAGE; op: "ticketKey"; cache: string; size: number; rotateSec: number }
  | { type: typeof SESSION_CACHE_MESSAGE; op: "reply"; seq: number; data: string | null }
  | { type: typeof SESSION_CACHE_MESSAGE; op: "key"; cache: string; key: string };

/** Either end of an IPC channel: `process` in a worker, a ChildProcess in the master. */
export interface IpcEndpoint {
  send?(message: unknown): boolean;
  on(event: "message", listener: (message: unknown) => void): unknown;
  off?(event: "message", listener: (message: unknown) => void): unknown;
}

function isCacheMessage(m: unknown): m is SessionCacheMessage {
  if (typeof m !== "object" || m === null) return false;
  const x = m as Record<string, unknown>;
  if (x.type !== SESSION_CACHE_MESSAGE) return false;
  // Every field is checked: the other end may be a broken process, and a bad
  // message must be dropped, never crash the master or a worker.
  const str = (k: string): boolean => typeof x[k] === "string";
  const num = (k: string, min: number): boolean => typeof x[k] === "number" && Number.isFinite(x[k]) && (x[k] as number) >= min;
  switch (x.op) {
    case "get": return num("seq", 0) && str("cache") && num("size", 1) && str("id");
    case "set": return str("cache") && num("size", 1) && str("id") && str("data") && num("ttl", 0);
    case "delete": return str("cache") && num("size", 1) && str("id");
    case "ticketKey": return str("cache") && num("size", 1) && num("rotateSec", 1);
    case "reply": return num("seq", 0) && (x.data === null || str("data"));
    case "key": return str("cache") && str("key");
    default: return false;
  }
}

/** Bounded wait for the master's answer: a lost reply means a full handshake, not a hang. */
const REPLY_TIMEOUT_MS = 1000;
/** One sequence for every store of the process. */
let nextSeq = 0;

/** Per endpoint: one 'message' listener dispatching replies and key pushes. */
interface Dispatcher {
  readonly pending: Map<number, (data: Buffer | undefined) => void>;
  readonly keyListeners: Map<string, Set<(key: Buffer) => void>>;
}
const dispatchers = new WeakMap<IpcEndpoint, Dispatcher>();

function dispatcher(endpoint: IpcEndpoint): Dispatcher {
  let d = dispatchers.get(endpoint);
  if (d) return d;
  const created: Dispatcher = { pending: new Map(), keyListeners: new Map() };
  endpoint.on("message", (m) => {
    if (!isCacheMessage(m)) return;
    if (m.op === "reply") {
      const done = created.pending.get(m.seq);
      created.pending.delete(m.seq);
      done?.(m.data === null ? undefined : Buffer.from(m.data, "base64"));
    } else if (m.op === "key") {
      for (const apply of created.keyListeners.get(m.cache) ?? []) apply(Buffer.from(m.key, "base64"));
    }
  });
  dispatchers.set(endpoint, created);
  return created;
}

/** A shared cache living in the master, reached over `process.send`. */
export class IpcSessionStore implements SharedSessionStore {
  readonly #endpoint: IpcEndpoint;
  readonly #cache: string;
  readonly #size: number;
  readonly #pending: Map<number, (data: Buffer | undefined) => void>;

  constructor(endpoint: IpcEndpoint, cache: string, size: number) {
    this.#endpoint = endpoint;
    this.#cache = cache;
    this.#size = size;
    this.#pending = dispatcher(endpoint).pending;
  }

  get(id: Buffer): Promise<Buffer | undefined> {
    const seq = ++nextSeq;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(seq);
        resolve(undefined);
      }, REPLY_TIMEOUT_MS);
      timer.unref();
      this.#pending.set(seq, (d) => {
        clearTimeout(timer);
        resolve(d);
      });
      this.#send({ type: SESSION_CACHE_MESSAGE, op: "get", seq, cache: this.#cache, size: this.#size, id: id.toString("base64") });
    });
  }

  set(id: Buffer, data: Buffer, ttlSec: number): void {
    this.#send({ type: SESSION_CACHE_MESSAGE, op: "set", cache: this.#cache, size: this.#size, id: id.toString("base64"), data: data.toString("base64"), ttl: ttlSec });
  }

  delete(id: Buffer): void {
    this.#send({ type: SESSION_CACHE_MESSAGE, op: "delete", cache: this.#cache, size: this.#size, id: id.toString("base64") });
  }

  #send(m: SessionCacheMessage): void {
    this.#endpoint.send?.(m);
  }
}

/** A 48-byte ticket key in Node's layout, current for one cache name. */
interface KeyState {
  key: Buffer;
  timer: NodeJS.Timeout;
}

/**
 * The master's side: named caches (created on first use with the size the
 * worker's config gives) and one auto-generated ticket key per cache name,
 * rotated and pushed to every worker that asked for it.
 */
export class SessionCacheMaster {
  readonly #caches = new Map<string, MemorySessionStore>();
  readonly #keys = new Map<string, KeyState>();
  readonly #subscribers = new Map<string, Set<IpcEndpoint>>();
  readonly #local = new Map<string, Set<(key: Buffer) => void>>();

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
        timer: setInterval(() => this.#rotate(name), rotateSec * 1000),
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
    for (const apply of this.#local.get(name) ?? []) apply(k.key);
    for (const ep of this.#subscribers.get(name) ?? []) {
      ep.send?.({ type: SESSION_CACHE_MESSAGE, op: "key", cache: name, key: k.key.toString("base64") } satisfies SessionCacheMessage);
    }
  }

  /** Applies the cache's key now and after every rotation (servers in the master's own process). */
  subscribeLocal(name: string, rotateSec: number, apply: (key: Buffer) => void): void {
    let set = this.#local.get(name);
    if (!set) this.#local.set(name, (set = new Set()));
    set.add(apply);
    apply(this.ticketKey(name, rotateSec));
  }

  /** Rotates a cache's key now (what the timer does). */
  rotate(name: string): void {
    this.#rotate(name);
  }

  /** Answers one worker message; returns false for messages that are not ours. */
  handle(endpoint: IpcEndpoint, m: unknown): boolean {
    if (!isCacheMessage(m)) return false;
    switch (m.op) {
      case "get": {
        const data = this.cache(m.cache, m.size).lookup(Buffer.from(m.id, "base64"));
        endpoint.send?.({ type: SESSION_CACHE_MESSAGE, op: "reply", seq: m.seq, data: data ? data.toString("base64") : null } satisfies SessionCacheMessage);
        return true;
      }
      case "set":
        this.cache(m.cache, m.size).set(Buffer.from(m.id, "base64"), Buffer.from(m.data, "base64"), m.ttl);
        return true;
      case "delete":
        this.cache(m.cache, m.size).delete(Buffer.from(m.id, "base64"));
        return true;
      case "ticketKey": {
        const key = this.ticketKey(m.cache, m.rotateSec);
        let subs = this.#subscribers.get(m.cache);
        if (!subs) this.#subscribers.set(m.cache, (subs = new Set()));
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
    for (const subs of this.#subscribers.values()) subs.delete(endpoint);
  }

  /** Stops rotation timers (shutdown, tests). */
  close(): void {
    for (const k of this.#keys.values()) clearInterval(k.timer);
    this.#keys.clear();
  }
}

/** The one master-side registry of the process. */
export const sessionCacheMaster = new SessionCacheMaster();

/**
 * The master-side hook: call it for every worker the master forks (a
 * ChildProcess). It answers `{type:'postern:sessionCache'}` messages and
 * ignores the rest; the returned function uninstalls it.
 */
export function installSessionCacheMaster(worker: IpcEndpoint, master: SessionCacheMaster = sessionCacheMaster): () => void {
  const listener = (m: unknown): void => {
    master.handle(worker, m);
  };
  worker.on("message", listener);
  return () => {
    worker.off?.("message", listener);
    master.unsubscribe(worker);
  };
}

/**
 * Subscribes to a shared cache's auto-generated ticket key: from the master
 * when this process is a worker, else from the in-process registry.
 */
export function subscribeTicketKey(cache: string, size: number, rotateSec: number, apply: (key: Buffer) => void, endpoint: IpcEndpoint | undefined = ipcEndpoint()): void {
  if (!endpoint) {
    sessionCacheMaster.subscribeLocal(cache, rotateSec, apply);
    return;
  }
  const listeners = dispatcher(endpoint).keyListeners;
  let set = listeners.get(cache);
  if (!set) listeners.set(cache, (set = new Set()));
  set.add(apply);
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
export function connectSessionCacheWorker(endpoint: IpcEndpoint = process as unknown as IpcEndpoint): void {
  workerEndpoint = endpoint;
}

/** The master's channel in a worker, else undefined (single process: in-process caches). */
export function ipcEndpoint(): IpcEndpoint | undefined {
  return workerEndpoint;
}

/** The store a `shared:NAME:SIZE` cache uses in this process. */
export function sharedStore(name: string, size: number, endpoint: IpcEndpoint | undefined = ipcEndpoint()): SharedSessionStore {
  return endpoint ? new IpcSessionStore(endpoint, name, size) : sessionCacheMaster.cache(name, size);
}

/**
 * auth_http_cache shared by the workers of a machine: the master holds the
 * stores (one per zone) and the random key; workers ask over IPC. Unlike
 * the TLS session cache (tls-session-ipc.ts) nothing is replicated: a
 * lookup is one round trip, cheap next to the HTTP request it saves, and
 * the sealed answers stay in one process. Every message is checked; a
 * worker whose question is not answered in time counts a miss.
 *
 * A zone marked `sync` (the worker says so in each message) is also kept
 * in the shared store: a local miss asks it, a set writes it, and its key
 * is derived from the store's secret so that every node's workers derive
 * the same ids (shared-store/auth-answers.ts).
 */
import { randomBytes } from "node:crypto";
import { type AuthAnswerStore, MemoryAnswerStore } from "./auth-answer-store.js";
import type { IpcEndpoint } from "./tls-session-ipc.js";
import { fetchAnswer, sharedAnswerSecret, storeAnswer } from "./shared-store/auth-answers.js";
import { sharedStoreClient } from "./shared-store/current.js";

export const AUTH_CACHE_MESSAGE = "postern:authCache";

type Request =
  | { type: typeof AUTH_CACHE_MESSAGE; op: "get"; seq: number; zone: string; size: number; id: string; sync: boolean }
  | { type: typeof AUTH_CACHE_MESSAGE; op: "set"; zone: string; size: number; id: string; value: string; ttl: number; sync: boolean }
  | { type: typeof AUTH_CACHE_MESSAGE; op: "secret"; seq: number; sync: boolean };
type Reply = { type: typeof AUTH_CACHE_MESSAGE; op: "reply"; seq: number; value: string | null };

const ID = /^[0-9a-f]{64}$/;
const B64 = /^[A-Za-z0-9+/]*={0,2}$/;
/** Largest sealed answer accepted (a header block is at most 1024 bytes). */
const MAX_VALUE_CHARS = 8192;
/** How long a worker waits for the master before counting a miss. */
const REPLY_TIMEOUT_MS = 1000;
const MAX_PENDING = 10_000;

function isObject(m: unknown): m is Record<string, unknown> {
  return typeof m === "object" && m !== null && (m as Record<string, unknown>).type === AUTH_CACHE_MESSAGE;
}
const num = (x: unknown, min: number): boolean => typeof x === "number" && Number.isSafeInteger(x) && x >= min;
const zoneName = (x: unknown): boolean => typeof x === "string" && x.length > 0 && x.length <= 128;

export function isRequest(m: unknown): m is Request {
  if (!isObject(m)) return false;
  switch (m.op) {
    case "get":
      return num(m.seq, 0) && zoneName(m.zone) && num(m.size, 1) && typeof m.id === "string" && ID.test(m.id) && typeof m.sync === "boolean";
    case "set":
      return (
        zoneName(m.zone) &&
        num(m.size, 1) &&
        typeof m.id === "string" &&
        ID.test(m.id) &&
        typeof m.value === "string" &&
        m.value.length <= MAX_VALUE_CHARS &&
        B64.test(m.value) &&
        num(m.ttl, 1) &&
        typeof m.sync === "boolean"
      );
    case "secret":
      return num(m.seq, 0) && typeof m.sync === "boolean";
    default:
      return false;
  }
}

export function isReply(m: unknown): m is Reply {
  if (!isObject(m) || m.op !== "reply" || !num(m.seq, 0)) return false;
  return m.value === null || (typeof m.value === "string" && m.value.length <= MAX_VALUE_CHARS && B64.test(m.value));
}

// ---- the stores of this process (the master, or a single-process server) ----

const zones = new Map<string, MemoryAnswerStore>();
let masterSecret: Buffer | undefined;

function zone(name: string, size: number): MemoryAnswerStore {
  let z = zones.get(name);
  if (!z) zones.set(name, (z = new MemoryAnswerStore(size)));
  return z;
}

/** The key of a zone's ids and seals: for `sync` zones the store's (the same on every node), else this master's own. */
function secret(sync: boolean): Buffer {
  return (sync ? sharedAnswerSecret(sharedStoreClient()) : undefined) ?? (masterSecret ??= randomBytes(32));
}

/** A lookup: the node's memory first, then (sync zones) the shared store, whose answer is kept locally for its remaining lifetime. */
function lookup(name: string, size: number, id: string, sync: boolean): Buffer | undefined | Promise<Buffer | undefined> {
  const local = zone(name, size).get(id);
  const client = sync ? sharedStoreClient() : undefined;
  if (local || !client) return local;
  return fetchAnswer(client, name, id).then((found) => {
    if (!found) return undefined;
    zone(name, size).set(id, found.value, found.ttlMs);
    return found.value;
  });
}

function remember(name: string, size: number, id: string, value: Buffer, ttlMs: number, sync: boolean): void {
  zone(name, size).set(id, value, ttlMs);
  const client = sync ? sharedStoreClient() : undefined;
  if (client) storeAnswer(client, name, id, value, ttlMs);
}

/** The master-side hook for one worker; returns the uninstaller. */
export function installAuthAnswerMaster(worker: IpcEndpoint): () => void {
  const listener = (m: unknown): void => {
    if (!isRequest(m)) return;
    const reply = (value: string | null): void => {
      worker.send?.({ type: AUTH_CACHE_MESSAGE, op: "reply", seq: (m as { seq: number }).seq, value } satisfies Reply);
    };
    if (m.op === "get") void Promise.resolve(lookup(m.zone, m.size, m.id, m.sync)).then((v) => reply(v?.toString("base64") ?? null));
    else if (m.op === "set") remember(m.zone, m.size, m.id, Buffer.from(m.value, "base64"), m.ttl, m.sync);
    else reply(secret(m.sync).toString("base64"));
  };
  worker.on("message", listener);
  return () => worker.off?.("message", listener);
}

/** The store in this process: no IPC (single process, or the master's own use). */
class LocalStore implements AuthAnswerStore {
  constructor(
    readonly zoneName: string,
    readonly bytes: number,
    readonly sync: boolean,
  ) {}
  get(id: string): Promise<Buffer | undefined> {
    return Promise.resolve(lookup(this.zoneName, this.bytes, id, this.sync));
  }
  set(id: string, value: Buffer, ttlMs: number): void {
    remember(this.zoneName, this.bytes, id, value, ttlMs, this.sync);
  }
  secret(): Promise<Buffer> {
    return Promise.resolve(secret(this.sync));
  }
}

// ---- worker side ----

let workerEndpoint: IpcEndpoint | undefined;
const pending = new Map<number, (value: string | null) => void>();
let nextSeq = 0;
/** The master's keys, asked once per kind (sync or not) by each worker. */
const workerSecrets = new Map<boolean, Promise<Buffer>>();

/** Called once in each worker process: caches then live in the master. */
export function connectAuthAnswerWorker(endpoint: IpcEndpoint = process): void {
  workerEndpoint = endpoint;
  endpoint.on("message", (m) => {
    if (!isReply(m)) return;
    const done = pending.get(m.seq);
    if (done) {
      pending.delete(m.seq);
      done(m.value);
    }
  });
}

function ask(endpoint: IpcEndpoint, message: Record<string, unknown>): Promise<string | null> {
  return new Promise((resolve) => {
    if (pending.size >= MAX_PENDING) return resolve(null);
    const seq = (nextSeq = (nextSeq + 1) % Number.MAX_SAFE_INTEGER);
    const timer = setTimeout(() => {
      pending.delete(seq);
      resolve(null);
    }, REPLY_TIMEOUT_MS);
    timer.unref();
    pending.set(seq, (value) => {
      clearTimeout(timer);
      resolve(value);
    });
    if (!endpoint.send?.({ type: AUTH_CACHE_MESSAGE, seq, ...message })) {
      pending.delete(seq);
      clearTimeout(timer);
      resolve(null);
    }
  });
}

class WorkerStore implements AuthAnswerStore {
  constructor(
    readonly endpoint: IpcEndpoint,
    readonly zoneName: string,
    readonly bytes: number,
    readonly sync: boolean,
  ) {}
  async get(id: string): Promise<Buffer | undefined> {
    const value = await ask(this.endpoint, { op: "get", zone: this.zoneName, size: this.bytes, id, sync: this.sync });
    return value === null ? undefined : Buffer.from(value, "base64");
  }
  set(id: string, value: Buffer, ttlMs: number): void {
    this.endpoint.send?.({
      type: AUTH_CACHE_MESSAGE,
      op: "set",
      zone: this.zoneName,
      size: this.bytes,
      id,
      value: value.toString("base64"),
      ttl: ttlMs,
      sync: this.sync,
    });
  }
  secret(): Promise<Buffer> {
    const sync = this.sync;
    let asked = workerSecrets.get(sync);
    if (!asked) {
      asked = ask(this.endpoint, { op: "secret", sync }).then((v) => {
        // without the master's key this worker's entries could not be shared: a
        // key of its own keeps the cache correct (only less shared) until retried
        if (v === null || Buffer.from(v, "base64").length !== 32) {
          workerSecrets.delete(sync);
          return randomBytes(32);
        }
        return Buffer.from(v, "base64");
      });
      workerSecrets.set(sync, asked);
    }
    return asked;
  }
}

/** The store of a zone for this process: through the master in a worker, else local. */
export function authAnswerStore(zoneName: string, bytes: number, sync = false): AuthAnswerStore {
  return workerEndpoint ? new WorkerStore(workerEndpoint, zoneName, bytes, sync) : new LocalStore(zoneName, bytes, sync);
}

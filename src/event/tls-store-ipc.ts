/**
 * `ssl_session_cache shared:NAME:SIZE sync`: the part of TLS resumption
 * that goes through the cluster's shared store. Workers never talk to the
 * store: they ask the master over IPC, and the master (or a single-process
 * server) runs the store commands.
 *
 *  - Session ids: a worker's replica (tls-session-ipc.ts) answers first; on
 *    a miss the master looks the id up in the store (GET), bounded by the
 *    store's timeout, and the handshake waits for that answer only. New
 *    TLS 1.2 sessions are written (SET PX ssl_session_timeout), removed
 *    ones deleted. The store key holds the cache name and the server's
 *    session id context (its TLS policy), so a session is never offered
 *    through the store to a server with another policy; values are sealed
 *    (shared-store/seal.ts), and a value that does not open, is too long,
 *    or is not a TLS 1.2 session with the id asked for is a miss.
 *  - Ticket keys: the master runs each cache's schedule
 *    (tls-ticket-schedule.ts) and pushes the ring of keys to its workers.
 *
 * Every message is checked on arrival: the other end may be broken.
 */
import { sharedStoreClient } from "./shared-store/current.js";
import { isTls12SessionFor } from "./tls-session-der.js";
import { type IpcEndpoint, ipcEndpoint } from "./tls-session-ipc.js";
import { TICKET_KEY_BYTES, type TicketRing, ticketSchedule } from "./tls-ticket-schedule.js";

export const TLS_STORE_MESSAGE = "postern:tlsStore";

/** A serialized session with a client certificate is a few kilobytes; more is not a session. */
export const MAX_SESSION_BYTES = 32 * 1024;
/** The IPC round trip on top of the store's own timeout, before a handshake stops waiting. */
const IPC_MARGIN_MS = 50;
const HEX = /^[0-9a-f]{2,64}$/;
const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

type Msg =
  | { type: typeof TLS_STORE_MESSAGE; op: "fetch"; seq: number; cache: string; context: string; id: string }
  | { type: typeof TLS_STORE_MESSAGE; op: "fetched"; seq: number; data: string | null }
  | { type: typeof TLS_STORE_MESSAGE; op: "save"; cache: string; context: string; id: string; data: string; ttl: number }
  | { type: typeof TLS_STORE_MESSAGE; op: "remove"; cache: string; context: string; id: string }
  | { type: typeof TLS_STORE_MESSAGE; op: "keys"; cache: string; period: number }
  | { type: typeof TLS_STORE_MESSAGE; op: "ring"; cache: string; period: number; current: number; keys: [number, string][] };

function isRingKey(k: unknown): k is [number, string] {
  return Array.isArray(k) && k.length === 2 && Number.isSafeInteger(k[0]) && typeof k[1] === "string" && k[1].length === 64 && B64.test(k[1]);
}

/** Every field checked; anything else is not ours. */
export function isTlsStoreMessage(m: unknown): m is Msg {
  if (typeof m !== "object" || m === null) return false;
  const x = m as Record<string, unknown>;
  if (x.type !== TLS_STORE_MESSAGE) return false;
  const str = (k: string, max = 256): boolean => {
    const v = x[k];
    return typeof v === "string" && v.length <= max;
  };
  const int = (k: string, min: number): boolean => Number.isSafeInteger(x[k]) && (x[k] as number) >= min;
  const id = (): boolean => typeof x.id === "string" && HEX.test(x.id);
  const ctx = (): boolean => typeof x.context === "string" && /^[0-9a-f]{1,64}$/.test(x.context);
  switch (x.op) {
    case "fetch":
      return int("seq", 0) && str("cache") && ctx() && id();
    case "fetched":
      return int("seq", 0) && (x.data === null || (str("data", (MAX_SESSION_BYTES * 4) / 3 + 4) && B64.test(x.data as string)));
    case "save":
      return str("cache") && ctx() && id() && str("data", (MAX_SESSION_BYTES * 4) / 3 + 4) && B64.test(x.data as string) && int("ttl", 1);
    case "remove":
      return str("cache") && ctx() && id();
    case "keys":
      return str("cache") && int("period", 1);
    case "ring":
      return str("cache") && int("period", 1) && int("current", 0) && Array.isArray(x.keys) && x.keys.length <= 8 && x.keys.every(isRingKey);
    default:
      return false;
  }
}

// ---- the store side (master, or a single process) ----

function storeKey(cache: string, context: string, id: Buffer): string | undefined {
  return sharedStoreClient()?.seal.key("tls-session", cache, context, id);
}

/** The session stored for `id` under this cache and policy, or undefined (miss, store away, forged value). */
export async function storeLookup(cache: string, context: string, id: Buffer): Promise<Buffer | undefined> {
  const client = sharedStoreClient();
  const key = storeKey(cache, context, id);
  if (!client || !key) return undefined;
  const sealed = await client.run("session_cache", (r) => r.getBuffer(key));
  const der = client.seal.open("tls-session", key, sealed, MAX_SESSION_BYTES);
  return der && isTls12SessionFor(der, id) ? der : undefined;
}

/** Writes a new TLS 1.2 session; its failure only costs sharing. */
export function storeSave(cache: string, context: string, id: Buffer, der: Buffer, ttlSec: number): void {
  const client = sharedStoreClient();
  const key = storeKey(cache, context, id);
  if (!client || !key || der.length > MAX_SESSION_BYTES) return;
  const sealed = client.seal.seal("tls-session", key, der);
  client.fire("session_cache", (r) => r.set(key, sealed, "PX", ttlSec * 1000));
}

export function storeRemove(cache: string, context: string, id: Buffer): void {
  const client = sharedStoreClient();
  const key = storeKey(cache, context, id);
  if (client && key) client.fire("session_cache", (r) => r.del(key));
}

function ringMessage(cache: string, period: number, ring: TicketRing): Msg {
  const keys: [number, string][] = [...ring.keys].map(([slot, key]) => [slot, key.toString("base64")]);
  return { type: TLS_STORE_MESSAGE, op: "ring", cache, period, current: ring.current, keys };
}

/** The master's side for one worker; the returned function uninstalls it. */
export function installTlsStoreMaster(worker: IpcEndpoint): () => void {
  const unsubscribe: (() => void)[] = [];
  const following = new Set<string>();
  const listener = (m: unknown): void => {
    if (!isTlsStoreMessage(m)) return;
    switch (m.op) {
      case "fetch":
        void storeLookup(m.cache, m.context, Buffer.from(m.id, "hex")).then((der) => {
          const reply: Msg = { type: TLS_STORE_MESSAGE, op: "fetched", seq: m.seq, data: der ? der.toString("base64") : null };
          worker.send?.(reply);
        });
        return;
      case "save":
        storeSave(m.cache, m.context, Buffer.from(m.id, "hex"), Buffer.from(m.data, "base64"), m.ttl);
        return;
      case "remove":
        storeRemove(m.cache, m.context, Buffer.from(m.id, "hex"));
        return;
      case "keys":
        if (following.has(`${m.cache}\0${m.period}`)) return;
        following.add(`${m.cache}\0${m.period}`);
        unsubscribe.push(ticketSchedule(m.cache, m.period).subscribe((ring) => worker.send?.(ringMessage(m.cache, m.period, ring))));
        return;
      default:
        return;
    }
  };
  worker.on("message", listener);
  return () => {
    worker.off?.("message", listener);
    for (const u of unsubscribe) u();
  };
}

// ---- the worker side ----

interface WorkerSide {
  seq: number;
  readonly pending: Map<number, (der: Buffer | undefined) => void>;
  readonly rings: Map<string, Set<(ring: TicketRing) => void>>;
  /** The last ring per cache, for servers that subscribe after it came (a reload). */
  readonly last: Map<string, TicketRing>;
}
const sides = new WeakMap<IpcEndpoint, WorkerSide>();

function workerSide(endpoint: IpcEndpoint): WorkerSide {
  const known = sides.get(endpoint);
  if (known) return known;
  const created: WorkerSide = { seq: 0, pending: new Map(), rings: new Map(), last: new Map() };
  endpoint.on("message", (m) => {
    if (!isTlsStoreMessage(m)) return;
    if (m.op === "fetched") {
      const done = created.pending.get(m.seq);
      created.pending.delete(m.seq);
      done?.(m.data === null ? undefined : Buffer.from(m.data, "base64"));
    } else if (m.op === "ring") {
      const keys = new Map<number, Buffer>();
      for (const [slot, k] of m.keys) {
        const key = Buffer.from(k, "base64");
        if (key.length === TICKET_KEY_BYTES) keys.set(slot, key);
      }
      if (!keys.has(m.current)) return;
      const ring: TicketRing = { periodMs: m.period * 1000, current: m.current, keys };
      const id = `${m.cache}\0${m.period}`;
      created.last.set(id, ring);
      for (const l of created.rings.get(id) ?? []) l(ring);
    }
  });
  sides.set(endpoint, created);
  return created;
}

/**
 * Looks a session id up in the store, from whichever process this is; the
 * answer comes within the store's timeout plus the IPC round trip, else a
 * miss. The master's answer is checked again here.
 */
export function remoteLookup(cache: string, context: string, id: Buffer, timeoutMs: number): Promise<Buffer | undefined> {
  const endpoint = ipcEndpoint();
  if (!endpoint) return storeLookup(cache, context, id);
  const side = workerSide(endpoint);
  const seq = (side.seq = (side.seq + 1) % Number.MAX_SAFE_INTEGER);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      side.pending.delete(seq);
      resolve(undefined);
    }, timeoutMs + IPC_MARGIN_MS);
    side.pending.set(seq, (der) => {
      clearTimeout(timer);
      resolve(der && der.length <= MAX_SESSION_BYTES && isTls12SessionFor(der, id) ? der : undefined);
    });
    const m: Msg = { type: TLS_STORE_MESSAGE, op: "fetch", seq, cache, context, id: id.toString("hex") };
    endpoint.send?.(m);
  });
}

/** Writes a new session to the store (through the master from a worker). */
export function remoteSave(cache: string, context: string, id: Buffer, der: Buffer, ttlSec: number): void {
  const endpoint = ipcEndpoint();
  if (!endpoint) return storeSave(cache, context, id, der, ttlSec);
  const m: Msg = { type: TLS_STORE_MESSAGE, op: "save", cache, context, id: id.toString("hex"), data: der.toString("base64"), ttl: ttlSec };
  endpoint.send?.(m);
}

export function remoteRemove(cache: string, context: string, id: Buffer): void {
  const endpoint = ipcEndpoint();
  if (!endpoint) return storeRemove(cache, context, id);
  const m: Msg = { type: TLS_STORE_MESSAGE, op: "remove", cache, context, id: id.toString("hex") };
  endpoint.send?.(m);
}

/**
 * Follows a cache's ticket key ring (from the master in a worker, else from
 * the process's own schedule). `listener` holds the server's contexts: it is
 * held weakly, so a configuration replaced by a reload stops receiving.
 */
export function subscribeTicketRing(cache: string, periodSec: number, listener: (ring: TicketRing) => void): void {
  const ref = new WeakRef(listener);
  const endpoint = ipcEndpoint();
  if (!endpoint) {
    const stop = ticketSchedule(cache, periodSec).subscribe((ring) => {
      const l = ref.deref();
      if (l) l(ring);
      else stop();
    });
    return;
  }
  const side = workerSide(endpoint);
  const id = `${cache}\0${periodSec}`;
  let set = side.rings.get(id);
  const first = !set;
  if (!set) side.rings.set(id, (set = new Set()));
  const listeners = set;
  const forward = (ring: TicketRing): void => {
    const l = ref.deref();
    if (l) l(ring);
    else listeners.delete(forward);
  };
  listeners.add(forward);
  const last = side.last.get(id);
  if (last) forward(last);
  // one subscription per cache and worker: the master pushes every change to it
  if (!first) return;
  const m: Msg = { type: TLS_STORE_MESSAGE, op: "keys", cache, period: periodSec };
  endpoint.send?.(m);
}

/**
 * The limit store shared by the workers of one machine. nginx keeps
 * limit_conn counters in shared memory, taken under a mutex; Node processes
 * share none, so the master holds the one MemoryLimitStore and every worker
 * asks it over IPC (one round trip per connection, only on servers that use
 * a limit). The master also remembers what each worker holds, so a worker
 * that dies gives its connections back, and a reload keeps the zones: the
 * master lives on, a zone is the same while its name and size are.
 * Zones marked `sync` are also counted across nodes (limit-node-store.ts):
 * the worker says so in each zone reference, and the master alone decides
 * whether a store is there to ask.
 *
 * Every message is checked field by field, as tls-session-ipc.ts checks
 * its own: the other end may be a broken process.
 */
import { createHmac } from "node:crypto";
import type { IpcEndpoint } from "./tls-session-ipc.js";
import { NodeLimitStore } from "./limit-node-store.js";
import { type AcquireResult, type ConnClaim, type FailZoneRef, type LimitStore, MIN_ZONE_SIZE, type ZoneRef } from "./limit-store.js";

/** The message tag shared by workers and master. */
export const LIMIT_MESSAGE = "postern:limits";

/** A claim on the wire: zone name, zone size, hex key, limit, sync. */
type WireClaim = [name: string, size: number, key: string, limit: number, sync: boolean];
/** A failure zone on the wire: name, size, window in ms, sync. */
type WireFailZone = [name: string, size: number, windowMs: number, sync: boolean];

export type LimitMessage =
  | { type: typeof LIMIT_MESSAGE; op: "acquire"; id: number; claims: WireClaim[] }
  | { type: typeof LIMIT_MESSAGE; op: "release"; claims: WireClaim[] }
  | { type: typeof LIMIT_MESSAGE; op: "failures"; id: number; zone: WireFailZone; keys: string[] }
  | { type: typeof LIMIT_MESSAGE; op: "fail"; id: number; zone: WireFailZone; keys: string[] }
  | { type: typeof LIMIT_MESSAGE; op: "acquired"; id: number; ok: boolean; index: number; reason: "limit" | "full" | "" }
  | { type: typeof LIMIT_MESSAGE; op: "count"; id: number; count: number }
  | { type: typeof LIMIT_MESSAGE; op: "secret"; key: string };

/** At most this many limits per connection and keys per failure check: more is a broken peer. */
const MAX_ITEMS = 64;
/** limit_conn refuses a configuration with more limits than one message may carry. */
export const MAX_LIMITS_PER_CONNECTION = MAX_ITEMS;
/**
 * A master that never answers (busy, or exiting) must not hold a session
 * before its greeting for ever: after this long the worker goes on unlimited.
 */
const ANSWER_TIMEOUT_MS = 5000;
const HEX_KEY = /^(?:[0-9a-f]{2}){1,255}$/;
const HASH_KEY = /^[A-Za-z0-9_-]{1,128}$/;
const BASE64 = /^[A-Za-z0-9+/]{43}=$/;

const isInt = (v: unknown, min: number, max: number): v is number => typeof v === "number" && Number.isInteger(v) && v >= min && v <= max;
const isZoneName = (v: unknown): v is string => typeof v === "string" && v.length > 0 && v.length <= 256;
const MAX_ZONE = 2 ** 40;

function isWireClaim(c: unknown): c is WireClaim {
  return (
    Array.isArray(c) &&
    c.length === 5 &&
    isZoneName(c[0]) &&
    isInt(c[1], MIN_ZONE_SIZE, MAX_ZONE) &&
    typeof c[2] === "string" &&
    HEX_KEY.test(c[2]) &&
    isInt(c[3], 1, 65535) &&
    typeof c[4] === "boolean"
  );
}

function isWireFailZone(z: unknown): z is WireFailZone {
  return Array.isArray(z) && z.length === 4 && isZoneName(z[0]) && isInt(z[1], MIN_ZONE_SIZE, MAX_ZONE) && isInt(z[2], 1, 2 ** 31) && typeof z[3] === "boolean";
}

const isList = <T>(v: unknown, item: (x: unknown) => x is T): v is T[] => Array.isArray(v) && v.length > 0 && v.length <= MAX_ITEMS && v.every(item);
const isHashKey = (k: unknown): k is string => typeof k === "string" && HASH_KEY.test(k);

/** Every field checked; anything else is not ours or broken, and is dropped. */
export function isLimitMessage(m: unknown): m is LimitMessage {
  if (typeof m !== "object" || m === null) return false;
  const x = m as Record<string, unknown>;
  if (x.type !== LIMIT_MESSAGE) return false;
  const id = isInt(x.id, 0, Number.MAX_SAFE_INTEGER);
  switch (x.op) {
    case "acquire":
      return id && isList(x.claims, isWireClaim);
    case "release":
      return isList(x.claims, isWireClaim);
    case "failures":
      return id && isWireFailZone(x.zone) && isList(x.keys, isHashKey);
    case "fail":
      return id && isWireFailZone(x.zone) && isList(x.keys, isHashKey);
    case "acquired":
      return id && typeof x.ok === "boolean" && isInt(x.index, 0, MAX_ITEMS) && (x.reason === "limit" || x.reason === "full" || x.reason === "");
    case "count":
      return id && isInt(x.count, 0, Number.MAX_SAFE_INTEGER);
    case "secret":
      return typeof x.key === "string" && BASE64.test(x.key);
    default:
      return false;
  }
}

const toWire = (c: ConnClaim): WireClaim => [c.zone.name, c.zone.size, c.key, c.limit, c.zone.sync === true];
const fromWire = (c: WireClaim): ConnClaim => ({ zone: { name: c[0], size: c[1], sync: c[4] }, key: c[2], limit: c[3] });
const failToWire = (z: FailZoneRef): WireFailZone => [z.name, z.size, z.windowMs, z.sync === true];
const failFromWire = (z: WireFailZone): FailZoneRef => ({ name: z[0], size: z[1], windowMs: z[2], sync: z[3] });
const claimId = (c: ConnClaim): string => `${c.zone.name}\0${c.zone.size}\0${c.key}\0${c.zone.sync ? 1 : 0}`;

// ---- master side ----

/** What one worker holds: claim id → the claim and how many connections. */
type Holdings = Map<string, { claim: ConnClaim; n: number }>;

class LimitMaster {
  /** The node's counts, and for `sync` zones the shared store's (limit-node-store.ts). */
  readonly store = new NodeLimitStore();
  readonly #held = new Map<IpcEndpoint, Holdings>();

  #holdings(endpoint: IpcEndpoint): Holdings {
    let h = this.#held.get(endpoint);
    if (!h) this.#held.set(endpoint, (h = new Map() as Holdings));
    return h;
  }

  #hold(endpoint: IpcEndpoint, claims: readonly ConnClaim[], delta: 1 | -1): void {
    const h = this.#holdings(endpoint);
    for (const c of claims) {
      const held = h.get(claimId(c));
      if (delta > 0) {
        if (held) held.n++;
        else h.set(claimId(c), { claim: c, n: 1 });
      } else if (held && --held.n === 0) h.delete(claimId(c));
    }
  }

  handle(endpoint: IpcEndpoint, m: unknown): void {
    if (!isLimitMessage(m)) return;
    const reply = (r: LimitMessage): void => void endpoint.send?.(r);
    const answer = (id: number, result: AcquireResult): void =>
      reply({ type: LIMIT_MESSAGE, op: "acquired", id, ok: result.ok, index: result.ok ? 0 : result.index, reason: result.ok ? "" : result.reason });
    switch (m.op) {
      case "acquire": {
        const claims = m.claims.map(fromWire);
        const local = this.store.acquireLocal(claims);
        if (!local.ok) return answer(m.id, local);
        // held at once: a worker that dies while the shared store answers gives them back
        this.#hold(endpoint, claims, 1);
        if (!claims.some((c) => c.zone.sync)) return answer(m.id, local);
        void this.store.confirm(claims).then((result) => {
          if (!result.ok) this.#hold(endpoint, claims, -1);
          answer(m.id, result);
        });
        return;
      }
      case "release": {
        // only what this worker holds: a confused worker cannot free another's connections
        const h = this.#holdings(endpoint);
        for (const c of m.claims.map(fromWire)) {
          if (!h.has(claimId(c))) continue;
          this.#hold(endpoint, [c], -1);
          this.store.release([c]);
        }
        return;
      }
      case "failures": {
        const id = m.id;
        void this.store.failures(failFromWire(m.zone), m.keys).then((count) => reply({ type: LIMIT_MESSAGE, op: "count", id, count }));
        return;
      }
      case "fail": {
        const id = m.id;
        // answered once counted, so the worker's refusal follows the count
        void this.store.recordFailure(failFromWire(m.zone), m.keys).then(() => reply({ type: LIMIT_MESSAGE, op: "count", id, count: 0 }));
        return;
      }
      default:
        return;
    }
  }

  /** A worker exited: every connection it held is given back. */
  forget(endpoint: IpcEndpoint): void {
    for (const { claim, n } of this.#held.get(endpoint)?.values() ?? []) {
      for (let i = 0; i < n; i++) this.store.release([claim]);
    }
    this.#held.delete(endpoint);
  }
}

/** The one master-side store of the process (a single-process server uses it directly). */
export const limitMaster = new LimitMaster();

/**
 * The master-side hook: call it for every worker the master forks. It sends
 * the login-hash key, answers `postern:limits` messages, and the returned
 * function (call it when the worker exits) gives back what the worker held.
 */
export function installLimitMaster(worker: IpcEndpoint): () => void {
  const listener = (m: unknown): void => limitMaster.handle(worker, m);
  worker.on("message", listener);
  worker.send?.({ type: LIMIT_MESSAGE, op: "secret", key: limitMaster.store.loginSecret().toString("base64") } satisfies LimitMessage);
  return () => {
    worker.off?.("message", listener);
    limitMaster.forget(worker);
  };
}

// ---- worker side ----

/** A worker's view: every call goes to the master; answers are matched by id. */
class IpcLimitStore implements LimitStore {
  readonly #endpoint: IpcEndpoint;
  readonly #pending = new Map<number, (m: LimitMessage) => void>();
  #next = 0;
  secret: Promise<Buffer>;
  #setSecret!: (key: Buffer) => void;

  constructor(endpoint: IpcEndpoint) {
    this.#endpoint = endpoint;
    this.secret = new Promise((resolve) => (this.#setSecret = resolve));
    endpoint.on("message", (m) => {
      if (!isLimitMessage(m)) return;
      if (m.op === "secret") this.#setSecret(Buffer.from(m.key, "base64"));
      if (m.op !== "acquired" && m.op !== "count") return;
      const settle = this.#pending.get(m.id);
      this.#pending.delete(m.id);
      settle?.(m);
    });
  }

  /** Sends a request and waits for its answer; without a master (it is exiting) nothing is limited. */
  #ask(build: (id: number) => LimitMessage): Promise<LimitMessage | undefined> {
    const id = this.#next++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        resolve(undefined);
      }, ANSWER_TIMEOUT_MS);
      timer.unref();
      this.#pending.set(id, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      if (!this.#endpoint.send?.(build(id))) {
        clearTimeout(timer);
        this.#pending.delete(id);
        resolve(undefined);
      }
    });
  }

  async acquire(claims: readonly ConnClaim[]): Promise<AcquireResult> {
    const m = await this.#ask((id) => ({ type: LIMIT_MESSAGE, op: "acquire", id, claims: claims.map(toWire) }));
    if (m?.op !== "acquired" || m.ok || m.reason === "") return { ok: true };
    return { ok: false, index: Math.min(m.index, claims.length - 1), reason: m.reason };
  }

  release(claims: readonly ConnClaim[]): void {
    if (claims.length > 0) this.#endpoint.send?.({ type: LIMIT_MESSAGE, op: "release", claims: claims.map(toWire) } satisfies LimitMessage);
  }

  async failures(zone: FailZoneRef, keys: readonly string[]): Promise<number> {
    const m = await this.#ask((id) => ({ type: LIMIT_MESSAGE, op: "failures", id, zone: failToWire(zone), keys: [...keys] }));
    return m?.op === "count" ? m.count : 0;
  }

  async recordFailure(zone: FailZoneRef, keys: readonly string[]): Promise<void> {
    await this.#ask((id) => ({ type: LIMIT_MESSAGE, op: "fail", id, zone: failToWire(zone), keys: [...keys] }));
  }
}

let workerStore: IpcLimitStore | undefined;

/** The worker-side hook: call once in each worker process, before it serves (the master's key arrives first). */
export function connectLimitWorker(endpoint: IpcEndpoint = process): void {
  workerStore = new IpcLimitStore(endpoint);
}

/** The store this process uses: the master's through IPC in a worker, else the in-process one. */
export function limitStore(): LimitStore {
  return workerStore ?? limitMaster.store;
}

/**
 * A login as failure zones key it: HMAC-SHA256 under the master's key,
 * base64url. The login itself never leaves the worker nor enters a store.
 */
export async function loginKey(login: Buffer): Promise<string> {
  const secret = workerStore ? await workerStore.secret : limitMaster.store.loginSecret();
  // ASCII case folded: `Alice` and `alice` are one login to most mail stores, so one count (a spray over case variants is still one login)
  return "l" + createHmac("sha256", secret).update(foldAsciiCase(login)).digest("base64url");
}

/** The login with A-Z made a-z (bytes from 0x80 up are left as they are: their case depends on the store's charset). */
function foldAsciiCase(login: Buffer): Buffer {
  if (!login.some((c) => c >= 0x41 && c <= 0x5a)) return login;
  return Buffer.from(login.map((c) => (c >= 0x41 && c <= 0x5a ? c + 0x20 : c)));
}

/** A client address as failure zones key it (base64url of its text: no separator can be injected). */
export function addressKey(addr: string): string {
  return "a" + Buffer.from(addr, "latin1").toString("base64url").slice(0, 120);
}

export type { ZoneRef };

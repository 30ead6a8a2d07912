/**
 * Ticket keys of a `ssl_session_cache shared:NAME:SIZE sync` cache, made,
 * rotated and shared through the shared store, so every node of a cluster
 * encrypts tickets with the same key and opens the others' tickets.
 *
 * The schedule (docs/shared-tls.md): time is cut into slots of one period
 * (ssl_session_timeout), slot n = [n*P, (n+1)*P) by the wall clock. Each
 * slot has one key, kept in the store under its own name (sealed, bound to
 * the cache name and the slot number). During slot n a node encrypts with
 * key n and opens tickets of keys n-1 (issued before the rotation: a ticket
 * lives at most one period, so none outlives key n-1), n and n+1 (a node
 * whose clock is slightly ahead already encrypts with it). The key of a
 * slot is created a whole period ahead by the first node that finds it
 * missing, with a compare-and-set (a Lua script: only one node creates each
 * key, the others adopt it), so every node has key n+1 long before anyone
 * encrypts with it.
 *
 * Store away: the known keys are kept; a node that reaches a slot whose key
 * it does not know makes one of its own (logged at warn) and offers it to
 * the store when the store returns (the store's key wins if another node
 * got there first).
 *
 * Lives where the shared store client lives: the master (it pushes the
 * ring to its workers, tls-store-ipc.ts) or a single-process server.
 */
import { randomBytes } from "node:crypto";
import { sharedStoreClient } from "./shared-store/current.js";

/** Node's ticket key: 16-byte name, 16-byte HMAC key, 16-byte AES key. */
export const TICKET_KEY_BYTES = 48;

/** What a server needs to pick a context: the slot in use and the known keys by slot. */
export interface TicketRing {
  readonly periodMs: number;
  readonly current: number;
  readonly keys: ReadonlyMap<number, Buffer>;
}

export type RingListener = (ring: TicketRing) => void;
export type ScheduleLog = (level: "warn" | "notice", message: string) => void;

/**
 * Sets the slot's key unless another one is there: 1 when set, else 0 (the
 * caller then reads the winner). ARGV[1] is the value the caller saw ("" for none):
 * a value that did not open (garbage, another cluster's) is replaced, but
 * only if it is still the one seen, so two nodes never both win.
 */
const CREATE_KEY = `local v = redis.call('GET', KEYS[1])
if (v == false and ARGV[1] == '') or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0`;

const STARTUP_PATIENCE_MS = 2000;

/** Slots before and after the current one whose keys open tickets. */
const KEPT = [-1, 0, 1] as const;

function slotOf(now: number, periodMs: number): number {
  return Math.floor(now / periodMs);
}

/** One cache name's schedule. */
export class TicketSchedule {
  readonly #cache: string;
  readonly #periodMs: number;
  readonly #log: ScheduleLog;
  readonly #keys = new Map<number, Buffer>();
  /** Slots whose key this node made while the store was away. */
  readonly #local = new Set<number>();
  readonly #listeners = new Set<RingListener>();
  #timer: NodeJS.Timeout | undefined;
  #current = Number.NaN;
  /** The run under way: a second caller waits for it rather than running alongside. */
  #running: Promise<void> | undefined;
  /** A store that is configured but not connected yet gets this long before a node-local key is made. */
  readonly #patientUntil = Date.now() + STARTUP_PATIENCE_MS;

  constructor(cache: string, periodMs: number, log: ScheduleLog) {
    this.#cache = cache;
    this.#periodMs = periodMs;
    this.#log = log;
  }

  get periodMs(): number {
    return this.#periodMs;
  }

  /** Calls `listener` with the ring now (if known) and after every change. */
  subscribe(listener: RingListener): () => void {
    this.#listeners.add(listener);
    if (this.#keys.has(this.#current)) listener(this.ring());
    if (!this.#timer && !this.#running) void this.tick();
    return () => this.#listeners.delete(listener);
  }

  ring(): TicketRing {
    return { periodMs: this.#periodMs, current: this.#current, keys: new Map(this.#keys) };
  }

  /** Brings the keys up to date with the clock and the store, then plans the next run. */
  tick(): Promise<void> {
    this.#running ??= this.#run().finally(() => (this.#running = undefined));
    return this.#running;
  }

  async #run(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    try {
      const n = slotOf(Date.now(), this.#periodMs);
      const before = this.#fingerprint();
      await this.#sync(n);
      const client = sharedStoreClient();
      if (!this.#keys.has(n) && !client?.up && Date.now() < this.#patientUntil) {
        // the store connects just after the configuration is read: wait for it rather than log a fallback
        this.#timer = setTimeout(() => void this.tick(), 50);
        this.#timer.unref();
        return;
      }
      if (!this.#keys.has(n)) {
        this.#keys.set(n, randomBytes(TICKET_KEY_BYTES));
        this.#local.add(n);
        this.#log(
          "warn",
          `ssl_session_cache "${this.#cache}": ticket key made on this node, the shared store has none (other nodes' tickets need a full handshake)`,
        );
      }
      for (const slot of this.#keys.keys()) {
        if (slot < n - 1 || slot > n + 1) {
          this.#keys.delete(slot);
          this.#local.delete(slot);
        }
      }
      this.#current = n;
      if (this.#fingerprint() !== before) {
        const ring = this.ring();
        for (const l of this.#listeners) l(ring);
      }
    } finally {
      if (!this.#timer) this.#plan();
    }
  }

  /** The next run: the next slot boundary, or sooner to learn the next key and the store's return. */
  #plan(): void {
    if (this.#listeners.size === 0) return;
    const now = Date.now();
    const boundary = (slotOf(now, this.#periodMs) + 1) * this.#periodMs - now;
    this.#timer = setTimeout(() => void this.tick(), Math.max(1, Math.min(boundary + 1, pollDelay(this.#periodMs, this.#local.size > 0))));
    this.#timer.unref();
  }

  #fingerprint(): string {
    return `${this.#current}|${[...this.#keys].map(([s, k]) => `${s}:${k.toString("hex")}`).join(",")}`;
  }

  /** Reads slots n-1..n+1 from the store and creates n and n+1 where missing. */
  async #sync(n: number): Promise<void> {
    const client = sharedStoreClient();
    if (!client) return;
    const slots = KEPT.map((d) => n + d);
    const names = slots.map((s) => client.seal.key("ticket-keys", this.#cache, String(this.#periodMs), String(s)));
    const values = await client.run("ticket_keys", (r) => r.mgetBuffer(...names));
    if (!Array.isArray(values) || values.length !== names.length) return;
    for (const [i, slot] of slots.entries()) {
      const name = names[i]!;
      const raw: unknown = values[i];
      const stored = client.seal.open("ticket-keys", name, raw, TICKET_KEY_BYTES);
      if (stored && stored.length === TICKET_KEY_BYTES) {
        this.#adopt(slot, stored);
        continue;
      }
      // the past slot's key is only read: making one now would open no ticket
      if (slot < n) continue;
      const candidate = this.#keys.get(slot) ?? randomBytes(TICKET_KEY_BYTES);
      const sealed = client.seal.seal("ticket-keys", name, candidate);
      // kept until no ticket it made can still be valid: the end of slot+1, plus a period of slack
      const ttl = (slot + 3) * this.#periodMs - Date.now();
      const seen = Buffer.isBuffer(raw) ? raw : Buffer.alloc(0);
      const set = await client.run("ticket_keys", (r) => r.eval(CREATE_KEY, 1, name, seen, sealed, Math.max(1000, Math.round(ttl))));
      if (set === 1) {
        this.#adopt(slot, candidate);
        continue;
      }
      const winner = await client.run("ticket_keys", (r) => r.getBuffer(name));
      const opened = client.seal.open("ticket-keys", name, winner, TICKET_KEY_BYTES);
      if (opened && opened.length === TICKET_KEY_BYTES) this.#adopt(slot, opened);
    }
  }

  #adopt(slot: number, key: Buffer): void {
    const known = this.#keys.get(slot);
    if (known?.equals(key)) {
      this.#local.delete(slot);
      return;
    }
    if (this.#local.delete(slot)) this.#log("warn", `ssl_session_cache "${this.#cache}": the shared store's ticket key is used again`);
    this.#keys.set(slot, key);
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#listeners.clear();
  }
}

/** The process's schedules, by cache name and period. */
const schedules = new Map<string, TicketSchedule>();
let scheduleLog: ScheduleLog = () => undefined;

/**
 * How soon a schedule asks the store again without a slot boundary: often
 * enough to learn the next key well ahead (a quarter period, at most a
 * minute); and each second while this node serves a key of its own, so the
 * store's key is adopted as soon as the store answers again (a start-up
 * under load whose first read timed out is not left on a node-local key
 * for a minute, refusing the other nodes' tickets).
 */
export function pollDelay(periodMs: number, servingLocalKey: boolean): number {
  const poll = Math.min(Math.max(periodMs / 4, 250), 60_000);
  return servingLocalKey ? Math.min(poll, LOCAL_KEY_RETRY_MS) : poll;
}
const LOCAL_KEY_RETRY_MS = 1000;

/** Where schedule warnings go (the master's or single process's error log). */
export function setTicketScheduleLog(log: ScheduleLog): void {
  scheduleLog = log;
}

/** The schedule of a cache; servers naming one cache with different ssl_session_timeout get one each. */
export function ticketSchedule(cache: string, periodSec: number): TicketSchedule {
  const id = `${cache}\0${periodSec}`;
  let s = schedules.get(id);
  if (!s) {
    s = new TicketSchedule(cache, periodSec * 1000, (level, message) => scheduleLog(level, message));
    schedules.set(id, s);
  }
  return s;
}

/**
 * The one connection a node (its master process) keeps to the shared store,
 * through ioredis. Its contract with every user (session cache, ticket keys,
 * limits, auth cache) is run(): the operation's answer, or `undefined` when
 * the store cannot answer within `timeout`, and the caller then uses its
 * node-local state. A login or handshake never waits longer than that.
 *
 * State: "up" while commands succeed. A lost connection, or three
 * operations in a row that fail or time out, make it "down": from then on
 * run() answers `undefined` at once (no login pays the timeout while the
 * store is known to be away), and a probe (PING, once a second) brings it
 * back "up". Each change is logged once, at warn, and counted.
 */
import { isIP } from "node:net";
import { checkServerIdentity } from "node:tls";
import { Redis, ReplyError, type RedisOptions } from "ioredis";
import { logEscape } from "../../core/log.js";
import { StoreSeal } from "./seal.js";
import type { SharedStoreSettings } from "./settings.js";

/** What the store is used for: the label of the fallback counter. */
export type StoreUse = "session_cache" | "ticket_keys" | "limit_conn" | "auth_fail" | "auth_cache";

/** Hooks for the metrics page. */
export interface StoreEvents {
  /** An operation fell back to node-local state. */
  fallback?(use: StoreUse): void;
  /** The store went down (false) or came back (true). */
  state?(up: boolean): void;
}

export type StoreLog = (level: "warn" | "notice", message: string) => void;

/** Failures in a row that mark a connected store as down. */
const FAILURES_TO_DOWN = 3;
const PROBE_INTERVAL_MS = 1000;
/** A store that answers but refuses commands (out of memory, read-only replica) is logged at most this often. */
const REFUSAL_LOG_INTERVAL_MS = 60_000;
/** Reconnect backoff: 100 ms doubling to 5 s, with jitter so nodes do not reconnect in step. */
function backoff(attempt: number): number {
  const base = Math.min(100 * 2 ** Math.min(attempt, 6), 5000);
  return Math.round(base / 2 + Math.random() * (base / 2));
}

function options(s: SharedStoreSettings): RedisOptions {
  const o: RedisOptions = {
    db: s.db,
    keyPrefix: undefined,
    // a login must never queue behind a reconnect: commands fail at once while disconnected
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: s.timeoutMs,
    connectTimeout: Math.max(s.timeoutMs, 1000),
    retryStrategy: backoff,
    enableAutoPipelining: true,
    lazyConnect: false,
    // a reconnect must not re-send what already timed out
    autoResendUnfulfilledCommands: false,
  };
  if ("path" in s.address) o.path = s.address.path;
  else {
    o.host = s.address.host;
    o.port = s.address.port;
  }
  if (s.username !== undefined) o.username = s.username;
  if (s.password !== undefined) o.password = s.password;
  if (s.tls) {
    const name = s.tls.servername ?? ("host" in s.address ? s.address.host : undefined);
    o.tls = { ca: s.tls.ca, cert: s.tls.cert, key: s.tls.key, rejectUnauthorized: s.tls.verify };
    // An address is checked against the certificate but never sent as SNI: RFC 6066 forbids
    // it, and Node.js 26 throws on it (older releases only warned).
    if (name !== undefined && isIP(name) !== 0) o.tls.checkServerIdentity = (_host, cert) => checkServerIdentity(name, cert);
    else if (name !== undefined) o.tls.servername = name;
  }
  return o;
}

/** A short, single-line, escaped reason for the log (an error text may come from the peer). */
function reason(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return logEscape(text.slice(0, 200));
}

export class SharedStoreClient {
  readonly settings: SharedStoreSettings;
  readonly seal: StoreSeal;
  readonly #redis: Redis;
  readonly #log: StoreLog;
  readonly #events: StoreEvents;
  /** Starts "down" until the first successful answer, without a log line for that start. */
  #up = false;
  #announced = false;
  #failures = 0;
  #probe: NodeJS.Timeout | undefined;
  #closed = false;
  #lastRefusalLog = -Infinity;

  constructor(settings: SharedStoreSettings, log: StoreLog, events: StoreEvents = {}) {
    this.settings = settings;
    this.seal = new StoreSeal(settings.secret, settings.prefix);
    this.#log = log;
    this.#events = events;
    this.#redis = new Redis(options(settings));
    // ioredis reports every failed (re)connect here; the state change is what gets logged
    this.#redis.on("error", (err: unknown) => this.#down(err));
    this.#redis.on("close", () => this.#down(new Error("connection closed")));
    this.#redis.on("ready", () => void this.#check());
  }

  get up(): boolean {
    return this.#up;
  }

  /** The raw client, for the users' commands inside run(). */
  get redis(): Redis {
    return this.#redis;
  }

  /**
   * Runs `op` against the store: its answer, or undefined (and one fallback
   * counted for `use`) when the store is down, fails, or takes longer than
   * the configured timeout.
   */
  async run<T>(use: StoreUse, op: (redis: Redis) => Promise<T>): Promise<T | undefined> {
    if (!this.#up || this.#closed) {
      this.#events.fallback?.(use);
      return undefined;
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), this.settings.timeoutMs);
      timer.unref();
    });
    try {
      const answer = await Promise.race([op(this.#redis), timeout]);
      if (answer === "timeout") throw new Error(`no answer within ${this.settings.timeoutMs}ms`);
      this.#failures = 0;
      return answer;
    } catch (err) {
      this.#events.fallback?.(use);
      // an error reply comes from a store that is there: not an outage (PING would
      // bring it straight back, and the log would flap), but still worth a line
      if (err instanceof ReplyError) this.#refused(err as Error);
      else if (++this.#failures >= FAILURES_TO_DOWN) this.#down(err);
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Fire and forget: a write whose failure only costs sharing. */
  fire(use: StoreUse, op: (redis: Redis) => Promise<unknown>): void {
    void this.run(use, op);
  }

  #refused(err: Error): void {
    const now = Date.now();
    if (now - this.#lastRefusalLog < REFUSAL_LOG_INTERVAL_MS) return;
    this.#lastRefusalLog = now;
    this.#log("warn", `shared store ${this.settings.text} refused a command (${reason(err)}), node-local state is used for it`);
  }

  #down(err: unknown): void {
    if (this.#closed) return;
    this.#failures = 0;
    if (this.#up || !this.#announced) {
      const wasUp = this.#up;
      this.#up = false;
      this.#announced = true;
      this.#log("warn", `shared store ${this.settings.text} unavailable (${reason(err)}), node-local state is used until it returns`);
      if (wasUp) this.#events.state?.(false);
    }
    this.#startProbe();
  }

  #startProbe(): void {
    if (this.#probe || this.#closed) return;
    this.#probe = setInterval(() => void this.#check(), PROBE_INTERVAL_MS);
    this.#probe.unref();
  }

  /** One PING within the timeout: "up" again when it answers. */
  async #check(): Promise<void> {
    if (this.#closed || this.#up) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      const answer = await Promise.race([
        this.#redis.ping(),
        new Promise<string>((resolve) => {
          timer = setTimeout(() => resolve("timeout"), this.settings.timeoutMs);
          timer.unref();
        }),
      ]);
      if (answer !== "PONG" || this.#up || this.#closed) return;
    } catch {
      return;
    } finally {
      clearTimeout(timer);
    }
    this.#up = true;
    this.#failures = 0;
    if (this.#probe) clearInterval(this.#probe);
    this.#probe = undefined;
    // the first connection is quiet; a return after a logged outage is not
    if (this.#announced) this.#log("warn", `shared store ${this.settings.text} is available again, shared state is used`);
    this.#announced = true;
    this.#events.state?.(true);
  }

  /** Closes the connection (reload with other settings, exit). */
  async close(): Promise<void> {
    this.#closed = true;
    this.#up = false;
    if (this.#probe) clearInterval(this.#probe);
    this.#probe = undefined;
    try {
      await this.#redis.quit();
    } catch {
      this.#redis.disconnect();
    }
  }
}

/**
 * The HTTP listener of `metrics_listen` (docs/observability.md#the-endpoint),
 * run by the master (or the single process): `/metrics` is the Prometheus
 * page of every worker together, `/health` says whether the proxy takes
 * connections (200 `ready`; 503 `starting` before workers listen, `draining`
 * once a graceful shutdown began), for load balancers.
 *
 * A scrape never hangs on a worker: the hub waits a bounded time for their
 * latest changes (event/metrics-ipc.ts). Nothing here reads more than the
 * request line and headers Node parses, with short timeouts.
 */
import { createServer, type Server } from "node:http";
import { Server as NetServer } from "node:net";
import { describeSystemError } from "../core/errors.js";
import { type DeltaEntry, METRICS, type MetricDef, RELOADS, STORE_FALLBACKS, STORE_STATE_CHANGES, STORE_UP, WORKER_RESTARTS } from "../event/metrics.js";
import type { StoreEvents } from "../event/shared-store/client.js";
import type { MetricsHub } from "../event/metrics-ipc.js";
import type { MetricsListen } from "../mail/access-log/module.js";
import type { BoundHandle } from "./listeners.js";

export type Readiness = "starting" | "ready" | "draining";

/**
 * The key the endpoint's socket travels under to a new binary (USR2), beside
 * the `listen` sockets: the new master cannot bind the address while this one
 * holds it, and a load balancer must see /health answered throughout.
 */
export function metricsHandOffKey(text: string): string {
  return `metrics_listen ${text}`;
}

const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** The endpoint: bound to one address at a time, rebound when a reload changes it. */
export class MetricsEndpoint {
  readonly #hub: MetricsHub;
  readonly #readiness: () => Readiness;
  #server: Server | undefined;
  #address: string | undefined;

  constructor(hub: MetricsHub, readiness: () => Readiness) {
    this.#hub = hub;
    this.#readiness = readiness;
  }

  /** Listens on `listen` (closing a previous address), or on the socket an old master handed over; rejects with nginx's bind() wording. */
  async configure(listen: MetricsListen | undefined, inherited?: BoundHandle): Promise<void> {
    if (listen?.text === this.#address) return;
    const next = listen ? await this.#bind(listen, inherited) : undefined;
    this.close();
    this.#server = next;
    this.#address = listen?.text;
  }

  /**
   * USR2: the sockets for the new binary, this endpoint's own added. Both
   * masters answer on it until the old one stops serving (QUIT, TERM,
   * WINCH: it would say "draining" or "starting" for a node the new master
   * serves); the new one starts answering once its workers listen.
   */
  withHandOff(handles: ReadonlyMap<string, BoundHandle>): ReadonlyMap<string, BoundHandle> {
    const handle = (this.#server as unknown as { _handle?: BoundHandle } | undefined)?._handle;
    if (!handle || this.#address === undefined) return handles;
    return new Map([...handles, [metricsHandOffKey(this.#address), handle]]);
  }

  #bind(listen: MetricsListen, inherited?: BoundHandle): Promise<Server> {
    const server = createServer((req, res) => {
      // a master that stopped accepting answers what it took, one request per connection
      if (!server.listening) res.setHeader("connection", "close");
      const path = (req.url ?? "").split("?")[0];
      const head = req.method === "HEAD";
      if (req.method !== "GET" && !head) {
        res.writeHead(405, { allow: "GET, HEAD" }).end();
        return;
      }
      if (path === "/health") {
        const state = this.#readiness();
        res.writeHead(state === "ready" ? 200 : 503, { "content-type": "text/plain", "cache-control": "no-store" });
        res.end(head ? undefined : `${state}\n`);
        return;
      }
      if (path !== "/metrics") {
        res.writeHead(404, { "content-type": "text/plain" }).end(head ? undefined : "not found\n");
        return;
      }
      this.#hub.collect().then(
        (page) => {
          res.writeHead(200, { "content-type": CONTENT_TYPE, "cache-control": "no-store" });
          res.end(head ? undefined : page);
        },
        () => res.writeHead(503, { "content-type": "text/plain" }).end(head ? undefined : "metrics unavailable\n"),
      );
    });
    server.requestTimeout = 10000;
    server.headersTimeout = 5000;
    server.keepAliveTimeout = 5000;
    server.maxHeadersCount = 50;
    return new Promise((resolve, reject) => {
      server.once("error", (err) => reject(new Error(`bind() to ${listen.text} failed ${describeSystemError(err)}`, { cause: err })));
      const where = inherited ? { handle: inherited } : { host: listen.host, port: listen.port, exclusive: true };
      server.listen(where as unknown as { port: number }, () => {
        server.removeAllListeners("error");
        server.on("error", () => {});
        resolve(server);
      });
    });
  }

  /** Counts a reload (HUP) by result. */
  reloaded(ok: boolean): void {
    this.#hub.store.apply("master", [[metricIndex(RELOADS), [ok ? "ok" : "failed"], 1]]);
  }

  /** Counts a worker that exited unexpectedly and is started again. */
  workerRestarted(): void {
    this.#hub.store.apply("master", [[metricIndex(WORKER_RESTARTS), [], 1]]);
  }

  /** Hooks for the shared store's client: its state and fallbacks on this node's page. */
  storeEvents(): StoreEvents {
    const apply = (entries: DeltaEntry[]): void => this.#hub.store.apply("master", entries);
    return {
      state: (up) =>
        apply([
          [metricIndex(STORE_UP), [], up ? 1 : -1],
          [metricIndex(STORE_STATE_CHANGES), [up ? "up" : "down"], 1],
        ]),
      fallback: (use) => apply([[metricIndex(STORE_FALLBACKS), [use], 1]]),
    };
  }

  /** Stops now: open requests are cut. */
  close(): void {
    this.#server?.closeAllConnections();
    this.stopAccepting();
  }

  /** Stops accepting (the socket stays open in the new binary); every connection already accepted gets its answer. */
  stopAccepting(): void {
    if (this.#server) stopListening(this.#server);
    this.#server = undefined;
    this.#address = undefined;
  }
}

/**
 * Closes the listening socket only. http.Server#close() would also close
 * every connection it counts idle, and since Node 19 that includes one
 * accepted whose request has not arrived yet: a health check would time out
 * unanswered. Once the last connection has ended, http's own close() runs
 * too, to stop the timer that enforced their request timeouts (it would
 * otherwise run, and hold the server, as long as the process).
 */
export function stopListening(server: Server): void {
  NetServer.prototype.close.call(server, () => server.close());
}

function metricIndex(d: MetricDef): number {
  return METRICS.indexOf(d);
}

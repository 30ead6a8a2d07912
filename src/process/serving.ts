/**
 * What a serving process does (a worker, or the only process with
 * `master_process off`): accept on the listening sockets, hand each client to
 * the MailService, and shut down fast or gracefully.
 */
import net from "node:net";
import type { ErrorLog } from "../core/log.js";
import { type ListenEndpoint, MailService } from "../mail/runtime.js";
import type { ParsedConf } from "../conf/engine.js";
import type { BoundHandle } from "./listeners.js";

/** Accepting sockets plus one MailService. */
export class Serving {
  service: MailService;
  readonly #log: ErrorLog;
  readonly #servers = new Map<string, net.Server>();
  readonly #shutdownTimeout: number | undefined;
  #exiting = false;

  constructor(conf: ParsedConf, log: ErrorLog, shutdownTimeout: number | undefined) {
    this.#log = log;
    this.service = new MailService(conf, log);
    this.#shutdownTimeout = shutdownTimeout;
  }

  /** Starts accepting on a bound handle (calls listen() on the shared socket). */
  listen(endpoint: ListenEndpoint, handle: BoundHandle): Promise<void> {
    // looked up per connection: a single-process reload swaps the service
    const server = net.createServer((socket) => this.service.accept(socket, endpoint));
    this.#servers.set(endpoint.key, server);
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen({ handle, backlog: endpoint.backlog } as unknown as net.ListenOptions, () => {
        server.off("error", reject);
        resolve();
      });
    });
  }

  /** True when the address is being served. */
  has(key: string): boolean {
    return this.#servers.has(key);
  }

  /** Single-process reload: new sessions go to a new service; the old one drains on its own. */
  adopt(conf: ParsedConf, log: ErrorLog): void {
    const old = this.service;
    this.service = new MailService(conf, log);
    old.stopAccepting();
  }

  /** Stops accepting on one address (a reload removed it). */
  unlisten(key: string): void {
    this.#servers.get(key)?.close();
    this.#servers.delete(key);
  }

  /** Fast shutdown: drop everything. */
  terminate(): void {
    this.#exiting = true;
    for (const s of this.#servers.values()) s.close();
    this.service.closeAll();
  }

  /**
   * Graceful shutdown: stop accepting, let sessions finish (bounded by
   * worker_shutdown_timeout), then call `done`.
   */
  shutdownGracefully(done: () => void): void {
    if (this.#exiting) return;
    this.#exiting = true;
    this.#log.notice("gracefully shutting down");
    for (const s of this.#servers.values()) s.close();
    this.#servers.clear();
    this.service.stopAccepting();
    let finished = false;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      done();
    };
    if (this.service.sessions === 0) {
      finish();
      return;
    }
    this.service.onIdle(finish);
    if (this.#shutdownTimeout !== undefined) {
      setTimeout(() => {
        this.service.closeProxied();
        // sessions still in their auth stage end at their own deadline; closeAll is the backstop
        setTimeout(() => {
          this.service.closeAll();
          finish();
        }, 1000).unref();
      }, this.#shutdownTimeout).unref();
    }
  }

  get exiting(): boolean {
    return this.#exiting;
  }
}

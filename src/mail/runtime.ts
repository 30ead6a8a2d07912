/**
 * The mail side of a worker: which sockets to listen on, and what to do
 * with an accepted connection (ngx_mail_add_ports / optimize_servers, and
 * ngx_mail_init_connection's server lookup).
 */
import type { Socket } from "node:net";
import type { ParsedConf } from "../conf/engine.js";
import type { ErrorLog } from "../core/log.js";
import { coreSettings } from "../core/core-module.js";
import { errorLog, openErrorLog } from "../core/error-log-conf.js";
import { mailDirective } from "./block.js";
import type { ListenSpec } from "./listen.js";
import type { MailServer } from "./server.js";
import { plainAddress } from "../core/inet.js";
import { Session, type SessionServices } from "./session.js";
import { debugAccept } from "./debug-log.js";
import type { MailProtocol } from "./front-end.js";
import type { MailProtocolName } from "./types.js";
import { MAIL_PROTOCOLS, sessionServices } from "./wiring.js";
import { sniGroupOf } from "./sni-groups.js";
import { AccessLogs, accessLogFiles } from "./access-log/service.js";

/** One socket the master opens and workers accept on. */
export interface ListenEndpoint {
  readonly key: string;
  readonly host: string;
  readonly port: number;
  /** For `listen unix:/path`. */
  readonly path?: string | undefined;
  readonly backlog: number;
  readonly ipv6Only: boolean;
  /** As in logs: `127.0.0.1:993`. */
  readonly text: string;
}

/** A listen address bound to its server. */
interface Binding {
  readonly spec: ListenSpec;
  readonly server: MailServer;
}

/** An endpoint plus the servers reachable through it. */
interface EndpointRoute {
  readonly endpoint: ListenEndpoint;
  /** The server for connections whose local address matches no specific address. */
  readonly fallback: Binding;
  /** Specific addresses served through a wildcard socket, by local address. */
  readonly byAddress: ReadonlyMap<string, Binding>;
}

function endpointOf(spec: ListenSpec): ListenEndpoint {
  return {
    key: spec.text,
    host: spec.host,
    port: spec.port,
    path: spec.unixPath,
    backlog: spec.backlog,
    ipv6Only: spec.ipv6only,
    text: spec.text,
  };
}

function family(spec: ListenSpec): string {
  return spec.unixPath !== undefined ? "unix" : spec.host.includes(":") ? "inet6" : "inet";
}

/**
 * Groups listen addresses into sockets as nginx does: on
 * a port with a wildcard, only the wildcard and the `bind` addresses get
 * sockets; the other addresses of that port are served through the
 * wildcard, told apart by the connection's local address.
 */
export function routeListens(servers: readonly MailServer[]): EndpointRoute[] {
  const groups = new Map<string, Binding[]>();
  for (const server of servers) {
    for (const spec of server.listens) {
      // an address several servers share is served by its default server's binding (SNI picks later)
      const shared = sniGroupOf(spec);
      if (shared && shared.defaultListen !== spec) continue;
      const key = spec.unixPath !== undefined ? `unix:${spec.unixPath}` : `${family(spec)}:${spec.port}`;
      const list = groups.get(key) ?? [];
      list.push({ spec, server });
      groups.set(key, list);
    }
  }
  const routes: EndpointRoute[] = [];
  for (const bindings of groups.values()) {
    const wildcard = bindings.find((b) => b.spec.wildcard);
    if (!wildcard) {
      for (const b of bindings) routes.push({ endpoint: endpointOf(b.spec), fallback: b, byAddress: new Map() });
      continue;
    }
    const viaWildcard = new Map<string, Binding>();
    for (const b of bindings) {
      if (b === wildcard) continue;
      if (b.spec.bind) routes.push({ endpoint: endpointOf(b.spec), fallback: b, byAddress: new Map() });
      else viaWildcard.set(b.spec.host, b);
    }
    routes.push({ endpoint: endpointOf(wildcard.spec), fallback: wildcard, byAddress: viaWildcard });
  }
  return routes;
}

/** The mail servers of a parsed configuration (none without a mail block). */
export function mailServers(conf: ParsedConf): readonly MailServer[] {
  return conf.main.get(mailDirective)?.servers ?? [];
}

/** Every socket the configuration needs. */
export function listenEndpoints(conf: ParsedConf): ListenEndpoint[] {
  return routeListens(mailServers(conf)).map((r) => r.endpoint);
}

/** The files the servers' own `error_log` directives name (the master prepares them for the workers on USR1). */
export function serverLogFiles(conf: ParsedConf): string[] {
  const paths = new Set<string>();
  for (const server of mailServers(conf)) for (const t of server.conf.get(errorLog)) if (t.kind === "file") paths.add(t.path);
  for (const path of accessLogFiles(mailServers(conf))) paths.add(path);
  return [...paths];
}

/** Accepts connections for one configuration generation in one worker. */
export class MailService {
  readonly #routes = new Map<string, EndpointRoute>();
  readonly #log: ErrorLog;
  readonly #protocols: ReadonlyMap<MailProtocolName, MailProtocol>;
  readonly #services: SessionServices;
  readonly #sessions = new Set<Session>();
  readonly #serverLogs = new Map<MailServer, ErrorLog>();
  readonly #accessLogs: AccessLogs;
  readonly #connections: number;
  /** Client sessions this worker may hold (worker_connections less the listening sockets). */
  readonly #capacity: number;
  #lastFullAlert = 0;
  #accepting = true;
  #idle: (() => void)[] = [];

  constructor(conf: ParsedConf, log: ErrorLog) {
    this.#log = log;
    this.#protocols = MAIL_PROTOCOLS;
    const services = sessionServices();
    for (const r of routeListens(mailServers(conf))) this.#routes.set(r.endpoint.key, r);
    // nginx counts the listening sockets and a worker's channel to the
    // master against worker_connections too
    this.#connections = coreSettings(conf).workerConnections;
    this.#capacity = this.#connections - this.#routes.size - (process.channel ? 1 : 0);
    // `error_log` in mail/server: a server's sessions log there instead of the main log
    const opened = new Map<string, ErrorLog>();
    for (const server of mailServers(conf)) {
      const targets = server.conf.get(errorLog);
      if (targets.length === 0) continue;
      const key = JSON.stringify(targets);
      let serverLog = opened.get(key);
      if (!serverLog) {
        serverLog = openErrorLog(targets);
        opened.set(key, serverLog);
      }
      this.#serverLogs.set(server, serverLog);
    }
    this.#accessLogs = new AccessLogs(mailServers(conf), (server) => this.#serverLogs.get(server) ?? this.#log);
    this.#services = { ...services, observe: (session) => this.#accessLogs.observe(session) };
  }

  /** Starts a session for an accepted client. */
  accept(socket: Socket, endpoint: ListenEndpoint): void {
    const route = this.#routes.get(endpoint.key);
    if (!route || !this.#accepting) {
      socket.destroy();
      return;
    }
    if (this.#sessions.size >= this.#capacity) {
      // refused cleanly; the sessions already open are not disturbed
      const now = Date.now();
      if (now - this.#lastFullAlert >= 1000) {
        this.#lastFullAlert = now;
        this.#log.alert(`${this.#connections} worker_connections are not enough`);
      }
      socket.destroy();
      return;
    }
    const binding = route.byAddress.get(plainAddress(socket.localAddress)) ?? route.fallback;
    const protocol = this.#protocols.get(binding.server.protocol);
    if (!protocol) {
      socket.destroy();
      return;
    }
    const keepalive = binding.spec.keepalive;
    if (keepalive) socket.setKeepAlive(keepalive.on, (keepalive.idle ?? 0) * 1000);
    const log = this.#serverLogs.get(binding.server) ?? this.#log;
    const session = new Session(socket, binding.server, binding.spec, protocol, this.#services, log);
    debugAccept(session.log, socket, binding.spec.unixPath !== undefined, binding.spec.text);
    this.#sessions.add(session);
    void session.finished.then(() => {
      session.events?.ended();
      this.#sessions.delete(session);
      if (this.#sessions.size === 0) for (const cb of this.#idle) cb();
    });
    session.start();
  }

  /** No new sessions from now on (graceful shutdown or reload). */
  stopAccepting(): void {
    this.#accepting = false;
  }

  /** Number of open client connections. */
  get sessions(): number {
    return this.#sessions.size;
  }

  /** Calls `cb` whenever the last session ends. */
  onIdle(cb: () => void): void {
    this.#idle.push(cb);
  }

  /** Closes proxied sessions (worker_shutdown_timeout). */
  closeProxied(): void {
    for (const s of this.#sessions) s.shutdownProxied();
  }

  /** Closes every session at once (fast shutdown). */
  closeAll(): void {
    this.#accepting = false;
    for (const s of this.#sessions) s.terminate();
  }

  /** Reopens the per-server logs; returns the failures (nginx's open() messages). */
  reopenLogs(): string[] {
    return [...[...new Set(this.#serverLogs.values())].flatMap((log) => log.reopen()), ...this.#accessLogs.reopen()];
  }

  /** Writes the access logs' buffers (the process is about to exit). */
  flushLogs(): void {
    this.#accessLogs.flush();
  }

  /** Closes the per-server logs (the main log belongs to the process). */
  closeLogs(): void {
    for (const log of new Set(this.#serverLogs.values())) log.close();
    this.#accessLogs.close();
  }
}

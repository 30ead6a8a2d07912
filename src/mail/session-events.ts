/**
 * What a session reports while it runs, for the access log and the metrics
 * (docs/observability.md). The session core (session.ts), the proxy and the
 * relay call a `SessionEvents` at a few points; the record gathers the facts
 * and, when the session is over, writes its access-log lines and counts it.
 *
 * A server without `access_log` in a process without metrics gets no record
 * at all (`observe` returns undefined): every call site is `events?.x()`.
 */
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { ConnectionLog } from "../core/log.js";
import {
  AUTH_HTTP,
  AUTH_HTTP_SECONDS,
  BACKEND_CONNECT_SECONDS,
  BACKEND_CONNECTS,
  BACKEND_LOGIN_SECONDS,
  BACKEND_LOGINS,
  RELAYED_BYTES,
  SESSIONS,
  SESSIONS_CURRENT,
  STARTTLS,
  TLS_HANDSHAKES,
  TLS_RESUMPTIONS,
  countLimitHit,
  metrics,
} from "../event/metrics.js";
import { debugClose } from "./debug-log.js";
import { onLimitHit, sessionLimitHit } from "./limits/limit-events.js";
import type { ListenSpec } from "./listen.js";
import type { MailServer } from "./server.js";
import type { ObservedSession, SessionTls } from "./session-services.js";
import type { SessionPeer } from "./session-peer.js";
import type { AuthMethod, AuthOutcome, ClientTlsInfo } from "./types.js";

/** How a session ended ($mail_session_end). `limit`: refused by a limit (limit_conn, throttling). */
export type SessionEndReason = "logout" | "timeout" | "error" | "limit" | "client-close" | "shutdown";

/** Where a session is, for postern_sessions_current. */
export type SessionGaugeStage = "pre_auth" | "auth" | "proxied";

/** The session's TLS as the log reads it, captured once at the handshake. */
export interface TlsFacts {
  readonly protocol: string;
  readonly cipher: string;
  readonly reused: boolean;
  readonly serverName: string | undefined;
  /** Read lazily: describe() builds the certificate fields auth_http gets. */
  readonly client: () => ClientTlsInfo;
}

/** Everything the access log's variables read (access-log/variables.ts). */
export interface SessionFacts {
  readonly id: number;
  readonly server: MailServer;
  readonly serverName: string;
  readonly listen: ListenSpec;
  readonly peer: SessionPeer;
  /** The address the socket reported, before a PROXY header and realip ($realip_remote_addr). */
  readonly socketAddr: string;
  readonly socketPort: number;
  readonly startMs: number;
  readonly tls: TlsFacts | undefined;
  readonly login: Buffer | undefined;
  readonly authMethod: AuthMethod | undefined;
  readonly authStatus: "ok" | "refused" | "error" | undefined;
  readonly upstream: string | undefined;
  readonly end: SessionEndReason;
  readonly bytesSent: number;
  readonly bytesReceived: number;
}

/** Writes a finished session somewhere (the access logs of its server). */
export type SessionSink = (facts: SessionFacts) => void;

/** The sink of a server's access logs (undefined without one): read when the session ends, by the server it ended in. */
export type SinkOf = (server: MailServer) => SessionSink | undefined;

/** Maps the session core's close reasons (debug-log wording) to $mail_session_end. */
function endFromReason(reason: string): SessionEndReason {
  if (reason === "timeout expired" || reason === "proxy_timeout") return "timeout";
  if (reason === "client closed connection" || reason.startsWith("recv() from client") || reason === "ECONNRESET") return "client-close";
  if (reason === "client quit" || reason === "closed by server" || reason === "upstream closed connection") return "logout";
  if (reason === "shutdown" || reason === "shutdown timeout") return "shutdown";
  if (reason === "limit") return "limit";
  return "error";
}

/** The per-session record: facts, byte counts, gauge stage; `ended()` writes and counts once. */
export class SessionEvents implements SessionFacts {
  readonly id: number;
  /** The listen address's server; on an address servers share, the one SNI chose (`serverChosen`). */
  server: MailServer;
  serverName: string;
  readonly listen: ListenSpec;
  readonly peer: SessionPeer;
  readonly socketAddr: string;
  readonly socketPort: number;
  readonly startMs = Date.now();
  readonly #sinkOf: SinkOf;
  tls: TlsFacts | undefined;
  login: Buffer | undefined;
  authMethod: AuthMethod | undefined;
  authStatus: "ok" | "refused" | "error" | undefined;
  upstream: string | undefined;
  end: SessionEndReason = "client-close";
  #endSet = false;
  /** The client's first socket: its own counters are the session's until a TLS upgrade begins. */
  readonly #plain: Socket;
  /** The plain socket's counters when the TLS handshake began (`plaintextEnded`); undefined while the session is plain. */
  #plainBytes: { sent: number; received: number } | undefined;
  /** The PROXY protocol header's length: the load balancer's bytes, not the client's. */
  #headerBytes = 0;
  /** The TLS socket, whose own counters are its application bytes. */
  #secure: TLSSocket | undefined;
  #stage: SessionGaugeStage | undefined;
  #authStart = 0;
  #backendStart = 0;
  #connected = false;
  #loggedIn = false;
  #done = false;

  constructor(p: ObservedSession, sinkOf: SinkOf) {
    this.id = p.id;
    this.server = p.server;
    this.serverName = p.serverName;
    this.listen = p.listen;
    this.peer = p.peer;
    this.socketAddr = p.peer.clientAddr;
    this.socketPort = p.peer.clientPort;
    this.#sinkOf = sinkOf;
    this.#plain = p.socket;
    this.#moveTo("pre_auth");
  }

  /**
   * $bytes_sent and $bytes_received count what the client sent and got,
   * TLS records and a PROXY header not included, as nginx's stream module
   * counts them: the plain socket's own counters up to the moment the
   * handshake began (the plaintext before STARTTLS), then the TLS
   * socket's. Read from the sockets' counters, never by wrapping a
   * socket's emit and write, which put a wrapper call on every event of
   * the session and gave the plain sockets a shape of their own in Node's
   * stream code. Final once the session has ended.
   */
  get bytesSent(): number {
    return (this.#plainBytes?.sent ?? this.#plain.bytesWritten) + (this.#secure?.bytesWritten ?? 0);
  }

  get bytesReceived(): number {
    return (this.#plainBytes?.received ?? this.#plain.bytesRead - this.#headerBytes) + (this.#secure?.bytesRead ?? 0);
  }

  /** The PROXY header is read: `rest`, what came after it in the same read, is the client's. */
  proxyHeaderRead(rest: number): void {
    this.#headerBytes = Math.max(0, this.#plain.bytesRead - rest);
  }

  /**
   * The TLS handshake begins on the plain socket (an ssl listener, or
   * STARTTLS once its reply is queued): what the socket carried so far is
   * the session's plaintext, less the PROXY header and `tlsBytes` already
   * read from it that belong to the handshake (read with the header).
   */
  plaintextEnded(tlsBytes: number): void {
    if (this.#plainBytes) return;
    this.#plainBytes = { sent: this.#plain.bytesWritten, received: Math.max(0, this.#plain.bytesRead - this.#headerBytes - tlsBytes) };
  }

  #moveTo(stage: SessionGaugeStage | undefined): void {
    if (stage === this.#stage) return;
    if (this.#stage) metrics.add(SESSIONS_CURRENT, [this.#stage], -1);
    if (stage) metrics.add(SESSIONS_CURRENT, [stage], 1);
    this.#stage = stage;
  }

  /** SNI chose another server of a shared address: its access log and name are the session's from now on (docs/sni.md). */
  serverChosen(server: MailServer, serverName: string): void {
    this.server = server;
    this.serverName = serverName;
  }

  /** A TLS handshake succeeded (`starttls`: after STARTTLS/STLS, else on an ssl listener). */
  tlsDone(socket: TLSSocket, tls: SessionTls, starttls: boolean): void {
    const protocol = socket.getProtocol() ?? "unknown";
    const sni = (socket as { servername?: unknown }).servername;
    const reused = socket.isSessionReused();
    this.tls = {
      protocol,
      cipher: socket.getCipher()?.name ?? "",
      reused,
      serverName: typeof sni === "string" && sni !== "" ? sni : undefined,
      client: () => tls.describe(socket),
    };
    this.#secure = socket;
    metrics.add(TLS_HANDSHAKES, [protocol, "ok"]);
    if (reused) metrics.add(TLS_RESUMPTIONS, [protocol === "TLSv1.3" ? "psk" : "session"]);
    if (starttls) metrics.add(STARTTLS, [this.server.protocol, "ok"]);
  }

  /** A TLS handshake failed. */
  tlsFailed(starttls: boolean): void {
    metrics.add(TLS_HANDSHAKES, ["unknown", "failed"]);
    if (starttls) metrics.add(STARTTLS, [this.server.protocol, "failed"]);
  }

  /** The client sent credentials; auth_http is asked. */
  authStart(login: Buffer, method: AuthMethod): void {
    this.login = login;
    this.authMethod = method;
    this.#authStart = Date.now();
    this.#moveTo("auth");
  }

  /** auth_http answered, or the failure throttle refused without asking it (a refusal, but no auth_http answer to count). */
  authDone(outcome: AuthOutcome): void {
    const result = outcome.kind === "ok" ? "ok" : outcome.kind;
    this.authStatus = result;
    if (outcome.kind === "refused" && outcome.throttled) return;
    metrics.add(AUTH_HTTP, [result]);
    metrics.observe(AUTH_HTTP_SECONDS, [], (Date.now() - this.#authStart) / 1000);
    if (outcome.kind === "ok") {
      this.upstream = `${outcome.backend.host.includes(":") ? `[${outcome.backend.host}]` : outcome.backend.host}:${outcome.backend.port}`;
      this.#moveTo("proxied");
    }
  }

  /** The proxy starts connecting to the backend. */
  backendStart(): void {
    this.#backendStart = Date.now();
  }

  /** The backend connection is made. */
  backendConnected(): void {
    this.#connected = true;
    metrics.add(BACKEND_CONNECTS, ["ok"]);
    metrics.observe(BACKEND_CONNECT_SECONDS, [], (Date.now() - this.#backendStart) / 1000);
    this.#backendStart = Date.now();
  }

  /** Connect and login are over: a failure before the connect counts as a failed connect, after it as a failed login. */
  backendDone(ok: boolean): void {
    if (!this.#connected) {
      metrics.add(BACKEND_CONNECTS, ["error"]);
    } else {
      metrics.add(BACKEND_LOGINS, [ok ? "ok" : "error"]);
      metrics.observe(BACKEND_LOGIN_SECONDS, [], (Date.now() - this.#backendStart) / 1000);
    }
    this.#loggedIn = ok;
    if (!ok) this.setEnd("error");
  }

  /** The relay is over: why, and the bytes it moved each way. */
  relayEnded(reason: string, fromClient: number, fromBackend: number): void {
    this.closing(reason);
    metrics.add(RELAYED_BYTES, ["client_to_backend"], fromClient);
    metrics.add(RELAYED_BYTES, ["backend_to_client"], fromBackend);
  }

  /** The session core or the relay is closing, with its debug-log reason. */
  closing(reason: string): void {
    this.setEnd(endFromReason(reason));
  }

  /** Sets $mail_session_end; the first reason given wins (a limit, say, before the close it causes). */
  setEnd(end: SessionEndReason): void {
    if (this.#endSet) return;
    this.#endSet = true;
    this.end = end;
  }

  /** The client connection is gone: the access-log lines, then the counters. Once. */
  ended(): void {
    if (this.#done) return;
    this.#done = true;
    this.#moveTo(undefined);
    metrics.add(SESSIONS, [this.server.protocol, this.listen.text, this.#outcome()]);
    this.#sinkOf(this.server)?.(this);
  }

  /** postern_sessions_total's outcome label. */
  #outcome(): string {
    if (this.#loggedIn) return "proxied";
    if (this.authStatus === "refused") return "auth_refused";
    if (this.authStatus === "error") return "auth_error";
    if (this.authStatus === "ok") return "backend_error";
    return this.end === "error" ? "error" : this.end.replace("-", "_");
  }
}

/** debugClose plus the end reason for the record: the one call the session core makes when it closes. */
export function sessionClosing(log: ConnectionLog, events: SessionEvents | undefined, reason: string): void {
  debugClose(log, reason);
  // a session a limit refused (limit_conn, or the failure throttle's refusal) ends as "limit",
  // whatever close follows the refusal; a mere delay does not end it
  const hit = events && sessionLimitHit(log);
  if (hit && hit !== "auth_delay") events.setEnd("limit");
  events?.closing(reason);
}

// every limit hit (limit_conn, the failure throttle) is counted by kind in postern_limits_hit_total
onLimitHit((e) => countLimitHit(e.kind));

/**
 * What a session (session.ts) calls out to: the TLS layer, auth_http, the
 * PROXY protocol reader, realip and the proxy. The runtime wires them
 * (wiring.ts); tests replace them. Kept apart from the session so the
 * contracts read on their own.
 * Rules: docs/behaviour/session.md#session-1-stages,
 * #session-8-authentication-and-its-outcomes.
 */
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { ConnectionLog } from "../core/log.js";
import type { ProxyReadOutcome } from "../event/proxy-protocol-reader.js";
import type { CancelSignal } from "./cancel.js";
import type { StarttlsMode } from "./front-end.js";
import type { MailServer } from "./server.js";
import type { ListenSpec } from "./listen.js";
import type { ServerConf } from "../conf/directive.js";
import type { LoginStep } from "./proxy/login-step.js";
import type { Admission } from "./limits/admission.js";
import type { SessionEvents } from "./session-events.js";
import type { SessionPeer } from "./session-peer.js";
import type { AuthOutcome, BackendAddress, ClientTlsInfo, Credentials, ProxyProtocolAddresses, SessionInfo } from "./types.js";

/** Outcome of the client-certificate check after a handshake. */
export type CertificateCheck = { readonly result: "ok" } | { readonly result: "missing" | "failed"; readonly log: string };

/** TLS as the session needs it; built per server by the TLS layer. */
export interface SessionTls {
  /** The `starttls` directive of the server. */
  readonly starttls: StarttlsMode;
  /**
   * Upgrades a socket (fresh or after STARTTLS); rejects when the handshake
   * fails. `initial`: handshake bytes already read (after a PROXY header).
   */
  handshake(socket: Socket, initial?: Buffer, log?: ConnectionLog): Promise<TLSSocket>;
  /**
   * The server block the handshake chose by the client's server name, on an
   * address several servers share (docs/sni.md); absent otherwise.
   */
  serverOf?(socket: TLSSocket): MailServer | undefined;
  /** ssl_verify_client's decision right after the handshake: go on, or refuse with the protocol's error. */
  checkClientCertificate(socket: TLSSocket): CertificateCheck;
  /**
   * Settles once the TLS 1.3 session tickets have left, after a handshake
   * the session goes on with: nothing it writes may overtake them.
   */
  ticketsSent(socket: TLSSocket): Promise<void>;
  /** What auth_http is told about TLS. */
  describe(socket: TLSSocket): ClientTlsInfo;
}

/** What the proxy needs to take a session over (proxy/proxy.ts). */
export interface ProxyHandoff {
  /** The client socket, paused, with nothing read but `pending`. */
  readonly client: Socket;
  /** Client bytes already read and not consumed (pipelined after the auth command). */
  readonly pending: Buffer;
  readonly session: SessionInfo;
  /** Where auth_http sent the session. */
  readonly backend: BackendAddress;
  /** The merged server configuration (the proxy module's directives are read from it). */
  readonly conf: ServerConf;
  /** The `timeout` directive, in ms: the deadline for connect + login. */
  readonly timeoutMs: number;
  readonly log: ConnectionLog;
  /**
   * The backend login, built by the protocol's front end from auth_http's
   * answer and its own dialogue; throws UnsafeLineError when a value holds
   * CR, LF or NUL (nothing is sent then).
   */
  loginSteps(): LoginStep[];
  /** Sends the protocol's internal-error line and closes the client. */
  internalError(): void;
  /** Aborted at worker_shutdown_timeout: the proxy logs `shutdown timeout` and closes both sides. */
  readonly shutdown?: CancelSignal | undefined;
  /** The session's access-log and metrics record, told of the backend connect, login and relay. */
  readonly events?: SessionEvents | undefined;
}

/** What a session's record starts from (session-events.ts). */
export interface ObservedSession {
  readonly id: number;
  readonly server: MailServer;
  readonly serverName: string;
  readonly listen: ListenSpec;
  /** Updated in place by the PROXY header and realip. */
  readonly peer: SessionPeer;
  readonly socket: Socket;
}

/** The services a session calls out to, wired by the runtime. */
export interface SessionServices {
  /** null when the server uses no TLS; `listen` tells an address several servers share. */
  tls(server: MailServer, listen?: ListenSpec): SessionTls | null;
  /** One auth_http attempt (including WAIT repeats). */
  authenticate(
    server: MailServer,
    info: SessionInfo,
    credentials: Credentials,
    attempt: number,
    log: ConnectionLog,
    signal: CancelSignal,
  ): Promise<AuthOutcome>;
  /** Reads a PROXY protocol header (logs failures itself); `close` ends the session silently. */
  readProxyProtocol(socket: Socket, timeoutMs: number, log: ConnectionLog): Promise<ProxyReadOutcome>;
  /** The client address realip yields for a PROXY header, if the peer is trusted. */
  realClientAddress(
    server: MailServer,
    peerAddr: string,
    unix: boolean,
    header: ProxyProtocolAddresses | undefined,
  ): { readonly addr: string; readonly port: number } | undefined;
  /** limit_conn after realip, before TLS (limits/admission.ts); undefined when nothing is counted. */
  admit?(server: MailServer, peer: SessionPeer, socket: Socket, ssl: boolean, log: ConnectionLog): Promise<Admission> | undefined;
  /** Takes the connection over for backend login and relay; settles when both sides are closed. */
  proxy(handoff: ProxyHandoff): Promise<void>;
  /** A record for the access log and metrics; absent or undefined when neither is configured for the server. */
  observe?(session: ObservedSession): SessionEvents | undefined;
}

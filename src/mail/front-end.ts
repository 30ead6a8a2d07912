/**
 * The contract between the shared session core (src/mail/session.ts) and a
 * protocol front end (src/mail/imap, pop3, smtp).
 *
 * The core owns the socket, the command buffer, TLS, timers, the error
 * counter, auth_http and the hand-off to the proxy. A front end owns its
 * protocol: parsing, the command table, the state machine and every byte of
 * its replies. It never touches the socket directly.
 *
 * Input flow: the core reads client bytes into a buffer of
 * `protocol.bufferSize(server)` bytes and calls `frontEnd.consume(input)`
 * with the unconsumed bytes whenever the session is idle (not authenticating,
 * not upgrading to TLS, not waiting). The front end handles at most ONE
 * command per call, sends its reply with `session.send`, and returns how
 * many bytes it consumed (0 = incomplete command: wait for more). The core
 * calls again while bytes remain and the session is idle. When the buffer
 * is full and `consume` returns 0, the core calls `tooLong`.
 * Rules: docs/behaviour/session.md#session-3-the-command-buffer,
 * #session-4-pipelining, #session-5-too-long-commands,
 * #session-6-syntax-errors-and-max_errors,
 * #session-7-starttls-in-the-session-core,
 * #session-8-authentication-and-its-outcomes.
 */
import type { ConnectionLog } from "../core/log.js";
import type { MailModule, MailServer } from "./server.js";
import type { BackendLoginInput, LoginStep } from "./proxy/login-step.js";
import type { Credentials, MailProtocolName, SmtpInfo } from "./types.js";

/** `starttls` as it applies to this connection right now ('off' once TLS is up). */
export type StarttlsMode = "off" | "on" | "only";

/** What a front end can ask of its session. */
export interface SessionPort {
  readonly server: MailServer;
  readonly log: ConnectionLog;
  /** True once the connection is TLS (implicit, or after STARTTLS). */
  readonly secure: boolean;
  /** The server's `starttls` for a plaintext connection; 'off' once secure. */
  readonly starttls: StarttlsMode;
  /** The client address (after realip), for XCLIENT-free uses such as resolving. */
  readonly clientAddr: string;
  /** True for a UNIX-socket client. */
  readonly unixClient: boolean;
  /** `server_name` (or the host name). */
  readonly serverName: string;
  /** Queues bytes for the client. */
  send(data: string | Buffer): void;
  /** Closes the connection once everything queued is written; `reason` is for the debug log. */
  close(reason?: string): void;
  /** Starts the `timeout` deadline (nginx arms it when the greeting is queued). */
  armDeadline(): void;
  /**
   * A line the parser refused (nginx's NGX_MAIL_PARSE_INVALID_COMMAND): the
   * core counts it against `max_errors`, sends the front end's `reply`, and
   * closes when the limit is reached (logging `client sent too many invalid
   * commands`) or when `thenClose` says the protocol ends here.
   */
  syntaxError(reply: string, thenClose: boolean): void;
  /** The session's APOP / CRAM-MD5 salt, created on first use. */
  salt(): string;
  /** Bytes received and not yet consumed (SMTP: talking before the greeting). */
  hasPendingInput(): boolean;
  /** Settles when client bytes are pending (at once if some already are). */
  inputArrived(): Promise<void>;
  /** Pending bytes, for the `client was rejected before greeting` log line. */
  pendingInput(): Buffer;
  /**
   * Upgrades to TLS after the front end has sent its STARTTLS reply. The core
   * discards all pipelined plaintext, runs the handshake and the client
   * certificate check, then calls `frontEnd.afterStartTls()`. Input
   * processing is suspended meanwhile.
   */
  startTls(): void;
  /**
   * Hands credentials to auth_http, then to the proxy. Input processing is
   * suspended until the outcome: on refusal the core sends
   * `frontEnd.authFailedReply(...)` (after Auth-Wait) and calls
   * `frontEnd.afterAuthFailure()`; on error it sends the internal error and
   * closes; on success the proxy takes the connection.
   */
  authenticate(credentials: Credentials): void;
}

/** Per-session protocol state machine. */
export interface FrontEnd {
  /**
   * Called once the connection is ready (after the PROXY header and any
   * implicit TLS handshake). Sends the greeting and calls `armDeadline()`
   * (SMTP first resolves the client name and honours smtp_greeting_delay).
   */
  start(): void | Promise<void>;
  /** Handles at most one command from `input`; returns bytes consumed (0 = need more). */
  consume(input: Buffer): number;
  /** The reply for a command that overflowed the buffer (the core logs, sends it, closes). */
  tooLong(input: Buffer): string;
  /**
   * What the core's `client sent too long command` line may quote of the
   * whole buffer (called before `tooLong`): never an authentication
   * command's arguments or a SASL response (too-long-log.ts).
   */
  tooLongLogText(buffer: Buffer): Buffer;
  /** After a successful STARTTLS: reset what the protocol forgets (SMTP: HELO, MAIL). */
  afterStartTls(): void;
  /**
   * Takes over the dialogue of `previous` (the front end of the server that
   * greeted) when SNI chose another server at STARTTLS (docs/sni.md);
   * absent: nothing to carry (IMAP, POP3 start afresh after STARTTLS anyway).
   */
  adopt?(previous: FrontEnd): void;
  /**
   * The reply for an auth_http refusal (IMAP: `TAG NO msg`, POP3: `-ERR msg`,
   * SMTP: `code msg`): `message` and `errorCode` are the auth service's bytes,
   * one char per byte (latin1), and so is the reply; the session sends it
   * byte for byte.
   */
  authFailedReply(message: string, errorCode: string | undefined): string;
  /** Back in the auth state after a refusal with Auth-Wait (POP3: start state). */
  afterAuthFailure(): void;
  /**
   * A refusal with Auth-Error-SASL (after Auth-Wait): send `base64` as the
   * mechanism's challenge, then `failureReply` once the client's dummy
   * response came, then `afterAuthFailure` (or close when `closeAfter`).
   * Any other line gets `failureReply` and ends the session.
   */
  saslError(base64: string, failureReply: string | Buffer, closeAfter: boolean): void;
  /**
   * False while the buffer must not be rewound even though everything in it
   * was consumed (nginx keeps it during a SASL exchange, so a long exchange
   * must still fit). Absent means always rewindable.
   */
  readonly bufferRewindable?: boolean;
  /**
   * What auth_http's request carries of the dialogue beyond the credentials
   * (SMTP: the client's name, HELO, MAIL and RCPT). Absent: nothing.
   */
  authFacts?(): SmtpInfo;
  /** The backend login: the protocol's steps, with what this dialogue learned (IMAP: the tag). */
  backendLogin(input: BackendLoginInput): LoginStep[];
}

/** Canned lines every protocol has. */
export interface ProtocolReplies {
  /** `* BAD internal server error\r\n`, `-ERR internal server error\r\n`, `451 4.3.2 Internal server error\r\n` */
  readonly internalError: string;
  /** The client certificate failed verification. */
  readonly certError: string;
  /** `ssl_verify_client on` and no certificate. */
  readonly noCert: string;
}

/** A protocol's descriptor: the core calls through it, never `if (protocol === ...)`. */
export interface MailProtocol {
  readonly name: MailProtocolName;
  /** The ALPN protocol id (`imap`, `pop3`, `smtp`). */
  readonly alpn: string;
  /** The protocol's directives and its per-server precomputation. */
  readonly module: MailModule;
  readonly replies: ProtocolReplies;
  /** The command buffer size: imap_client_buffer, smtp_client_buffer, or POP3's fixed 128. */
  bufferSize(server: MailServer): number;
  /** A new front end for one session. */
  create(session: SessionPort): FrontEnd;
}

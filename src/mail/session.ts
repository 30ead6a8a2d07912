/**
 * One client connection, from accept to hand-off (ngx_mail_handler.c):
 *
 *   accept → [PROXY header] → [TLS handshake] → greeting → auth state
 *          → auth_http → backend login and relay (the proxy) → close
 *
 * The session owns the socket, the command buffer (command-buffer.ts), the
 * `timeout` deadline, the syntax-error counter, STARTTLS and the auth_http
 * round trip; the services it calls out to are in session-services.ts, the
 * hand-off to the proxy in session-handoff.ts. The protocol front end
 * (FrontEnd) owns parsing and replies. Exceptions never cross the socket
 * boundary: an unexpected one becomes the protocol's internal error and
 * closes the session.
 * Rules: docs/behaviour/session.md#session-1-stages,
 * #session-2-the-timeout-deadline, #session-7-starttls-in-the-session-core,
 * #session-8-authentication-and-its-outcomes.
 */
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { describeSystemError } from "../core/errors.js";
import { ConnectionLog, type ErrorLog } from "../core/log.js";
import { CommandBuffer, type CommandReader } from "./command-buffer.js";
import { maxErrorsDirective, serverName, timeoutDirective } from "./core-module.js";
import { endConnection } from "./session-end.js";
import { handOffToProxy } from "./session-handoff.js";
import type { FrontEnd, MailProtocol, SessionPort, StarttlsMode } from "./front-end.js";
import type { ListenSpec } from "./listen.js";
import { makeSalt } from "./sasl.js";
import { tooLongLogLine } from "./too-long-log.js";
import { armTimer, debugHandshake, debugStage, disarmTimer } from "./debug-log.js";
import { type SessionEvents, sessionClosing } from "./session-events.js";
import { armAuthWait } from "./auth-wait.js";
import { proxyHeaderStage } from "./session-proxy-header.js";
import { Cancellation } from "./cancel.js";
import type { MailServer } from "./server.js";
import type { SessionServices, SessionTls } from "./session-services.js";
import { type SessionPeer, logConnected, socketPeer } from "./session-peer.js";
import { admitted, withBytesReadMeanwhile } from "./limits/admission.js";
import type { AuthMethod, AuthOutcome, ClientTlsInfo, Credentials, SessionInfo } from "./types.js";

/** The stages a session moves through, for logs and tests. */
export type SessionStage = "proxyProtocol" | "tlsHandshake" | "greeting" | "auth" | "starttls" | "authHttp" | "authWait" | "proxy" | "closed";

export type { CertificateCheck, ProxyHandoff, SessionServices, SessionTls } from "./session-services.js";

let connectionCounter = 0;

/** One client session. */
export class Session implements SessionPort {
  /** The address's server; on an address servers share, the one SNI chose once TLS is up (docs/sni.md). */
  server: MailServer;
  readonly log: ConnectionLog;
  serverName: string;
  readonly #protocol: MailProtocol;
  readonly #services: SessionServices;
  readonly #listen: ListenSpec;
  readonly #tls: SessionTls | null;
  readonly #id: number;
  readonly events: SessionEvents | undefined; // the access log's and metrics' record (session-events.ts), if either is on
  #socket: Socket;
  #frontEnd!: FrontEnd;
  #current: SessionStage = "greeting";
  get #stage(): SessionStage {
    return this.#current;
  }
  /** Every change of stage writes a debug line. */
  set #stage(stage: SessionStage) {
    debugStage(this.log, this.#current, stage);
    this.#current = stage;
  }
  #secure = false;
  readonly #peer: SessionPeer;
  #tlsInfo: ClientTlsInfo | undefined;

  #input: CommandBuffer; // client bytes not yet consumed; dropped at hand-off
  #busy = false;
  #closed = false;
  #errors = 0;
  #attempt = 0;
  #authMethod: AuthMethod = "plain";
  #shutdown: Cancellation | undefined; // made at hand-off: aborted at worker_shutdown_timeout
  #salt: string | undefined;
  #deadline: NodeJS.Timeout | undefined;
  #wait: NodeJS.Timeout | undefined;
  #stopLinger: (() => void) | undefined; // closed with replies unsent: the wait for the client to read them
  #abort: Cancellation | undefined; // made when auth_http starts: aborted when the session closes
  #resolveFinished!: () => void;
  /** Settles once the client connection is gone, whatever the stage. */
  readonly finished = new Promise<void>((resolve) => {
    this.#resolveFinished = resolve;
  });
  readonly #onData = (chunk: Buffer): void => (this.#input.push(chunk), this.#process());
  readonly #onEnd = (): void => this.#destroy();
  readonly #onError = (err: NodeJS.ErrnoException): void => this.#socketError(err);
  readonly #onDrain = (): void => this.#process();
  /** The read loop's view of this session (command-buffer.ts drives it). */
  readonly #reader: CommandReader = {
    ready: () => !this.#busy && !this.#closed && !this.#socket.writableNeedDrain,
    consume: (input) => this.#frontEnd.consume(input),
    rewindable: () => this.#frontEnd.bufferRewindable !== false,
    tooLong: () => this.#tooLong(),
  };

  constructor(socket: Socket, server: MailServer, listen: ListenSpec, protocol: MailProtocol, services: SessionServices, log: ErrorLog) {
    this.server = server;
    this.#socket = socket;
    this.#listen = listen;
    this.#protocol = protocol;
    this.#services = services;
    this.#tls = services.tls(server, listen);
    this.#id = ++connectionCounter;
    this.#peer = socketPeer(socket, listen.unixPath !== undefined);
    this.serverName = serverName(server.conf);
    this.#input = this.#newInput();
    this.log = new ConnectionLog(log, this.#id, { client: this.#peer.clientAddr, server: listen.text });
    this.events = services.observe?.({ id: this.#id, server, serverName: this.serverName, listen, peer: this.#peer, socket });
  }

  /** Runs the session's opening stages; never throws. */
  start(): void {
    logConnected(this.log, this.#peer, this.#listen.text);
    this.#socket.setNoDelay(true);
    this.#socket.on("error", this.#onError);
    this.#socket.on("close", this.#onEnd);
    this.#open().catch((err: unknown) => this.#fail(err));
  }

  async #open(): Promise<void> {
    let tlsInitial: Buffer | undefined;
    if (this.#listen.proxyProtocol) {
      this.#stage = "proxyProtocol";
      const rest = await proxyHeaderStage(this.#services, this.server, this.#socket, this.#peer, this.log);
      if (this.#closed) return;
      if (rest === undefined) return this.#destroy("PROXY protocol header not read");
      this.events?.proxyHeaderRead(rest.length);
      // What followed the header: TLS bytes go back to the stream for the handshake, protocol bytes into the command buffer.
      if (rest.length > 0 && this.#listen.ssl) tlsInitial = rest;
      else if (rest.length > 0) this.#input.push(rest);
    }
    const admission = this.#services.admit?.(this.server, this.#peer, this.#socket, this.#listen.ssl, this.log);
    if (admission && (!(await admitted(this, admission)) || this.#closed)) return;
    if (admission && this.#listen.ssl) tlsInitial = withBytesReadMeanwhile(this.#socket, tlsInitial);
    // the PROXY reader has its own `timeout`; the handshake runs under the deadline
    this.#armDeadline();
    if (this.#listen.ssl) {
      if (!this.#tls) throw new Error("listen ssl without TLS context");
      this.#stage = "tlsHandshake";
      this.log.action = "SSL handshaking";
      if (!(await this.#upgrade(tlsInitial))) return;
    }
    this.#stage = "greeting";
    this.log.action = "sending client greeting line";
    this.#frontEnd = this.#protocol.create(this);
    this.#socket.on("data", this.#onData);
    this.#socket.on("drain", this.#onDrain);
    this.#busy = true;
    // The PROXY/TLS deadline ends here; nginx runs no timer while an SMTP front end resolves the client, and the greeting arms a fresh one.
    this.#deadline = disarmTimer(this.log, "timeout", this.#deadline);
    await this.#frontEnd.start();
    if (!this.#closed) this.#backToAuth();
  }

  /** The auth state again: after the greeting, STARTTLS or Auth-Wait, the next command is read. */
  #backToAuth(): void {
    this.#stage = "auth";
    this.log.action = "in auth state";
    this.#busy = false;
    this.#process();
  }

  /** TLS handshake plus the client-certificate decision; false when the session ended. */
  async #upgrade(initial?: Buffer): Promise<boolean> {
    const tls = this.#tls!;
    // `initial`: TLS bytes the plain socket read before the handshake (after a PROXY header, or while admitted)
    this.events?.plaintextEnded(initial?.length ?? 0);
    let secure: TLSSocket;
    try {
      secure = await tls.handshake(this.#socket, initial, this.log);
    } catch (err) {
      if (!this.#closed) this.log.info(err instanceof Error ? err.message : String(err));
      this.events?.tlsFailed(this.#current === "starttls");
      this.#destroy("SSL handshake failed");
      return false;
    }
    if (this.#closed) {
      secure.destroy();
      return false;
    }
    this.#socket.off("error", this.#onError);
    this.#socket.off("close", this.#onEnd);
    // TCP_NODELAY is already on the descriptor (set on the plain socket): setting it through the TLS socket again would cost a syscall per handshake.
    this.#socket = secure;
    secure.on("error", this.#onError);
    secure.on("close", this.#onEnd);
    this.#secure = true;
    const chosen = tls.serverOf?.(secure);
    if (chosen && chosen !== this.server) this.#switchServer(chosen);
    this.events?.tlsDone(secure, tls, this.#current === "starttls");
    const check = tls.checkClientCertificate(secure);
    debugHandshake(this.log, secure, tls);
    if (check.result !== "ok") {
      this.log.info(check.log);
      const [replies, missing] = [this.#protocol.replies, check.result === "missing"];
      this.#sendAndClose(missing ? replies.noCert : replies.certError, missing ? "no client certificate" : "client certificate refused");
      return false;
    }
    // The TLS 1.3 tickets before the first protocol byte, as nginx sends them (docs/behaviour/tls.md#tls-5-sessions-and-tickets); a client leaving
    // meanwhile meets the listeners above, as it would after the greeting.
    await tls.ticketsSent(secure);
    return !this.#closed;
  }

  #newInput(): CommandBuffer {
    return new CommandBuffer(this.#protocol.bufferSize(this.server), {
      pause: () => this.#socket.pause(),
      resume: () => {
        if (this.#socket.isPaused() && this.#stage !== "proxy") this.#socket.resume();
      },
    });
  }

  /**
   * The server SNI chose governs from the handshake on; its front end takes
   * over after STARTTLS (the plaintext before it was dropped, so the buffer
   * starts afresh at the chosen server's size).
   */
  #switchServer(chosen: MailServer): void {
    this.server = chosen;
    this.serverName = serverName(chosen.conf);
    this.events?.serverChosen(chosen, this.serverName);
    this.#input = this.#newInput();
    if (this.#stage !== "starttls") return;
    const previous = this.#frontEnd;
    this.#frontEnd = this.#protocol.create(this);
    this.#frontEnd.adopt?.(previous);
  }

  // ---- SessionPort ------------------------------------------------------

  get secure(): boolean {
    return this.#secure;
  }

  get starttls(): StarttlsMode {
    return this.#secure || !this.#tls ? "off" : this.#tls.starttls;
  }

  get clientAddr(): string {
    return this.#peer.clientAddr;
  }

  get unixClient(): boolean {
    return this.#peer.unixClient;
  }

  send(data: string | Buffer): void {
    if (!this.#closed) this.#socket.write(data);
  }

  close(reason = "closed by server"): void {
    if (this.#closed) return;
    sessionClosing(this.log, this.events, reason);
    this.#closed = true;
    this.#stage = "closed";
    this.#clearTimers();
    this.#abort?.cancel();
    this.#stopLinger = endConnection(this.#socket, this.server.conf.get(timeoutDirective), () => {
      this.log.info("client timed out (110: Connection timed out)");
      this.#destroy("timeout expired");
    });
  }

  armDeadline(): void {
    if (!this.#closed) this.#armDeadline();
  }

  syntaxError(reply: string, thenClose: boolean): void {
    const tooMany = ++this.#errors >= this.server.conf.get(maxErrorsDirective);
    if (tooMany) this.log.info("client sent too many invalid commands");
    this.send(reply);
    if (tooMany || thenClose) this.close(tooMany ? "too many invalid commands" : "closed after invalid command");
  }

  salt(): string {
    this.#salt ??= makeSalt(this.serverName);
    return this.#salt;
  }

  hasPendingInput(): boolean {
    return this.#input.hasPending();
  }

  inputArrived(): Promise<void> {
    return this.#input.arrived();
  }

  pendingInput(): Buffer {
    return this.#input.pending();
  }

  startTls(): void {
    if (!this.#tls || this.#secure) throw new Error("STARTTLS without TLS");
    this.#busy = true;
    this.#stage = "starttls";
    this.log.action = "in starttls state";
    // Everything pipelined after the STARTTLS line is dropped once the front end returns: it was sent in plaintext and must never run inside TLS.
    this.#input.dropAfterCommand();
    const plain = this.#socket;
    plain.off("data", this.#onData);
    plain.off("drain", this.#onDrain);
    plain.pause();
    // The handshake starts in this same tick, right behind the STARTTLS reply the front end just queued: nothing can read the ClientHello as plaintext.
    this.#upgrade()
      .then((ok) => {
        if (!ok) return;
        this.log.context.starttls = true;
        this.#socket.on("data", this.#onData);
        this.#socket.on("drain", this.#onDrain);
        this.#frontEnd.afterStartTls();
        this.#backToAuth();
      })
      .catch((err: unknown) => this.#fail(err));
  }

  authenticate(credentials: Credentials): void {
    this.#authMethod = credentials.method;
    this.#busy = true;
    // nginx stops the auth-state deadline here; auth_http_timeout and then the backend login's own `timeout` take over.
    this.#deadline = disarmTimer(this.log, "timeout", this.#deadline);
    this.#stage = "authHttp";
    this.log.action = "in http auth state";
    this.log.context.login = credentials.login.toString("latin1");
    this.events?.authStart(credentials.login, credentials.method);
    const info = this.#info();
    this.#abort ??= new Cancellation();
    this.#services
      .authenticate(this.server, info, credentials, ++this.#attempt, this.log, this.#abort)
      .then((outcome) => this.#authDone(outcome, info))
      .catch((err: unknown) => this.#fail(err));
  }

  // ---- auth outcomes ----------------------------------------------------

  #authDone(outcome: AuthOutcome, info: SessionInfo): void {
    if (this.#closed) return;
    this.events?.authDone(outcome);
    if (outcome.kind === "error") {
      this.#sendAndClose(this.#protocol.replies.internalError, "auth http error");
      return;
    }
    if (outcome.kind === "refused") {
      // the auth service's own bytes (Auth-Status, Auth-Error-Code), as nginx passes them on
      const reply = Buffer.from(this.#frontEnd.authFailedReply(outcome.message, outcome.errorCode), "latin1");
      if (!outcome.wait && outcome.saslError === undefined) {
        this.#sendAndClose(reply, "authentication refused");
        return;
      }
      this.#stage = "authWait";
      this.#wait = armAuthWait(
        this.log,
        outcome,
        reply,
        this.#frontEnd,
        (r) => this.send(r),
        () => {
          this.#wait = undefined;
          this.#armDeadline();
          this.#backToAuth();
        },
      );
      return;
    }
    this.#handOff(outcome, info);
  }

  #handOff(outcome: Extract<AuthOutcome, { kind: "ok" }>, info: SessionInfo): void {
    this.#stage = "proxy";
    this.#clearTimers();
    const client = this.#socket;
    client.off("data", this.#onData);
    client.off("drain", this.#onDrain);
    client.off("error", this.#onError);
    client.off("close", this.#onEnd);
    client.pause();
    const pending = this.#input.pending();
    this.#input.discard();
    this.#shutdown = new Cancellation();
    void handOffToProxy(this.#services, {
      client,
      pending,
      outcome,
      info,
      server: this.server,
      authMethod: this.#authMethod,
      frontEnd: this.#frontEnd,
      replies: this.#protocol.replies,
      log: this.log,
      events: this.events,
      shutdown: this.#shutdown,
    }).finally(() => {
      this.#closed = true;
      this.#stage = "closed";
      this.#resolveFinished();
    });
  }

  #info(): SessionInfo {
    // What auth_http is told about TLS is read when first needed, not at every handshake.
    if (this.#secure && this.#tlsInfo === undefined) this.#tlsInfo = this.#tls!.describe(this.#socket as TLSSocket);
    return {
      id: this.#id,
      protocol: this.server.protocol,
      ...this.#peer,
      tls: this.#tlsInfo,
      smtp: this.#frontEnd.authFacts?.(),
    };
  }

  // ---- input ------------------------------------------------------------

  /** Feeds buffered commands to the front end, one at a time, while idle. */
  #process(): void {
    try {
      this.#input.pump(this.#reader);
    } catch (err) {
      this.#fail(err);
    }
  }

  /** The buffer is full and holds no complete command. */
  #tooLong(): void {
    this.log.info(tooLongLogLine(this.#frontEnd.tooLongLogText(this.#input.contents())));
    this.#sendAndClose(this.#frontEnd.tooLong(this.#input.unparsed()), "command too long");
  }

  // ---- endings ----------------------------------------------------------

  #armDeadline(): void {
    this.#deadline = disarmTimer(this.log, "timeout", this.#deadline);
    this.#deadline = armTimer(this.log, "timeout", this.server.conf.get(timeoutDirective), () => {
      // a handshake that times out is closed without a line, as nginx's handshake handler does
      if (this.#stage !== "tlsHandshake" && this.#stage !== "starttls") this.log.info("client timed out (110: Connection timed out)");
      this.#destroy("timeout expired");
    });
  }

  #clearTimers(): void {
    this.#deadline = disarmTimer(this.log, "timeout", this.#deadline);
    this.#wait = disarmTimer(this.log, "Auth-Wait", this.#wait);
    this.#stopLinger?.();
  }

  #sendAndClose(reply: string | Buffer, reason: string): void {
    this.send(reply);
    this.close(reason);
  }

  #socketError(err: NodeJS.ErrnoException): void {
    if (this.#stage !== "proxy" && err.code && err.code !== "EPIPE") this.log.info(`recv() failed ${describeSystemError(err)}`);
    this.#destroy(err.code ?? "socket error");
  }

  #destroy(reason = "client closed connection"): void {
    if (this.#stage === "proxy") return;
    if (!this.#closed) sessionClosing(this.log, this.events, reason);
    this.#closed = true;
    this.#stage = "closed";
    this.#clearTimers();
    this.#abort?.cancel();
    this.#socket.destroy();
    this.#resolveFinished();
  }

  /** An exception inside the session: internal error to the client, never a crash. */
  #fail(err: unknown): void {
    if (this.#closed) return;
    this.log.write("alert", `unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    this.#sendAndClose(this.#protocol.replies.internalError, "internal error");
  }

  /** worker_shutdown_timeout: a proxied session is cut (the proxy logs it). */
  shutdownProxied(): void {
    if (this.#stage === "proxy") this.#shutdown?.cancel();
  }

  /** Ends the connection now, whatever the stage (shutdown); the proxy sees the close. */
  terminate(): void {
    if (!this.#closed && this.#stage !== "proxy") sessionClosing(this.log, this.events, "shutdown");
    this.#clearTimers();
    this.#abort?.cancel();
    this.#closed = true;
    this.#socket.destroy();
    if (this.#stage !== "proxy") this.#resolveFinished();
  }
}

/**
 * The two-way byte copy after a successful backend login.
 *
 * Backpressure both ways: when a write() reports a full socket, the other
 * side's reading pauses until 'drain', so at most one socket buffer per
 * direction is held. When one side reaches EOF and what it sent has been
 * flushed, both sockets are closed (nginx does no half-close).
 * `proxy_timeout` counts from the last client-socket event only (a client
 * read, or the client socket draining after being full), as nginx re-arms
 * its timer only on client events.
 * Rules: docs/behaviour/session.md#session-10-relay.
 */
import type { Socket } from "node:net";
import { TLSSocket } from "node:tls";
import { describeSystemError } from "../../core/errors.js";
import type { ConnectionLog } from "../../core/log.js";
import type { CancelSignal } from "../cancel.js";
import { debugLine, debugRelayEnd } from "../debug-log.js";
import type { SessionEvents } from "../session-events.js";

/** What the relay needs. */
export interface RelayParams {
  readonly client: Socket;
  readonly backend: Socket;
  /** Client bytes read during the auth state or login, not yet forwarded. */
  readonly clientPending: Buffer;
  /** Bytes for the client first: the login's final reply and anything read after it. */
  readonly backendPending: Buffer;
  /** `proxy_timeout` in milliseconds. */
  readonly timeoutMs: number;
  readonly log: ConnectionLog;
  /** The session's access-log and metrics record: told why the relay ended and what it moved. */
  readonly events?: SessionEvents | undefined;
}

const EMPTY = Buffer.alloc(0);
const PEER_ERRORS = new Set(["ECONNRESET", "EPIPE", "ENOTCONN", "ETIMEDOUT", "ECONNREFUSED", "ENETDOWN", "ENETUNREACH", "EHOSTDOWN", "EHOSTUNREACH"]);

/** One proxied session; `done` resolves once both sockets are closed. */
export class Relay {
  readonly done: Promise<void>;
  readonly #client: Socket;
  readonly #backend: Socket;
  readonly #log: ConnectionLog;
  readonly #timeoutMs: number;
  readonly #events: SessionEvents | undefined;
  #deadline = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  /** Bytes relayed each way, for the debug line at the end. */
  #fromClient = 0;
  #fromUpstream = 0;
  #resolve!: () => void;

  constructor(p: RelayParams) {
    this.#client = p.client;
    this.#backend = p.backend;
    this.#log = p.log;
    this.#timeoutMs = p.timeoutMs;
    this.#events = p.events;
    this.done = new Promise<void>((r) => {
      this.#resolve = r;
    });

    const c = this.#client;
    const b = this.#backend;
    c.on("data", this.#onClientData);
    b.on("data", this.#onBackendData);
    c.on("drain", this.#onClientDrain);
    b.on("drain", this.#onBackendDrain);
    c.on("end", this.#onClientEnd);
    b.on("end", this.#onBackendEnd);
    c.on("error", this.#onClientError);
    b.on("error", this.#onBackendError);
    c.on("close", this.#onClose);
    b.on("close", this.#onClose);

    this.#touch();
    this.#timer = setTimeout(this.#onTimer, this.#timeoutMs);
    // re-armed on client events without a line: only the start and the expiry are logged
    debugLine(this.#log, "mail proxy relay start");
    if (this.#log.enabled("debug")) debugLine(this.#log, `event timer add: proxy_timeout: ${this.#timeoutMs}`);
    if (c.destroyed || b.destroyed) {
      // A side died before the relay began (e.g. the client reset during login).
      this.#sessionDone("a side closed before the relay");
      return;
    }
    this.#fromUpstream = p.backendPending.length;
    this.#fromClient = p.clientPending.length;
    if (p.backendPending.length > 0 && !c.write(p.backendPending)) b.pause();
    else b.resume();
    if (p.clientPending.length > 0 && !b.write(p.clientPending)) c.pause();
    else c.resume();
  }

  /** Re-arms proxy_timeout: a cheap timestamp; the single timer checks it when it fires. */
  #touch(): void {
    this.#deadline = Date.now() + this.#timeoutMs;
  }

  #onTimer = (): void => {
    if (this.#closed) return;
    const left = this.#deadline - Date.now();
    if (left > 0) {
      this.#timer = setTimeout(this.#onTimer, left);
      return;
    }
    this.#log.action = "proxying";
    debugLine(this.#log, "event timer expired: proxy_timeout");
    this.#log.info("client timed out (110: Connection timed out)");
    this.#close("proxy_timeout");
  };

  #onClientData = (chunk: Buffer): void => {
    this.#touch();
    this.#fromClient += chunk.length;
    if (!this.#backend.write(chunk)) this.#client.pause();
  };

  #onBackendData = (chunk: Buffer): void => {
    this.#fromUpstream += chunk.length;
    if (!this.#client.write(chunk)) this.#backend.pause();
  };

  #onClientDrain = (): void => {
    this.#touch();
    this.#backend.resume();
  };

  #onBackendDrain = (): void => {
    this.#client.resume();
  };

  /** Client EOF: close both once its bytes have reached the backend's socket. */
  #onClientEnd = (): void => {
    this.#finishAfterFlush(this.#backend, "client closed connection");
  };

  #onBackendEnd = (): void => {
    this.#finishAfterFlush(this.#client, "upstream closed connection");
  };

  #finishAfterFlush(dst: Socket, reason: string): void {
    if (this.#closed) return;
    if (dst.writableLength === 0 || dst.destroyed) {
      this.#sessionDone(reason);
      return;
    }
    // The callback of an empty write runs after everything queued before it.
    dst.write(EMPTY, () => this.#sessionDone(reason));
  }

  #sessionDone(reason: string): void {
    if (this.#closed) return;
    this.#log.action = "proxying";
    this.#log.write("info", "proxied session done", { action: false });
    this.#close(reason);
  }

  #onClientError = (err: NodeJS.ErrnoException): void => {
    this.#socketError(err, "client");
  };

  #onBackendError = (err: NodeJS.ErrnoException): void => {
    this.#socketError(err, "upstream");
  };

  /**
   * A failed read counts as EOF, a failed send ends the session. Levels as
   * nginx's ngx_connection_error: peer-caused errors are info for the client
   * and error for the upstream (its log_error is ERR); anything else is alert.
   */
  #socketError(err: NodeJS.ErrnoException, side: "client" | "upstream"): void {
    if (this.#closed) return;
    const peerCaused = err.code !== undefined && PEER_ERRORS.has(err.code);
    const level = !peerCaused ? "alert" : side === "client" ? "info" : "error";
    if (err.syscall === "write") {
      this.#log.action = `proxying and sending to ${side}`;
      this.#log.write(level, `send() failed ${describeSystemError(err)}`);
      this.#close(side === "client" ? "send() to client failed" : "send() to upstream failed");
      return;
    }
    this.#log.action = `proxying and reading from ${side}`;
    this.#log.write(level, `recv() failed ${describeSystemError(err)}`);
    this.#sessionDone(side === "client" ? "recv() from client failed" : "recv() from upstream failed");
  }

  #onClose = (): void => {
    // A socket closed under us (e.g. destroyed by shutdown): end the session.
    if (!this.#closed && (this.#client.destroyed || this.#backend.destroyed)) this.#sessionDone("socket closed");
    if (this.#client.destroyed && this.#backend.destroyed) this.#resolve();
  };

  /** Closes both sockets now, logging `shutdown timeout` (worker_shutdown_timeout). */
  shutdown(): void {
    if (this.#closed) return;
    this.#log.action = "proxying";
    this.#log.info("shutdown timeout");
    this.#close("shutdown timeout");
  }

  #close(reason: string): void {
    if (this.#closed) return;
    debugRelayEnd(this.#log, reason, this.#fromClient, this.#fromUpstream);
    this.#events?.relayEnded(reason, this.#fromClient, this.#fromUpstream);
    this.#closed = true;
    clearTimeout(this.#timer);
    closeSocket(this.#client);
    closeSocket(this.#backend);
    if (this.#client.destroyed && this.#backend.destroyed) this.#resolve();
  }
}

/** Plain sockets close at once; TLS ones get a brief chance to send close_notify first. */
function closeSocket(s: Socket): void {
  if (s.destroyed) return;
  if (s instanceof TLSSocket) {
    s.end();
    const t = setTimeout(() => s.destroy(), 1000);
    t.unref();
    s.once("finish", () => s.destroy());
    return;
  }
  s.destroy();
}

/** Runs the relay to completion; aborting `shutdown` closes it with `shutdown timeout`. */
export function relay(p: RelayParams, shutdown?: CancelSignal): Promise<void> {
  const r = new Relay(p);
  if (shutdown) {
    if (shutdown.aborted) r.shutdown();
    else shutdown.addEventListener("abort", () => r.shutdown(), { once: true });
  }
  return r.done;
}

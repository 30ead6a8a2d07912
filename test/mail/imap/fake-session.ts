/**
 * A fake SessionPort for the IMAP front end: a tiny stand-in for the session
 * core that keeps nginx's command buffer (fixed capacity, rewound when fully
 * read), feeds `consume` one command at a time, answers `tooLong`, counts
 * syntax errors against max_errors, and records every byte sent and every
 * call, so a test can compare the wire with nginx's.
 */
import { Level, ServerConf } from "../../../src/conf/directive.js";
import { ConnectionLog, ErrorLog, type LogLevel, type LogSink } from "../../../src/core/log.js";
import type { FrontEnd, SessionPort, StarttlsMode } from "../../../src/mail/front-end.js";
import type { ImapFrontEnd } from "../../../src/mail/imap/handler.js";
import { imapProtocol } from "../../../src/mail/imap/protocol.js";
import { type ImapAuthMethod, imapAuthDirective, imapCapabilitiesDirective, imapClientBufferDirective } from "../../../src/mail/imap/module.js";
import type { MailServer } from "../../../src/mail/server.js";
import type { Credentials } from "../../../src/mail/types.js";

/** The IMAP configuration of the fake server. */
export interface FakeOptions {
  readonly auth?: readonly ImapAuthMethod[];
  readonly capabilities?: readonly string[];
  readonly bufferSize?: number;
  readonly maxErrors?: number;
  readonly starttls?: StarttlsMode;
  readonly salt?: string;
}

class ArraySink implements LogSink {
  readonly level: LogLevel = "info";
  readonly lines: string[] = [];
  write(_level: LogLevel, _line: string, message: string): void {
    this.lines.push(message);
  }
  reopen(): void {}
  close(): void {}
}

/** Builds a merged IMAP server from options, as the config engine would. */
export function fakeServer(o: FakeOptions = {}): MailServer {
  const loc = { file: "test.conf", line: 1 };
  const mail = new Level("mail", loc);
  const own = new Level("server", loc, mail);
  if (o.auth) own.set(imapAuthDirective, new Set(o.auth), loc);
  if (o.capabilities) own.set(imapCapabilitiesDirective, o.capabilities, loc);
  if (o.bufferSize !== undefined) own.set(imapClientBufferDirective, o.bufferSize, loc);
  const server: MailServer = { conf: new ServerConf(own, mail), protocol: "imap", listens: [], index: 0 };
  imapProtocol.module.finalize?.(server, { warn: () => undefined });
  return server;
}

/** A session whose socket is a byte log. */
export class FakeSession implements SessionPort {
  readonly server: MailServer;
  readonly log: ConnectionLog;
  readonly clientAddr = "127.0.0.1";
  readonly unixClient = false;
  readonly serverName = "mx.example.test";
  readonly frontEnd: FrontEnd;
  readonly sink = new ArraySink();
  readonly credentials: Credentials[] = [];
  #secure = false;
  #starttls: StarttlsMode;
  #out: Buffer[] = [];
  #buffer: Buffer = Buffer.alloc(0);
  /** bytes still "in the socket" because the buffer was full */
  #socket: Buffer = Buffer.alloc(0);
  #pos = 0;
  #capacity: number;
  #maxErrors: number;
  #errors = 0;
  #salt: string;
  closed = false;
  deadlineArmed = 0;
  startTlsCalls = 0;
  authenticating = false;
  /** What the core logged itself (too long, too many invalid commands). */
  readonly coreLog: string[] = [];

  constructor(o: FakeOptions = {}) {
    this.server = fakeServer(o);
    this.#starttls = o.starttls ?? "off";
    this.#capacity = imapProtocol.bufferSize(this.server);
    this.#maxErrors = o.maxErrors ?? 5;
    this.#salt = o.salt ?? "<1216429426.1795804744@mx.example.test>";
    this.log = new ConnectionLog(new ErrorLog([this.sink]), 1, { client: "127.0.0.1", server: "127.0.0.1:143" });
    this.frontEnd = imapProtocol.create(this);
    void this.frontEnd.start();
  }

  get secure(): boolean {
    return this.#secure;
  }

  get starttls(): StarttlsMode {
    return this.#starttls;
  }

  send(data: string | Buffer): void {
    if (this.closed) throw new Error("send after close");
    this.#out.push(typeof data === "string" ? Buffer.from(data, "latin1") : data);
  }

  close(): void {
    this.closed = true;
  }

  armDeadline(): void {
    this.deadlineArmed++;
  }

  countSyntaxError(): boolean {
    this.#errors++;
    if (this.#errors >= this.#maxErrors) {
      this.coreLog.push("client sent too many invalid commands");
      return true;
    }
    return false;
  }

  salt(): string {
    return this.#salt;
  }

  inputArrived(): Promise<void> {
    return this.hasPendingInput() ? Promise.resolve() : new Promise((resolve) => this.inputWaiters.push(resolve));
  }
  /** Resolved when a test feeds bytes. */
  inputWaiters: (() => void)[] = [];
  hasPendingInput(): boolean {
    return this.#pos < this.#buffer.length;
  }

  pendingInput(): Buffer {
    return this.#buffer.subarray(this.#pos);
  }

  startTls(): void {
    this.startTlsCalls++;
    // the core discards pipelined plaintext, "handshakes", then hands back
    this.#buffer = Buffer.alloc(0);
    this.#socket = Buffer.alloc(0);
    this.#pos = 0;
    this.#secure = true;
    this.#starttls = "off";
    this.frontEnd.afterStartTls();
  }

  authenticate(credentials: Credentials): void {
    this.credentials.push(credentials);
    this.authenticating = true;
  }

  /** auth_http refused with Auth-Wait: the reply, then back to the auth state. */
  refuse(message: string): void {
    this.authenticating = false;
    this.send(this.frontEnd.authFailedReply(message, undefined));
    this.frontEnd.afterAuthFailure();
    this.#run();
  }

  /** Everything sent so far, as latin1 text. */
  output(): string {
    return Buffer.concat(this.#out).toString("latin1");
  }

  /** Sent bytes since the last call. */
  take(): string {
    const s = this.output();
    this.#out = [];
    return s;
  }

  /** The client sends bytes (one TCP segment). */
  receive(data: string | Buffer): void {
    if (this.closed) return;
    this.#socket = Buffer.concat([this.#socket, typeof data === "string" ? Buffer.from(data, "latin1") : data]);
    this.#run();
  }

  /** nginx's loop: read what fits, parse one command, repeat while idle. */
  #run(): void {
    for (;;) {
      if (this.closed || this.authenticating) return;
      const space = this.#capacity - this.#buffer.length;
      if (space > 0 && this.#socket.length > 0) {
        this.#buffer = Buffer.concat([this.#buffer, this.#socket.subarray(0, space)]);
        this.#socket = this.#socket.subarray(space);
      }
      if (this.#pos >= this.#buffer.length) return;
      const input = this.#buffer.subarray(this.#pos);
      const n = this.frontEnd.consume(input);
      if (n === 0) {
        if (this.#buffer.length < this.#capacity) return;
        this.coreLog.push(`client sent too long command "${this.#buffer.toString("latin1")}"`);
        this.send(this.frontEnd.tooLong(input));
        this.close();
        return;
      }
      if (this.#buffer.length === 0) continue; // STARTTLS reset the buffer
      this.#pos += n;
      if (this.#pos === this.#buffer.length && (this.frontEnd as ImapFrontEnd).bufferRewindable) {
        this.#buffer = Buffer.alloc(0);
        this.#pos = 0;
      }
    }
  }

  /** The front end's info lines. */
  get infoLog(): readonly string[] {
    return this.sink.lines;
  }
}

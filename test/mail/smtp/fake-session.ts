/**
 * A fake SessionPort for the SMTP front end: a miniature of the session
 * core's input loop (buffer, one command per consume, busy while
 * authenticating or upgrading) that records every byte sent and every call.
 */
import { type Directive, Level, ServerConf } from "../../../src/conf/directive.js";
import { ConnectionLog, ErrorLog, type LogLevel, type LogSink } from "../../../src/core/log.js";
import type { FrontEnd, SessionPort, StarttlsMode } from "../../../src/mail/front-end.js";
import type { MailServer } from "../../../src/mail/server.js";
import type { Credentials } from "../../../src/mail/types.js";
import { maxErrorsDirective, serverNameDirective } from "../../../src/mail/core-module.js";
import { smtpModule, smtpWire } from "../../../src/mail/smtp/module.js";

/** A log sink that keeps lines in memory. */
export class LinesSink implements LogSink {
  readonly level: LogLevel = "debug";
  readonly lines: Array<{ level: LogLevel; text: string }> = [];
  write(level: LogLevel, _line: string, message: string): void {
    this.lines.push({ level, text: message });
  }
  reopen(): void {}
  close(): void {}
}

/** One directive setting for `smtpServer`. */
export type Setting = readonly [Directive<unknown>, unknown];

/** Builds and finalizes an SMTP server from directive values (server level). */
export function smtpServer(settings: readonly Setting[] = [], mailSettings: readonly Setting[] = []): MailServer {
  const at = { file: "test.conf", line: 1 };
  const mail = new Level("mail", at);
  const own = new Level("server", at, mail);
  mail.set(serverNameDirective as Directive<unknown>, "mx.example.test", at);
  for (const [d, v] of mailSettings) mail.set(d, v, at);
  for (const [d, v] of settings) own.set(d, v, at);
  const server: MailServer = { conf: new ServerConf(own, mail), protocol: "smtp", listens: [], index: 0 };
  smtpModule.finalize?.(server, { warn: () => undefined });
  return server;
}

/** A typed Setting. */
export function set<T>(d: Directive<T>, v: T): Setting {
  return [d as Directive<unknown>, v];
}

/** The fake session. */
export class FakeSession implements SessionPort {
  readonly server: MailServer;
  readonly log: ConnectionLog;
  readonly sink = new LinesSink();
  secure = false;
  starttls: StarttlsMode = "off";
  clientAddr = "127.0.0.1";
  unixClient = false;
  readonly serverName = "mx.example.test";
  /** Everything sent, in order. */
  readonly sent: Buffer[] = [];
  readonly authentications: Credentials[] = [];
  closed = false;
  deadlineArmed = 0;
  startTlsCalls = 0;
  errors = 0;
  /** Input received and not yet consumed. */
  pending = Buffer.alloc(0);
  busy = false;
  frontEnd: FrontEnd | undefined;
  readonly bufferSize: number;

  constructor(server: MailServer) {
    this.server = server;
    this.bufferSize = smtpWire(server).bufferSize;
    this.log = new ConnectionLog(new ErrorLog([this.sink]), 1, { client: "127.0.0.1", server: "127.0.0.1:25" });
  }

  send(data: string | Buffer): void {
    if (!this.closed) this.sent.push(Buffer.from(data as string, "latin1"));
  }
  close(): void {
    this.closed = true;
  }
  armDeadline(): void {
    this.deadlineArmed++;
  }
  countSyntaxError(): boolean {
    this.errors++;
    return this.errors >= (this.server.conf.get(maxErrorsDirective) ?? 5);
  }
  salt(): string {
    return "<1216429426.1795804744@mx.example.test>";
  }
  inputArrived(): Promise<void> {
    return this.hasPendingInput() ? Promise.resolve() : new Promise((resolve) => this.inputWaiters.push(resolve));
  }
  /** Resolved when a test feeds bytes. */
  inputWaiters: (() => void)[] = [];
  hasPendingInput(): boolean {
    return this.pending.length > 0;
  }
  pendingInput(): Buffer {
    return this.pending;
  }
  startTls(): void {
    this.startTlsCalls++;
    this.pending = Buffer.alloc(0); // the core drops pipelined plaintext
    this.busy = true;
  }
  authenticate(credentials: Credentials): void {
    this.authentications.push(credentials);
    this.busy = true;
  }

  /** Bytes sent so far as one latin1 string; `take` forgets them. */
  output(take = true): string {
    const text = Buffer.concat(this.sent).toString("latin1");
    if (take) this.sent.length = 0;
    return text;
  }

  /** Info lines logged (message part). */
  logged(): string[] {
    return this.sink.lines.map((l) => `[${l.level}] ${l.text}`);
  }

  /** Delivers client bytes and runs the core's loop, as src/mail/session.ts does. */
  receive(data: string | Buffer): void {
    this.pending = Buffer.concat([this.pending, Buffer.from(data as string, "latin1")]);
    for (const w of this.inputWaiters.splice(0)) w();
    this.process();
  }

  /** One command per consume while idle; a full buffer without a command is "too long". */
  process(): void {
    const fe = this.frontEnd!;
    while (!this.busy && !this.closed && this.pending.length > 0) {
      const input = this.pending.subarray(0, this.bufferSize);
      const used = fe.consume(input);
      if (used > 0) {
        this.pending = this.pending.subarray(used);
        continue;
      }
      if (input.length < this.bufferSize) return;
      this.log.info(`client sent too long command "${input.toString("latin1")}"`);
      this.send(fe.tooLong(input));
      this.close();
    }
  }

  /** The core's side of a finished STARTTLS handshake. */
  finishStartTls(): void {
    this.secure = true;
    this.starttls = "off";
    this.busy = false;
    this.frontEnd!.afterStartTls();
    this.process();
  }

  /** The core's side of a refusal with Auth-Wait. */
  refuse(message: string, errorCode?: string): void {
    this.send(this.frontEnd!.authFailedReply(message, errorCode));
    this.frontEnd!.afterAuthFailure();
    this.armDeadline();
    this.busy = false;
    this.process();
  }
}

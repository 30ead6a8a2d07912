/**
 * The one fake SessionPort for the front-end unit tests (IMAP, POP3, SMTP).
 *
 * It has no socket, but its input runs through the real command buffer
 * (src/mail/command-buffer.ts), the module that drives production sessions:
 * same buffer size, one command per `consume`, rewind only when the front end
 * allows it, pipelined bytes kept while busy, `too long command` when the
 * buffer fills, plaintext dropped after STARTTLS. What the fake does itself is
 * only what a socket and auth_http would do: it records every byte sent and
 * every call, and lets the test decide when a STARTTLS handshake ends and
 * what auth_http answers.
 *
 * The server builders below make a merged, finalized server per protocol,
 * as the configuration engine would.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Directive, Level, ServerConf } from "../../src/conf/directive.js";
import { parseConfiguration } from "../../src/conf/engine.js";
import { ConnectionLog, ErrorLog, type LogLevel, type LogSink } from "../../src/core/log.js";
import { mailBlockModule, mailDirective } from "../../src/mail/block.js";
import { CommandBuffer, type CommandReader } from "../../src/mail/command-buffer.js";
import { maxErrorsDirective, serverNameDirective } from "../../src/mail/core-module.js";
import type { FrontEnd, MailProtocol, SessionPort, StarttlsMode } from "../../src/mail/front-end.js";
import { type ImapAuthMethod, imapAuthDirective, imapCapabilitiesDirective, imapClientBufferDirective } from "../../src/mail/imap/module.js";
import { imapProtocol } from "../../src/mail/imap/protocol.js";
import { MAIL_MODULES } from "../../src/mail/mail-modules.js";
import { pop3Protocol } from "../../src/mail/pop3/protocol.js";
import type { MailServer } from "../../src/mail/server.js";
import { smtpProtocol } from "../../src/mail/smtp/protocol.js";
import { tooLongLogLine } from "../../src/mail/too-long-log.js";
import type { Credentials, MailProtocolName } from "../../src/mail/types.js";

const PROTOCOLS: Record<MailProtocolName, MailProtocol> = { imap: imapProtocol, pop3: pop3Protocol, smtp: smtpProtocol };

/** The salt of every fake session unless a test sets one (greetings and challenges compare). */
export const FAKE_SALT = "<1216429426.1795804744@mx.example.test>";

// ---- servers ---------------------------------------------------------------

/** One directive setting for `smtpServer` / `mailServer`. */
export type Setting = readonly [Directive<unknown>, unknown];

/** A typed Setting. */
export function set<T>(d: Directive<T>, v: T): Setting {
  return [d, v];
}

/** A merged, finalized server of `protocol` from directive values (server and mail level). */
export function mailServer(protocol: MailProtocolName, settings: readonly Setting[] = [], mailSettings: readonly Setting[] = []): MailServer {
  const at = { file: "test.conf", line: 1 };
  const mail = new Level("mail", at);
  const own = new Level("server", at, mail);
  for (const [d, v] of mailSettings) mail.set(d, v, at);
  for (const [d, v] of settings) own.set(d, v, at);
  const server: MailServer = { conf: new ServerConf(own, mail), protocol, listens: [], index: 0 };
  PROTOCOLS[protocol].module.finalize?.(server, { warn: () => undefined });
  return server;
}

/** An SMTP server (server_name mx.example.test at the mail level). */
export function smtpServer(settings: readonly Setting[] = [], mailSettings: readonly Setting[] = []): MailServer {
  return mailServer("smtp", settings, [set(serverNameDirective, ["mx.example.test"]), ...mailSettings]);
}

/** The IMAP settings the IMAP tests vary. */
export interface ImapOptions extends FakeSessionOptions {
  readonly auth?: readonly ImapAuthMethod[];
  readonly capabilities?: readonly string[];
  readonly bufferSize?: number;
  readonly maxErrors?: number;
}

/** An IMAP server from the options the IMAP tests vary. */
export function imapServer(o: ImapOptions = {}): MailServer {
  const settings: Setting[] = [];
  if (o.auth) settings.push(set(imapAuthDirective, new Set(o.auth)));
  if (o.capabilities) settings.push(set(imapCapabilitiesDirective, o.capabilities));
  if (o.bufferSize !== undefined) settings.push(set(imapClientBufferDirective, o.bufferSize));
  if (o.maxErrors !== undefined) settings.push(set(maxErrorsDirective, o.maxErrors));
  return mailServer("imap", settings);
}

/** A started IMAP session (the greeting is in `output()`). */
export function imapSession(o: ImapOptions = {}): FakeSession {
  return new FakeSession(imapServer(o), o).start();
}

/** Parses `mail { auth_http ...; server { listen ...; protocol pop3; <directives> } }` with every mail module. */
export function pop3Server(directives = "", mailDirectives = ""): MailServer {
  const dir = mkdtempSync(join(tmpdir(), "postern-pop3-"));
  try {
    const file = join(dir, "nginx.conf");
    writeFileSync(file, `mail {\nauth_http 127.0.0.1:9/auth;\n${mailDirectives}\nserver {\nlisten 127.0.0.1:11110;\nprotocol pop3;\n${directives}\n}\n}\n`);
    const conf = parseConfiguration({ prefix: `${dir}/`, file }, [mailBlockModule, ...MAIL_MODULES]);
    return conf.main.own(mailDirective)!.servers[0]!;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- the session -----------------------------------------------------------

/** A log sink that keeps lines in memory, with their levels. */
export class LinesSink implements LogSink {
  readonly level: LogLevel = "debug";
  readonly lines: Array<{ level: LogLevel; text: string }> = [];
  #text = "";
  write(level: LogLevel, line: string, message: string): void {
    this.lines.push({ level, text: message });
    this.#text += line;
  }
  /** Everything written, as full log lines. */
  get contents(): string {
    return this.#text;
  }
  reopen(): void {}
  close(): void {}
}

/** One recorded call on the port. */
export type FakeCall = "close" | "armDeadline" | "startTls" | { readonly authenticate: Credentials };

/** How the session starts out. */
export interface FakeSessionOptions {
  readonly starttls?: StarttlsMode;
  readonly secure?: boolean;
  /** A fixed salt, so greetings and challenges can be compared. */
  readonly salt?: string;
}

/** A SessionPort whose socket is a byte log and whose input is the real command buffer. */
export class FakeSession implements SessionPort {
  readonly server: MailServer;
  readonly protocol: MailProtocol;
  readonly log: ConnectionLog;
  readonly sink = new LinesSink();
  readonly serverName = "mx.example.test";
  clientAddr = "127.0.0.1";
  unixClient = false;
  secure: boolean;
  starttls: StarttlsMode;
  /** The front end under test: `start()` makes one, or a test sets its own. */
  frontEnd!: FrontEnd;
  /** The real read loop's buffer. */
  readonly input: CommandBuffer;
  /** True while the core takes no command: a test sets it, as do STARTTLS and authenticate. */
  busy = false;
  /** An authenticate call awaits its auth_http outcome (`refuse`). */
  authenticating = false;
  closed = false;
  /** Syntax errors counted against max_errors. */
  errors = 0;
  readonly calls: FakeCall[] = [];
  /** What the core (not the front end) logged: too long, too many invalid commands. */
  readonly coreLog: string[] = [];
  /** How often the front end asked for the salt (POP3 makes it only when needed). */
  saltCalls = 0;
  readonly #salt: string;
  #sent = "";
  #taken = 0;
  readonly #reader: CommandReader = {
    ready: () => !this.busy && !this.closed,
    consume: (input) => this.frontEnd.consume(input),
    rewindable: () => this.frontEnd.bufferRewindable !== false,
    tooLong: () => {
      this.#coreInfo(tooLongLogLine(this.frontEnd.tooLongLogText(this.input.contents())));
      this.send(this.frontEnd.tooLong(this.input.unparsed()));
      this.close();
    },
  };

  constructor(server: MailServer, options: FakeSessionOptions = {}) {
    this.server = server;
    this.protocol = PROTOCOLS[server.protocol];
    this.secure = options.secure ?? false;
    this.starttls = options.starttls ?? "off";
    this.#salt = options.salt ?? FAKE_SALT;
    this.input = new CommandBuffer(this.protocol.bufferSize(server), { pause: () => undefined, resume: () => undefined });
    const port = { imap: 143, pop3: 11110, smtp: 25 }[server.protocol];
    this.log = new ConnectionLog(new ErrorLog([this.sink]), 1, { client: "127.0.0.1", server: `127.0.0.1:${port}` });
  }

  /** Makes the protocol's front end and starts it (sends the greeting unless it waits). */
  start(): this {
    this.frontEnd = this.protocol.create(this);
    void this.frontEnd.start();
    return this;
  }

  // ---- SessionPort -------------------------------------------------------

  send(data: string | Buffer): void {
    if (!this.closed) this.#sent += typeof data === "string" ? data : data.toString("latin1");
  }
  close(): void {
    this.closed = true;
    this.calls.push("close");
  }
  armDeadline(): void {
    this.calls.push("armDeadline");
  }
  syntaxError(reply: string, thenClose: boolean): void {
    this.errors++;
    const tooMany = this.errors >= this.server.conf.get(maxErrorsDirective);
    if (tooMany) this.#coreInfo("client sent too many invalid commands");
    this.send(reply);
    if (tooMany || thenClose) this.close();
  }
  salt(): string {
    this.saltCalls++;
    return this.#salt;
  }
  hasPendingInput(): boolean {
    return this.input.hasPending();
  }
  inputArrived(): Promise<void> {
    return this.input.arrived();
  }
  pendingInput(): Buffer {
    return this.input.pending();
  }
  startTls(): void {
    this.calls.push("startTls");
    this.busy = true;
    this.input.dropAfterCommand();
  }
  authenticate(credentials: Credentials): void {
    this.calls.push({ authenticate: credentials });
    // as the core does: the log names the login from here on
    this.log.context.login = credentials.login.toString("latin1");
    this.authenticating = true;
    this.busy = true;
  }

  // ---- what the test does --------------------------------------------------

  /** The client sends bytes (one segment); returns what was sent in response. */
  receive(data: string | Buffer): string {
    const before = this.#sent.length;
    this.input.push(typeof data === "string" ? Buffer.from(data, "latin1") : data);
    this.process();
    return this.#sent.slice(before);
  }

  /** The core's loop: commands to the front end while idle. */
  process(): void {
    this.input.pump(this.#reader);
  }

  /** The STARTTLS handshake succeeded: the session is TLS and reads again. */
  finishStartTls(): string {
    const before = this.#sent.length;
    this.secure = true;
    this.starttls = "off";
    this.busy = false;
    this.frontEnd.afterStartTls();
    this.process();
    return this.#sent.slice(before);
  }

  /** auth_http refused with Auth-Wait: the reply, the auth state again, the deadline re-armed. */
  refuse(message: string, errorCode?: string): string {
    const before = this.#sent.length;
    this.authenticating = false;
    this.send(this.frontEnd.authFailedReply(message, errorCode));
    this.frontEnd.afterAuthFailure();
    this.armDeadline();
    this.busy = false;
    this.process();
    return this.#sent.slice(before);
  }

  // ---- what the test reads -------------------------------------------------

  /** Everything sent, in order, as latin1 text. */
  get sent(): string {
    return this.#sent;
  }

  /** Bytes sent since the last take; `take = false` leaves them for the next call. */
  output(take = true): string {
    const text = this.#sent.slice(this.#taken);
    if (take) this.#taken = this.#sent.length;
    return text;
  }

  /** The credentials of every authenticate call so far. */
  get credentials(): Credentials[] {
    return this.calls.flatMap((c) => (typeof c === "object" ? [c.authenticate] : []));
  }

  get deadlineArmed(): number {
    return this.calls.filter((c) => c === "armDeadline").length;
  }

  get startTlsCalls(): number {
    return this.calls.filter((c) => c === "startTls").length;
  }

  /** Log messages at info and above. */
  get infoLog(): string[] {
    return this.sink.lines.filter((l) => l.level !== "debug").map((l) => l.text);
  }

  /** Every log line as `[level] message`. */
  logged(): string[] {
    return this.sink.lines.map((l) => `[${l.level}] ${l.text}`);
  }

  #coreInfo(message: string): void {
    this.coreLog.push(message);
    this.log.info(message);
  }
}

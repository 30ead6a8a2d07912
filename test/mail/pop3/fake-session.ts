/**
 * A fake SessionPort for driving the POP3 front end without sockets: it
 * records every byte sent and every call, counts syntax errors like the core
 * (max_errors), and lets a test decide what authentication returns.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseConfiguration } from "../../../src/conf/engine.js";
import { ConnectionLog, ErrorLog, MemorySink } from "../../../src/core/log.js";
import { mailBlockModule, mailDirective } from "../../../src/mail/block.js";
import { maxErrorsDirective } from "../../../src/mail/core-module.js";
import { MAIL_MODULES } from "../../../src/mail/mail-modules.js";
import type { FrontEnd, SessionPort, StarttlsMode } from "../../../src/mail/front-end.js";
import { pop3Protocol } from "../../../src/mail/pop3/protocol.js";
import type { MailServer } from "../../../src/mail/server.js";
import type { Credentials } from "../../../src/mail/types.js";

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

/** One recorded call on the port. */
export type FakeCall = "close" | "armDeadline" | "startTls" | { readonly authenticate: Credentials };

/** Options for a fake session. */
export interface FakeSessionOptions {
  readonly starttls?: StarttlsMode;
  readonly secure?: boolean;
  /** A fixed salt, so greetings and challenges can be compared. */
  readonly salt?: string;
}

/** A SessionPort that records instead of talking to a socket. */
export class FakeSession implements SessionPort {
  readonly server: MailServer;
  readonly log: ConnectionLog;
  readonly logSink = new MemorySink(1 << 20, "debug");
  readonly clientAddr = "127.0.0.1";
  readonly unixClient = false;
  readonly serverName = "mx.example.test";
  secure: boolean;
  starttls: StarttlsMode;
  /** Everything sent, in order, as latin1 text. */
  sent = "";
  readonly calls: FakeCall[] = [];
  closed = false;
  busy = false;
  errors = 0;
  readonly #salt: string;
  saltCalls = 0;
  frontEnd!: FrontEnd;
  /** Unconsumed client bytes, as the core keeps them. */
  #pending = Buffer.alloc(0);

  constructor(server: MailServer, options: FakeSessionOptions = {}) {
    this.server = server;
    this.secure = options.secure ?? false;
    this.starttls = options.starttls ?? "off";
    this.#salt = options.salt ?? "<1216429426.1795804744@mx.example.test>";
    this.log = new ConnectionLog(new ErrorLog([this.logSink]), 1, { client: "127.0.0.1", server: "127.0.0.1:11110" });
  }

  send(data: string | Buffer): void {
    this.sent += typeof data === "string" ? data : data.toString("latin1");
  }
  close(): void {
    this.closed = true;
    this.calls.push("close");
  }
  armDeadline(): void {
    this.calls.push("armDeadline");
  }
  countSyntaxError(): boolean {
    this.errors++;
    const max = this.server.conf.get(maxErrorsDirective) ?? 5;
    if (this.errors >= max) {
      this.log.info("client sent too many invalid commands");
      return true;
    }
    return false;
  }
  salt(): string {
    this.saltCalls++;
    return this.#salt;
  }
  inputArrived(): Promise<void> {
    return this.hasPendingInput() ? Promise.resolve() : new Promise((resolve) => this.inputWaiters.push(resolve));
  }
  /** Resolved when a test feeds bytes. */
  inputWaiters: (() => void)[] = [];
  hasPendingInput(): boolean {
    return this.#pending.length > 0;
  }
  pendingInput(): Buffer {
    return this.#pending;
  }
  startTls(): void {
    this.calls.push("startTls");
    this.busy = true;
    this.#pending = Buffer.alloc(0); // pipelined plaintext is discarded
  }
  authenticate(credentials: Credentials): void {
    this.calls.push({ authenticate: credentials });
    this.busy = true;
  }

  /** The credentials of every authenticate call so far. */
  get credentials(): Credentials[] {
    return this.calls.flatMap((c) => (typeof c === "object" ? [c.authenticate] : []));
  }

  /** Starts a front end of the POP3 protocol on this session (sends the greeting). */
  start(): this {
    this.frontEnd = pop3Protocol.create(this);
    void this.frontEnd.start();
    return this;
  }

  /**
   * Delivers client bytes the way the core does: appends them to the
   * unconsumed input and feeds the front end one command at a time while
   * idle; a full buffer without a command gets `tooLong` and a close.
   * Returns what was sent in response.
   */
  receive(data: string | Buffer): string {
    const before = this.sent.length;
    this.#pending = Buffer.concat([this.#pending, typeof data === "string" ? Buffer.from(data, "latin1") : data]);
    this.#process();
    return this.sent.slice(before);
  }

  /** Ends a STARTTLS upgrade: the session is TLS now. */
  finishStartTls(): void {
    this.secure = true;
    this.starttls = "off";
    this.busy = false;
    this.frontEnd.afterStartTls();
    this.#process();
  }

  /** auth_http refused with Auth-Wait: the core sends the reply and returns to the auth state. */
  refuseWithWait(message: string): string {
    const before = this.sent.length;
    this.send(this.frontEnd.authFailedReply(message, undefined));
    this.frontEnd.afterAuthFailure();
    this.busy = false;
    this.#process();
    return this.sent.slice(before);
  }

  #process(): void {
    const size = pop3Protocol.bufferSize(this.server);
    while (!this.busy && !this.closed && this.#pending.length > 0) {
      const input = this.#pending.subarray(0, size);
      const used = this.frontEnd.consume(input);
      if (used > 0) {
        if (!this.busy || this.calls.at(-1) !== "startTls") this.#pending = this.#pending.subarray(used);
        continue;
      }
      if (input.length < size) return;
      this.log.info(`client sent too long command "${input.toString("latin1")}"`);
      this.send(this.frontEnd.tooLong(input));
      this.close();
    }
  }
}

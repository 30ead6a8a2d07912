/**
 * The demo backend's SMTP receiver: takes mail for the demo user and puts
 * it in the demo mailbox. It answers what Postern sends a backend (EHLO,
 * then XCLIENT, as nginx does with `xclient on`) and what the client then
 * says (MAIL, RCPT, DATA). It trusts its caller: it listens on 127.0.0.1
 * behind Postern, which has already checked the password.
 */
import type { Socket } from "node:net";
import { LineConnection } from "./connection.js";
import type { DemoLog } from "./log.js";
import { type DemoMailbox, MAX_MESSAGE_BYTES, rfc5322Date, sameLogin } from "./mailbox.js";

/** RFC 5321 4.5.3.1: 512 for a command line, 1000 for a text line; some room on both. */
const MAX_COMMAND_LINE = 1024;
const MAX_TEXT_LINE = 8192;

export interface SmtpOptions {
  readonly mailbox: DemoMailbox;
  readonly user: string;
  readonly log: DemoLog;
}

export function serveSmtp(socket: Socket, options: SmtpOptions): void {
  new SmtpSession(new LineConnection(socket, MAX_COMMAND_LINE), options).start();
}

const GREETING = "220 localhost ESMTP Postern demo SMTP receiver (delivers to the in-memory demo mailbox only)\r\n";

class SmtpSession {
  readonly #conn: LineConnection;
  readonly #options: SmtpOptions;
  #helo: string | null = null;
  #from: string | null = null;
  #to = false;
  /** The message being received after DATA, or null outside DATA. */
  #data: Buffer[] | null = null;
  #dataSize = 0;

  constructor(conn: LineConnection, options: SmtpOptions) {
    this.#conn = conn;
    this.#options = options;
    conn.handler = { line: (line) => this.#line(line), tooLong: () => "500 5.5.2 line too long\r\n" };
  }

  start(): void {
    this.#conn.write(GREETING);
  }

  #line(raw: Buffer): void {
    if (this.#data !== null) return this.#dataLine(raw);
    const line = raw.toString("latin1");
    const verb = line.slice(0, 4).toUpperCase();
    const rest = line.slice(4);
    const reply = (text: string): void => this.#conn.write(`${text}\r\n`);
    const err = (text: string): void => {
      reply(text);
      this.#conn.error();
    };
    switch (verb) {
      case "EHLO":
      case "HELO": {
        const name = rest.trim();
        if (!/^[\x21-\x7e]{1,255}$/.test(name)) return err("501 5.5.4 a domain name, please");
        this.#helo = name;
        this.#reset();
        return reply(
          verb === "HELO" ? "250 localhost" : `250-localhost\r\n250-XCLIENT ADDR LOGIN NAME\r\n250-SIZE ${MAX_MESSAGE_BYTES}\r\n250-8BITMIME\r\n250 PIPELINING`,
        );
      }
      case "XCLI":
        // XCLIENT (Postfix): Postern names the client and the transaction
        // starts afresh; the EHLO before it still counts (no HELO is required after)
        if (!/^ENT /i.test(rest)) return err("500 5.5.2 unknown command");
        this.#reset();
        this.#options.log(`SMTP: a session from Postern (${rest.slice(4, 200)})`);
        return reply(GREETING.slice(0, -2));
      case "MAIL": {
        if (this.#helo === null) return err("503 5.5.1 EHLO first");
        if (this.#from !== null) return err("503 5.5.1 one MAIL per message");
        const m = /^ FROM:<([^<>]{0,254})>(?: (.*))?$/i.exec(rest);
        if (!m) return err("501 5.5.4 MAIL FROM:<address>");
        const size = /(?:^| )SIZE=([0-9]{1,12})(?: |$)/i.exec(m[2] ?? "");
        if (size && Number(size[1]) > MAX_MESSAGE_BYTES) return err(`552 5.3.4 the demo mailbox takes messages up to ${MAX_MESSAGE_BYTES} bytes`);
        this.#from = m[1]!;
        return reply("250 2.1.0 OK");
      }
      case "RCPT": {
        if (this.#from === null) return err("503 5.5.1 MAIL first");
        const m = /^ TO:<([^<>]{1,254})>(?: .*)?$/i.exec(rest);
        if (!m) return err("501 5.5.4 RCPT TO:<address>");
        if (!sameLogin(m[1]!, this.#options.user)) return err(`550 5.1.1 the demo receiver delivers only to ${this.#options.user}`);
        if (!this.#options.mailbox.fits(0)) return reply("452 4.2.2 the demo mailbox is full");
        this.#to = true;
        return reply("250 2.1.5 OK");
      }
      case "DATA":
        if (rest !== "") return err("501 5.5.4 DATA takes no argument");
        if (!this.#to) return err("503 5.5.1 RCPT first");
        this.#data = [];
        this.#dataSize = 0;
        this.#conn.maxLine = MAX_TEXT_LINE;
        return reply("354 end with a line holding only a dot");
      case "RSET":
        this.#reset();
        return reply("250 2.0.0 OK");
      case "NOOP":
        return reply("250 2.0.0 OK");
      case "VRFY":
        return reply("252 2.1.5 the demo receiver does not verify addresses");
      case "QUIT":
        return this.#conn.close("221 2.0.0 bye\r\n");
      default:
        return err("502 5.5.2 not supported by the demo receiver");
    }
  }

  #dataLine(raw: Buffer): void {
    if (raw.length === 1 && raw[0] === 0x2e) return this.#deliver();
    const line = raw[0] === 0x2e ? raw.subarray(1) : raw; // dot-unstuffing
    this.#dataSize += line.length + 2;
    // past the limit the rest is read and dropped, so the dot still ends the message
    if (this.#dataSize <= MAX_MESSAGE_BYTES) this.#data!.push(Buffer.from(line), Buffer.from("\r\n"));
  }

  #deliver(): void {
    const size = this.#dataSize;
    const body = Buffer.concat(this.#data!);
    this.#data = null;
    this.#conn.maxLine = MAX_COMMAND_LINE;
    const from = this.#from ?? "";
    this.#reset();
    if (size > MAX_MESSAGE_BYTES) {
      this.#conn.write(`552 5.3.4 the demo mailbox takes messages up to ${MAX_MESSAGE_BYTES} bytes\r\n`);
      return;
    }
    const received = `Received: from ${this.#helo ?? "unknown"} by localhost (Postern demo mail backend); ${rfc5322Date(new Date())}\r\n`;
    const message = this.#options.mailbox.deliver(Buffer.concat([Buffer.from(received, "latin1"), body]));
    if (message === null) {
      this.#conn.write("452 4.2.2 the demo mailbox is full\r\n");
      return;
    }
    this.#options.log(`SMTP: delivered a message of ${message.data.length} bytes from <${from}> to ${this.#options.user} (UID ${message.uid})`);
    this.#conn.write(`250 2.0.0 delivered to the demo mailbox as UID ${message.uid}\r\n`);
  }

  #reset(): void {
    this.#from = null;
    this.#to = false;
  }
}

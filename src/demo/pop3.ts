/**
 * The demo backend's POP3 server (RFC 1939 with CAPA, UIDL and TOP): USER
 * and PASS for the demo user, then the maildrop as it was at PASS. DELE
 * marks, QUIT removes the marked messages.
 */
import type { Socket } from "node:net";
import { LineConnection } from "./connection.js";
import type { DemoLog } from "./log.js";
import { type DemoMailbox, type DemoMessage, sameLogin } from "./mailbox.js";

/** RFC 2449: a command line is at most 255 octets; a little room for sloppy clients. */
const MAX_LINE = 512;

export interface Pop3Options {
  readonly mailbox: DemoMailbox;
  readonly user: string;
  readonly log: DemoLog;
}

export function servePop3(socket: Socket, options: Pop3Options): void {
  new Pop3Session(new LineConnection(socket, MAX_LINE), options).start();
}

class Pop3Session {
  readonly #conn: LineConnection;
  readonly #options: Pop3Options;
  #user: string | null = null;
  /** The maildrop from PASS on, or null before. */
  #drop: DemoMessage[] | null = null;
  readonly #deleted = new Set<number>();

  constructor(conn: LineConnection, options: Pop3Options) {
    this.#conn = conn;
    this.#options = options;
    conn.handler = { line: (line) => this.#line(line), tooLong: () => "-ERR line too long\r\n" };
  }

  start(): void {
    this.#conn.write("+OK Postern demo POP3 server ready (in-memory demo mailbox, not a mail server)\r\n");
  }

  #line(raw: Buffer): void {
    const line = raw.toString("latin1");
    const space = line.indexOf(" ");
    const verb = (space < 0 ? line : line.slice(0, space)).toUpperCase();
    const arg = space < 0 ? "" : line.slice(space + 1);
    const ok = (text: string): void => this.#conn.write(`+OK ${text}\r\n`);
    const err = (text: string): void => {
      this.#conn.write(`-ERR ${text}\r\n`);
      this.#conn.error();
    };
    if (verb === "QUIT") return this.#quit();
    if (verb === "CAPA") return this.#conn.write("+OK capabilities follow\r\nUSER\r\nUIDL\r\nTOP\r\n.\r\n");
    if (verb === "NOOP") return ok("");
    const drop = this.#drop;
    if (drop === null) {
      if (verb === "USER") {
        if (arg.length === 0) return err("USER takes a name");
        this.#user = arg;
        return ok("send PASS");
      }
      if (verb === "PASS") {
        const user = this.#user;
        this.#user = null;
        if (user === null) return err("send USER first");
        if (!sameLogin(user, this.#options.user) || arg.length === 0) {
          this.#options.log(`POP3: login refused for a user other than ${this.#options.user}`);
          this.#conn.write(`-ERR this demo mailbox is only for ${this.#options.user}\r\n`);
          this.#conn.error(5);
          return;
        }
        this.#drop = [...this.#options.mailbox.messages];
        this.#options.log(`POP3: ${this.#options.user} logged in`);
        return ok(`${this.#drop.length} messages`);
      }
      return err(verb === "APOP" || verb === "AUTH" || verb === "STLS" ? `${verb} is not offered by the demo server` : "log in first");
    }
    const live = (): { n: number; m: DemoMessage }[] => drop.map((m, i) => ({ n: i + 1, m })).filter((x) => !this.#deleted.has(x.m.uid));
    /** The message a number names, or null after an -ERR. */
    const pick = (text: string): DemoMessage | null => {
      const n = /^[1-9][0-9]{0,6}$/.test(text) ? Number(text) : 0;
      const m = drop[n - 1];
      if (m === undefined || this.#deleted.has(m.uid)) {
        err("no such message");
        return null;
      }
      return m;
    };
    const [first = "", second, ...rest] = arg === "" ? [] : arg.split(" ");
    switch (verb) {
      case "STAT": {
        const l = live();
        return ok(`${l.length} ${l.reduce((s, x) => s + x.m.data.length, 0)}`);
      }
      case "LIST":
      case "UIDL": {
        const show = (n: number, m: DemoMessage): string => `${n} ${verb === "LIST" ? m.data.length : `${this.#options.mailbox.uidValidity}.${m.uid}`}`;
        if (first !== "") {
          const m = pick(first);
          if (m) ok(show(drop.indexOf(m) + 1, m));
          return;
        }
        return this.#conn.write(
          `+OK\r\n${live()
            .map((x) => `${show(x.n, x.m)}\r\n`)
            .join("")}.\r\n`,
        );
      }
      case "RETR": {
        const m = pick(first);
        if (m) this.#multiline(`${m.data.length} octets`, m.data);
        return;
      }
      case "TOP": {
        if (second === undefined || rest.length > 0 || !/^[0-9]{1,7}$/.test(second)) return err("TOP takes a message and a line count");
        const m = pick(first);
        if (m) this.#multiline("top of message follows", top(m.data, Number(second)));
        return;
      }
      case "DELE": {
        const m = pick(first);
        if (m) {
          this.#deleted.add(m.uid);
          ok("marked for deletion at QUIT");
        }
        return;
      }
      case "RSET":
        this.#deleted.clear();
        return ok("nothing will be deleted");
      default:
        return err("unknown command");
    }
  }

  /** A multi-line answer: dot-stuffed, ending with a lone dot. */
  #multiline(status: string, data: Buffer): void {
    let text = data.toString("latin1").replace(/(^|\r\n)\./g, "$1..");
    if (text.length > 0 && !text.endsWith("\r\n")) text += "\r\n";
    this.#conn.write(Buffer.from(`+OK ${status}\r\n${text}.\r\n`, "latin1"));
  }

  #quit(): void {
    if (this.#drop !== null && this.#deleted.size > 0) {
      this.#options.mailbox.remove(this.#deleted);
      this.#options.log(`POP3: ${this.#deleted.size} message(s) deleted`);
    }
    this.#conn.close("+OK Postern demo POP3 server signing off\r\n");
  }
}

/** The header, the blank line and the first `lines` lines of the body. */
function top(data: Buffer, lines: number): Buffer {
  const blank = data.indexOf("\r\n\r\n");
  if (blank < 0) return data;
  let end = blank + 4;
  for (let i = 0; i < lines && end < data.length; i++) {
    const next = data.indexOf("\r\n", end);
    end = next < 0 ? data.length : next + 2;
  }
  return data.subarray(0, end);
}

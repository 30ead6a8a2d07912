/**
 * The demo backend's IMAP server: the IMAP4rev1 subset a client needs to
 * log in, open INBOX, read messages and log out (CAPABILITY, NOOP, LOGOUT,
 * LOGIN, SELECT, EXAMINE, LIST, LSUB, STATUS, FETCH, UID FETCH, CHECK,
 * CLOSE, UNSELECT). Enough for curl, Python's imaplib and imapflow through
 * Postern, which logs in with LOGIN and literals as nginx does.
 */
import type { Socket } from "node:net";
import { LineConnection } from "./connection.js";
import { type DemoMailbox, type DemoMessage, sameLogin } from "./mailbox.js";
import {
  type FetchItem,
  ImapSyntaxError,
  type Token,
  astring,
  inSequenceSet,
  internalDate,
  listMatches,
  parseFetchItems,
  parseSequenceSet,
  splitLiteral,
  tokenize,
} from "./imap-syntax.js";
import type { DemoLog } from "./log.js";

const CAPABILITY = "IMAP4rev1 LITERAL+";
/** One line of a command; literals come on top, up to MAX_COMMAND in all. */
const MAX_LINE = 8192;
const MAX_LITERAL = 8192;
const MAX_COMMAND = 16384;

export interface ImapOptions {
  readonly mailbox: DemoMailbox;
  /** The one login this server knows. */
  readonly user: string;
  readonly log: DemoLog;
}

/** Serves one IMAP connection. */
export function serveImap(socket: Socket, options: ImapOptions): void {
  const session = new ImapSession(new LineConnection(socket, MAX_LINE), options);
  session.start();
}

class ImapSession {
  readonly #conn: LineConnection;
  readonly #options: ImapOptions;
  #user: string | null = null;
  /** The selected INBOX as this session sees it (messages by sequence number), or null. */
  #view: DemoMessage[] | null = null;
  #readOnly = false;
  /** The command being read: its tokens so far and its size. */
  #tokens: Token[] = [];
  #size = 0;

  constructor(conn: LineConnection, options: ImapOptions) {
    this.#conn = conn;
    this.#options = options;
    conn.handler = {
      line: (line) => this.#line(line),
      bytes: (data) => {
        this.#tokens.push({ kind: "string", value: Buffer.from(data) });
      },
      tooLong: () => "* BYE line too long\r\n",
    };
  }

  start(): void {
    this.#conn.write(`* OK [CAPABILITY ${CAPABILITY}] Postern demo IMAP server ready (in-memory demo mailbox, not a mail server)\r\n`);
  }

  #line(raw: Buffer): void {
    this.#size += raw.length;
    if (this.#size > MAX_COMMAND) {
      this.#conn.close("* BYE command too long\r\n");
      return;
    }
    const line = raw.toString("latin1");
    const literal = splitLiteral(line);
    try {
      this.#tokens.push(...tokenize(literal ? literal.text : line));
    } catch (e) {
      // the tag, if the line that failed is the command's first
      if (this.#tokens.length === 0) this.#tokens.push({ kind: "atom", text: line.slice(0, line.indexOf(" ")) });
      this.#bad(e instanceof ImapSyntaxError ? e.message : "syntax error");
      return;
    }
    if (literal) {
      if (literal.size > MAX_LITERAL || this.#size + literal.size > MAX_COMMAND) {
        // a synchronising literal is never sent without our "+"; a LITERAL+ one is already on its way
        if (literal.sync) this.#bad("literal too large");
        else this.#conn.close("* BYE literal too large\r\n");
        return;
      }
      this.#size += literal.size;
      if (literal.sync) this.#conn.write("+ go ahead\r\n");
      this.#conn.readBytes(literal.size);
      return;
    }
    const tokens = this.#tokens;
    this.#tokens = [];
    this.#size = 0;
    this.#command(tokens);
  }

  /** BAD for the command being read, whose tag may be known. */
  #bad(text: string): void {
    const tag = this.#tag(this.#tokens);
    this.#tokens = [];
    this.#size = 0;
    this.#conn.write(`${tag ?? "*"} BAD ${text}\r\n`);
    this.#conn.error();
  }

  #tag(tokens: readonly Token[]): string | null {
    const t = tokens[0];
    return t?.kind === "atom" && /^[\x21-\x7e]{1,64}$/.test(t.text) && !/[+(){%*"\\\]]/.test(t.text) ? t.text : null;
  }

  #command(tokens: Token[]): void {
    const tag = this.#tag(tokens);
    const name = tokens[1]?.kind === "atom" ? tokens[1].text.toUpperCase() : "";
    if (tag === null || name === "") {
      this.#conn.write("* BAD expected a tag and a command\r\n");
      this.#conn.error();
      return;
    }
    const args = tokens.slice(2);
    const reply = (text: string): void => {
      this.#conn.write(`${tag} ${text}\r\n`);
      // every BAD counts: a client that only makes errors is closed
      if (text.startsWith("BAD ")) this.#conn.error();
    };
    try {
      this.#run(name, args, reply, tag);
    } catch (e) {
      if (!(e instanceof ImapSyntaxError)) throw e;
      reply(`BAD ${e.message}`);
    }
  }

  #run(name: string, args: Token[], reply: (text: string) => void, tag: string): void {
    const needs = (n: number): void => {
      if (args.length !== n) throw new ImapSyntaxError(`${name} takes ${n} argument${n === 1 ? "" : "s"}`);
    };
    switch (name) {
      case "CAPABILITY":
        needs(0);
        this.#conn.write(`* CAPABILITY ${CAPABILITY}\r\n`);
        return reply("OK CAPABILITY completed");
      case "NOOP":
      case "CHECK":
        needs(0);
        this.#announceNew();
        return reply(`OK ${name} completed`);
      case "LOGOUT":
        needs(0);
        this.#conn.write("* BYE Postern demo IMAP server logging out\r\n");
        this.#conn.close(`${tag} OK LOGOUT completed\r\n`);
        return;
      case "STARTTLS":
      case "AUTHENTICATE":
        return reply(`NO ${name} is not offered by the demo server (Postern logs in with LOGIN)`);
    }
    if (this.#user === null) {
      if (name !== "LOGIN") return reply("BAD log in first");
      needs(2);
      const user = astring(args[0]);
      const pass = astring(args[1]);
      if (user === null || pass === null) throw new ImapSyntaxError("LOGIN takes a user name and a password");
      if (!sameLogin(user, this.#options.user) || pass.length === 0) {
        this.#options.log(`IMAP: login refused for a user other than ${this.#options.user}`);
        reply(`NO [AUTHENTICATIONFAILED] this demo mailbox is only for ${this.#options.user}`);
        this.#conn.error(5);
        return;
      }
      this.#user = this.#options.user;
      this.#options.log(`IMAP: ${this.#user} logged in`);
      return reply(`OK [CAPABILITY ${CAPABILITY}] LOGIN completed`);
    }
    switch (name) {
      case "LOGIN":
        return reply("BAD already logged in");
      case "SELECT":
      case "EXAMINE":
        needs(1);
        return this.#select(name, astring(args[0]), reply);
      case "LIST":
      case "LSUB":
        needs(2);
        return this.#list(name, astring(args[0]), astring(args[1]), reply);
      case "STATUS":
        return this.#status(args, reply);
      case "CLOSE":
      case "UNSELECT":
        needs(0);
        if (this.#view === null) return reply("BAD no mailbox selected");
        this.#view = null;
        return reply(`OK ${name} completed`);
      case "FETCH":
        return this.#fetch(args, false, reply);
      case "UID": {
        const sub = args[0]?.kind === "atom" ? args[0].text.toUpperCase() : "";
        if (sub !== "FETCH") return reply("BAD the demo server knows only UID FETCH");
        return this.#fetch(args.slice(1), true, reply);
      }
      default:
        reply(`BAD ${name.length > 32 ? "command" : name} is not supported by the demo server`);
    }
  }

  #select(name: string, mailbox: string | null, reply: (text: string) => void): void {
    this.#view = null;
    if (mailbox === null || mailbox.toUpperCase() !== "INBOX") return reply("NO the demo mailbox has only INBOX");
    const box = this.#options.mailbox;
    this.#view = [...box.messages];
    this.#readOnly = name === "EXAMINE";
    const unseen = this.#view.findIndex((m) => !m.flags.has("\\Seen"));
    this.#conn.write(
      [
        "* FLAGS (\\Seen)",
        `* ${this.#view.length} EXISTS`,
        "* 0 RECENT",
        ...(unseen >= 0 ? [`* OK [UNSEEN ${unseen + 1}] first unseen`] : []),
        `* OK [UIDVALIDITY ${box.uidValidity}] UIDs valid`,
        `* OK [UIDNEXT ${box.uidNext}] predicted next UID`,
        "* OK [PERMANENTFLAGS ()] no flags can be set by the client",
        "",
      ].join("\r\n"),
    );
    reply(`OK [${this.#readOnly ? "READ-ONLY" : "READ-WRITE"}] ${name} completed`);
  }

  #list(name: string, reference: string | null, pattern: string | null, reply: (text: string) => void): void {
    if (reference === null || pattern === null) throw new ImapSyntaxError(`${name} takes a reference and a pattern`);
    if (pattern === "") this.#conn.write(`* ${name} (\\Noselect) "/" ""\r\n`);
    else if (listMatches(reference + pattern, "INBOX")) this.#conn.write(`* ${name} (\\HasNoChildren) "/" INBOX\r\n`);
    reply(`OK ${name} completed`);
  }

  #status(args: Token[], reply: (text: string) => void): void {
    const mailbox = astring(args[0]);
    const items = args.slice(1);
    if (mailbox === null || items[0]?.kind !== "open" || items[items.length - 1]?.kind !== "close")
      throw new ImapSyntaxError("STATUS takes a mailbox and a list of items");
    if (mailbox.toUpperCase() !== "INBOX") return reply("NO the demo mailbox has only INBOX");
    const box = this.#options.mailbox;
    const values: Readonly<Record<string, number>> = {
      MESSAGES: box.messages.length,
      RECENT: 0,
      UIDNEXT: box.uidNext,
      UIDVALIDITY: box.uidValidity,
      UNSEEN: box.messages.filter((m) => !m.flags.has("\\Seen")).length,
    };
    const out = items.slice(1, -1).map((t) => {
      const item = t.kind === "atom" ? t.text.toUpperCase() : "";
      const value = values[item];
      if (value === undefined) throw new ImapSyntaxError("unknown STATUS item");
      return `${item} ${value}`;
    });
    this.#conn.write(`* STATUS INBOX (${out.join(" ")})\r\n`);
    reply("OK STATUS completed");
  }

  /** New deliveries since SELECT, as `* N EXISTS`. */
  #announceNew(): void {
    const view = this.#view;
    if (view === null) return;
    const last = view[view.length - 1]?.uid ?? 0;
    const fresh = this.#options.mailbox.messages.filter((m) => m.uid > last);
    if (fresh.length === 0) return;
    view.push(...fresh);
    this.#conn.write(`* ${view.length} EXISTS\r\n`);
  }

  #fetch(args: Token[], byUid: boolean, reply: (text: string) => void): void {
    const view = this.#view;
    if (view === null) return reply("BAD no mailbox selected");
    const setText = args[0]?.kind === "atom" ? args[0].text : "";
    const set = parseSequenceSet(setText);
    if (set === null) throw new ImapSyntaxError("bad sequence set");
    const items = parseFetchItems(args.slice(1));
    if (byUid && !items.some((i) => i.kind === "uid")) items.unshift({ kind: "uid" });
    if (!byUid && set.some(([a, b]) => a > view.length || b > view.length)) return reply("BAD message number out of range");
    const max = byUid ? (view[view.length - 1]?.uid ?? 0) : view.length;
    view.forEach((message, index) => {
      if (!inSequenceSet(set, byUid ? message.uid : index + 1, max)) return;
      this.#conn.write(Buffer.concat([Buffer.from(`* ${index + 1} FETCH (`, "latin1"), this.#fetchData(message, items), Buffer.from(")\r\n", "latin1")]));
    });
    reply(`OK ${byUid ? "UID FETCH" : "FETCH"} completed`);
  }

  #fetchData(message: DemoMessage, items: readonly FetchItem[]): Buffer {
    const parts: Buffer[] = [];
    let seenNow = false;
    for (const item of items) {
      switch (item.kind) {
        case "flags":
          break;
        case "uid":
          parts.push(Buffer.from(`UID ${message.uid}`, "latin1"));
          break;
        case "size":
          parts.push(Buffer.from(`RFC822.SIZE ${message.data.length}`, "latin1"));
          break;
        case "internaldate":
          parts.push(Buffer.from(`INTERNALDATE "${internalDate(message.received)}"`, "latin1"));
          break;
        case "body": {
          let data = section(message.data, item.section);
          if (item.partial) data = data.subarray(item.partial[0], item.partial[0] + item.partial[1]);
          parts.push(Buffer.concat([Buffer.from(`${item.name} {${data.length}}\r\n`, "latin1"), data]));
          if (!item.peek && !this.#readOnly && !message.flags.has("\\Seen")) {
            message.flags.add("\\Seen");
            seenNow = true;
          }
        }
      }
    }
    // FLAGS goes last, so it shows a \Seen this FETCH set (RFC 3501 6.4.5)
    if (items.some((i) => i.kind === "flags") || seenNow) parts.push(Buffer.from(`FLAGS (${[...message.flags].join(" ")})`, "latin1"));
    return Buffer.concat(parts.flatMap((p, i) => (i === 0 ? [p] : [Buffer.from(" "), p])));
  }
}

/** The header (with its blank line), the text, or the whole message. */
function section(data: Buffer, name: string): Buffer {
  if (name === "") return data;
  const blank = data.indexOf("\r\n\r\n");
  const split = blank < 0 ? data.length : blank + 4;
  return name === "HEADER" ? data.subarray(0, split) : data.subarray(split);
}

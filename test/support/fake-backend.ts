/**
 * Raw-`net` fake IMAP, POP3 and SMTP backends that answer nginx's proxy login
 * dialogue, record every byte, then act as small scriptable servers.
 */
import net from "node:net";

/** What one backend connection saw and did. */
export interface BackendConnection {
  /** Every byte received on this connection, in order. */
  received: Buffer;
  /** Every byte sent on this connection, in order. */
  sent: Buffer;
  /** Credentials the login dialogue carried (SMTP: from AUTH PLAIN or XCLIENT LOGIN). */
  login?: string;
  password?: string;
  /** True once the backend accepted a login. */
  loggedIn: boolean;
  /** Complete commands received (IMAP: with literal data inlined, CRLF removed). */
  commands: string[];
  /** SMTP: messages received with DATA (dot-stuffing undone, final `.` line excluded). */
  messages: Buffer[];
  /** Resolves when the connection has closed. */
  closed: Promise<void>;
}

/** Options shared by the three fakes. */
export interface FakeBackendOptions {
  /** Accept credentials (default true); a function decides per login/password. */
  accept?: boolean | ((login: string, password: string) => boolean);
  /** After login: `script` answers commands (default), `echo` sends every received byte back. */
  mode?: "script" | "echo";
  /** Greeting line without CRLF, replacing the default. */
  greeting?: string;
  /** Never send a greeting. */
  neverGreet?: boolean;
  /** Raw bytes sent instead of the greeting. */
  garbage?: string;
  /** Close the connection when the first login command arrives (IMAP LOGIN, POP3 USER, SMTP EHLO/HELO). */
  closeDuringLogin?: boolean;
  /** Wait this long before every reply. */
  delayMs?: number;
  /** Body returned by IMAP FETCH and POP3 RETR: a string, or a size (filled with a repeating pattern). */
  message?: string | number;
  /** IMAP: answer ID before login (`* ID NIL`, tagged OK); POP3: answer XCLIENT with +OK (else both are refused as unknown). */
  identity?: boolean;
  /** SMTP: reject RCPT TO with this reply line (without CRLF), e.g. `550 5.1.1 no such user`. */
  rcptReply?: string;
}

/** A running fake backend. */
export interface FakeBackend {
  protocol: "imap" | "pop3" | "smtp";
  port: number;
  /** Connections in accept order. */
  connections: BackendConnection[];
  /** Resolves when at least `count` connections have been accepted. */
  waitForConnections(count: number, timeoutMs?: number): Promise<BackendConnection[]>;
  /** Stops listening and destroys open connections. */
  close(): Promise<void>;
}

/**
 * Builds a message of exactly `size` bytes: a Subject header, numbered lines, and a
 * final line of `x` filling the rest; every line ends in CRLF (size < 28: one line of `x`).
 */
export function makeMessage(size: number): string {
  if (size < 2) return "x".repeat(size);
  let body = "Subject: fake message\r\n\r\n";
  if (size < body.length + 2) return "x".repeat(size - 2) + "\r\n";
  for (let n = 0; ; n++) {
    const line = `line ${n} abcdefghijklmnopqrstuvwxyz0123456789\r\n`;
    const rest = size - body.length - line.length;
    if (rest !== 0 && rest < 2) break;
    body += line;
    if (rest === 0) return body;
  }
  return body + "x".repeat(size - body.length - 2) + "\r\n";
}

interface Driver {
  /** Handles one complete unit of input (a line, or an assembled command). */
  onLine(line: string): void;
}

/** Per-connection plumbing shared by the three protocols. */
class Session {
  readonly conn: BackendConnection;
  readonly socket: net.Socket;
  readonly options: FakeBackendOptions;
  #buffer = "";
  #queue: Promise<void> = Promise.resolve();
  /**
   * When set, pump() hands the buffer to this consumer instead of splitting lines
   * (IMAP literals, SMTP DATA, echo mode). It returns true when it is finished.
   */
  consumer: (() => boolean) | undefined;
  driver: Driver | undefined;

  constructor(socket: net.Socket, options: FakeBackendOptions, conn: BackendConnection) {
    this.socket = socket;
    this.options = options;
    this.conn = conn;
  }

  /** Queues a reply (after the optional delay), keeping replies in order. */
  send(text: string, then?: () => void): void {
    this.#queue = this.#queue.then(async () => {
      if (this.options.delayMs) await new Promise((r) => setTimeout(r, this.options.delayMs));
      if (this.socket.destroyed) return;
      const bytes = Buffer.from(text, "latin1");
      this.conn.sent = Buffer.concat([this.conn.sent, bytes]);
      this.socket.write(text, "latin1");
      then?.();
    });
  }

  /** Closes after everything queued has been written. */
  close(): void {
    this.send("", () => this.socket.end());
  }

  feed(data: string): void {
    this.#buffer += data;
    this.pump();
  }

  /** Takes the first `n` buffered bytes (used for literals and DATA). */
  take(n: number): string {
    const s = this.#buffer.slice(0, n);
    this.#buffer = this.#buffer.slice(n);
    return s;
  }

  get buffered(): string {
    return this.#buffer;
  }

  pump(): void {
    for (;;) {
      if (this.consumer) {
        if (!this.consumer()) return;
        this.consumer = undefined;
        continue;
      }
      const lf = this.#buffer.indexOf("\n");
      if (lf < 0) return;
      const line = this.take(lf + 1);
      this.driver?.onLine(line);
    }
  }
}

function accepts(options: FakeBackendOptions, login: string, password: string): boolean {
  const a = options.accept ?? true;
  return typeof a === "function" ? a(login, password) : a;
}

function messageText(options: FakeBackendOptions): string {
  const m = options.message ?? "Subject: test\r\n\r\nhello\r\n";
  return typeof m === "number" ? makeMessage(m) : m;
}

/** A line without its line ending. */
function chomp(line: string): string {
  return line.replace(/\r?\n$/, "");
}

/** Switches a session to echo mode: every later byte is sent straight back. */
function startEcho(s: Session): void {
  s.consumer = (): boolean => {
    if (s.buffered.length > 0) s.send(s.take(s.buffered.length));
    return false;
  };
}

/** Splits an assembled IMAP command into tag, name and arguments (atoms, quoted strings, literals). */
function parseImap(text: string): { tag: string; name: string; args: string[] } {
  const args: string[] = [];
  let i = 0;
  while (i < text.length) {
    if (text[i] === " ") {
      i++;
      continue;
    }
    if (text[i] === '"') {
      let v = "";
      i++;
      while (i < text.length && text[i] !== '"') {
        if (text[i] === "\\") i++;
        v += text[i++];
      }
      i++;
      args.push(v);
    } else if (text[i] === "\u0000") {
      // Literal marker inserted by the assembler: NUL + length + NUL + data.
      // A NUL sent by the client itself (fuzzing relays anything) is not a
      // marker: without a well-formed one, read it as an atom character.
      const end = text.indexOf("\u0000", i + 1);
      const len = end < 0 ? NaN : Number(text.slice(i + 1, end));
      if (!Number.isSafeInteger(len) || len < 0) {
        let v = "";
        while (i < text.length && text[i] !== " ") v += text[i++];
        args.push(v);
        continue;
      }
      args.push(text.slice(end + 1, end + 1 + len));
      i = end + 1 + len;
    } else {
      let v = "";
      while (i < text.length && text[i] !== " ") v += text[i++];
      args.push(v);
    }
  }
  const [tag = "", name = "", ...rest] = args;
  return { tag, name: name.toUpperCase(), args: rest };
}

function imapDriver(s: Session): Driver {
  const o = s.options;
  let assembled = "";
  let idleTag: string | undefined;

  const complete = (text: string): void => {
    // The printable form (literal markers replaced) is what `commands` records.
    s.conn.commands.push(text.replace(/\u0000(\d+)\u0000/g, "{$1}"));
    if (idleTag !== undefined) {
      if (text.toUpperCase() === "DONE") s.send(`${idleTag} OK IDLE terminated\r\n`);
      idleTag = undefined;
      return;
    }
    const { tag, name, args } = parseImap(text);
    if (!s.conn.loggedIn) {
      switch (name) {
        case "CAPABILITY":
          s.send(`* CAPABILITY IMAP4rev1 LITERAL+\r\n${tag} OK CAPABILITY completed\r\n`);
          return;
        case "LOGOUT":
          s.send(`* BYE fake imap\r\n${tag} OK LOGOUT completed\r\n`);
          s.close();
          return;
        case "ID":
          s.send(o.identity ? `* ID NIL\r\n${tag} OK ID completed\r\n` : `${tag || "*"} BAD not logged in\r\n`);
          return;
        case "LOGIN": {
          const [login = "", password = ""] = args;
          s.conn.login = login;
          s.conn.password = password;
          if (accepts(o, login, password)) {
            s.conn.loggedIn = true;
            s.send(`${tag} OK LOGIN completed\r\n`);
            if (o.mode === "echo") startEcho(s);
          } else {
            s.send(`${tag} NO [AUTHENTICATIONFAILED] invalid credentials\r\n`);
          }
          return;
        }
        default:
          s.send(`${tag || "*"} BAD not logged in\r\n`);
          return;
      }
    }
    switch (name) {
      case "FETCH":
      case "UID": {
        const m = messageText(o);
        s.send(`* 1 FETCH (BODY[] {${Buffer.byteLength(m, "latin1")}}\r\n${m})\r\n${tag} OK FETCH completed\r\n`);
        return;
      }
      case "IDLE":
        idleTag = tag;
        s.send("+ idling\r\n");
        s.send("* 1 EXISTS\r\n");
        return;
      case "LOGOUT":
        s.send(`* BYE fake imap\r\n${tag} OK LOGOUT completed\r\n`);
        s.close();
        return;
      case "SELECT":
      case "EXAMINE":
        s.send(`* 1 EXISTS\r\n${tag} OK [READ-WRITE] ${name} completed\r\n`);
        return;
      default:
        s.send(`${tag} OK ${name} completed\r\n`);
    }
  };

  const readLiteral = (n: number): void => {
    s.consumer = (): boolean => {
      if (s.buffered.length < n) return false;
      assembled += `\u0000${n}\u0000${s.take(n)}`;
      return true;
    };
  };

  return {
    onLine(line: string): void {
      const body = chomp(line);
      const lit = /\{(\d+)(\+?)\}$/.exec(body);
      if (!s.conn.loggedIn && assembled === "" && o.closeDuringLogin && / LOGIN /i.test(body + " ")) {
        s.socket.destroy();
        return;
      }
      if (lit) {
        assembled += body.slice(0, lit.index);
        if (lit[2] !== "+") s.send("+ go ahead\r\n");
        readLiteral(Number(lit[1]));
        return;
      }
      const text = assembled + body;
      assembled = "";
      complete(text);
    },
  };
}

function pop3Driver(s: Session): Driver {
  const o = s.options;
  let user: string | undefined;
  return {
    onLine(line: string): void {
      const text = chomp(line);
      s.conn.commands.push(text);
      const sp = text.indexOf(" ");
      const name = (sp < 0 ? text : text.slice(0, sp)).toUpperCase();
      const arg = sp < 0 ? "" : text.slice(sp + 1);
      if (!s.conn.loggedIn) {
        if (name === "USER" && o.closeDuringLogin) {
          s.socket.destroy();
          return;
        }
        switch (name) {
          case "CAPA":
            s.send("+OK\r\nUSER\r\n.\r\n");
            return;
          case "XCLIENT":
            s.send(o.identity ? "+OK Updated\r\n" : "-ERR not logged in\r\n");
            return;
          case "USER":
            user = arg;
            s.send("+OK user\r\n");
            return;
          case "PASS":
            if (user === undefined) {
              s.send("-ERR USER first\r\n");
              return;
            }
            s.conn.login = user;
            s.conn.password = arg;
            if (accepts(o, user, arg)) {
              s.conn.loggedIn = true;
              s.send("+OK logged in\r\n");
              if (o.mode === "echo") startEcho(s);
            } else {
              s.send("-ERR [AUTH] invalid credentials\r\n");
            }
            return;
          case "QUIT":
            s.send("+OK bye\r\n");
            s.close();
            return;
          default:
            s.send("-ERR not logged in\r\n");
            return;
        }
      }
      const m = messageText(o);
      const size = Buffer.byteLength(m, "latin1");
      switch (name) {
        case "STAT":
          s.send(`+OK 1 ${size}\r\n`);
          return;
        case "LIST":
          s.send(`+OK 1 messages\r\n1 ${size}\r\n.\r\n`);
          return;
        case "RETR": {
          const stuffed = m.replace(/^\./gm, "..");
          s.send(`+OK ${size} octets\r\n${stuffed}${stuffed.endsWith("\r\n") ? "" : "\r\n"}.\r\n`);
          return;
        }
        case "NOOP":
          s.send("+OK\r\n");
          return;
        case "QUIT":
          s.send("+OK bye\r\n");
          s.close();
          return;
        default:
          s.send("-ERR unknown command\r\n");
      }
    },
  };
}

function smtpDriver(s: Session): Driver {
  const o = s.options;
  /** DATA: everything up to CRLF.CRLF (the CRLF ending the DATA line counts as the first CRLF). */
  const collectData = (): void => {
    s.consumer = (): boolean => {
      const text = "\r\n" + s.buffered;
      const end = text.indexOf("\r\n.\r\n");
      if (end < 0) return false;
      const body = text.slice(2, end + 2).replace(/^\.\./gm, ".");
      s.take(end + 3);
      s.conn.messages.push(Buffer.from(body, "latin1"));
      s.send("250 2.0.0 Ok: queued\r\n");
      return true;
    };
  };
  return {
    onLine(line: string): void {
      const text = chomp(line);
      s.conn.commands.push(text);
      const name = text.split(" ", 1)[0]!.toUpperCase();
      const arg = text.slice(name.length + 1);
      switch (name) {
        case "EHLO":
          if (o.closeDuringLogin) {
            s.socket.destroy();
            return;
          }
          s.send("250-fake.smtp\r\n250-XCLIENT ADDR LOGIN NAME HELO\r\n250-AUTH PLAIN LOGIN\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
          return;
        case "HELO":
          if (o.closeDuringLogin) {
            s.socket.destroy();
            return;
          }
          s.send("250 fake.smtp\r\n");
          return;
        case "XCLIENT": {
          const login = /(?:^| )LOGIN=(\S*)/.exec(arg)?.[1];
          if (login !== undefined) s.conn.login = login;
          s.send("220 fake.smtp ESMTP\r\n");
          return;
        }
        case "AUTH": {
          const [mech = "", b64 = ""] = arg.split(" ");
          if (mech.toUpperCase() !== "PLAIN" || b64 === "") {
            s.send("504 5.5.4 only AUTH PLAIN with initial response\r\n");
            return;
          }
          const parts = Buffer.from(b64, "base64").toString("latin1").split("\u0000");
          const login = parts[1] ?? "";
          const password = parts[2] ?? "";
          s.conn.login = login;
          s.conn.password = password;
          if (accepts(o, login, password)) {
            s.conn.loggedIn = true;
            s.send("235 2.7.0 Authentication successful\r\n");
            if (o.mode === "echo") startEcho(s);
          } else {
            s.send("535 5.7.8 Authentication failed\r\n");
          }
          return;
        }
        case "MAIL":
          s.send("250 2.1.0 Ok\r\n");
          return;
        case "RCPT":
          s.send(`${o.rcptReply ?? "250 2.1.5 Ok"}\r\n`);
          return;
        case "DATA":
          s.send("354 End data with <CR><LF>.<CR><LF>\r\n");
          collectData();
          return;
        case "RSET":
        case "NOOP":
          s.send("250 2.0.0 Ok\r\n");
          return;
        case "QUIT":
          s.send("221 2.0.0 Bye\r\n");
          s.close();
          return;
        default:
          if (o.mode === "echo") s.send(line);
          else s.send("502 5.5.2 Error: command not recognized\r\n");
      }
    },
  };
}

async function startFake(
  protocol: FakeBackend["protocol"],
  defaultGreeting: string,
  makeDriver: (s: Session) => Driver,
  options: FakeBackendOptions,
): Promise<FakeBackend> {
  const connections: BackendConnection[] = [];
  const sockets = new Set<net.Socket>();
  const waiters: Array<() => void> = [];
  const server = net.createServer((socket) => {
    sockets.add(socket);
    let done!: () => void;
    const conn: BackendConnection = {
      received: Buffer.alloc(0),
      sent: Buffer.alloc(0),
      loggedIn: false,
      commands: [],
      messages: [],
      closed: new Promise<void>((resolve) => {
        done = resolve;
      }),
    };
    socket.on("close", () => {
      sockets.delete(socket);
      done();
    });
    socket.on("error", () => {
      /* peers may reset; the record is what matters */
    });
    connections.push(conn);
    for (const w of waiters.splice(0)) w();
    const session = new Session(socket, options, conn);
    session.driver = makeDriver(session);
    socket.on("data", (chunk: Buffer) => {
      conn.received = Buffer.concat([conn.received, chunk]);
      session.feed(chunk.toString("latin1"));
    });
    if (options.garbage !== undefined) session.send(options.garbage);
    else if (!options.neverGreet) session.send(`${options.greeting ?? defaultGreeting}\r\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  return {
    protocol,
    port: (server.address() as net.AddressInfo).port,
    connections,
    async waitForConnections(count: number, timeoutMs = 5000): Promise<BackendConnection[]> {
      const deadline = Date.now() + timeoutMs;
      while (connections.length < count) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`fake ${protocol}: expected ${count} connection(s), got ${connections.length} within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
      return connections;
    },
    close(): Promise<void> {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Starts a fake IMAP backend (greeting `* OK fake imap ready`). */
export function startFakeImap(options: FakeBackendOptions = {}): Promise<FakeBackend> {
  return startFake("imap", "* OK fake imap ready", imapDriver, options);
}

/** Starts a fake POP3 backend (greeting `+OK fake pop3`). */
export function startFakePop3(options: FakeBackendOptions = {}): Promise<FakeBackend> {
  return startFake("pop3", "+OK fake pop3", pop3Driver, options);
}

/** Starts a fake SMTP backend (greeting `220 fake.smtp ESMTP`). */
export function startFakeSmtp(options: FakeBackendOptions = {}): Promise<FakeBackend> {
  return startFake("smtp", "220 fake.smtp ESMTP", smtpDriver, options);
}

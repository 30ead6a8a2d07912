/**
 * Steady IMAP load through the cluster's HAProxy (cluster.ts): clients
 * connect from CLIENT_IP, log in with their own login (so the auth
 * service's log says which node served each one), and either run a short
 * session (LOGIN, NOOP, LOGOUT) again and again or stay logged in (held
 * sessions, as IMAP IDLE clients do) and answer NOOP when asked.
 */
import net from "node:net";
import tls from "node:tls";
import { CLIENT_IP, PASSWORD } from "./cluster.js";

/** A line-based IMAP client connection from CLIENT_IP. */
export class ImapConn {
  #buf = "";
  #wake: (() => void) | undefined;
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on("data", (d: Buffer) => {
      this.#buf += d.toString("latin1");
      this.#wake?.();
    });
    socket.on("close", () => {
      this.closed = true;
      this.#wake?.();
    });
    socket.on("error", () => {});
  }

  /** Connects from `from` (default CLIENT_IP), over TLS with `tls` (offering `session`). */
  static connect(port: number, o: { tls?: boolean; session?: Buffer; from?: string } = {}): Promise<ImapConn> {
    const localAddress = o.from ?? CLIENT_IP;
    return new Promise((resolve, reject) => {
      const s = o.tls
        ? // tls.connect passes net.connect's options on (localAddress included); its type does not list them
          tls.connect({
            port,
            host: "127.0.0.1",
            localAddress,
            rejectUnauthorized: false,
            session: o.session,
            servername: "localhost",
          } as tls.ConnectionOptions)
        : net.connect({ port, host: "127.0.0.1", localAddress });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error("connect timed out"));
      }, 10_000);
      s.once(o.tls ? "secureConnect" : "connect", () => {
        clearTimeout(timer);
        resolve(new ImapConn(s));
      });
      s.once("error", (e: Error) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  /** The next line without CRLF; rejects on close or after `ms`. */
  async line(ms = 10_000): Promise<string> {
    const end = Date.now() + ms;
    for (;;) {
      const i = this.#buf.indexOf("\r\n");
      if (i >= 0) {
        const l = this.#buf.slice(0, i);
        this.#buf = this.#buf.slice(i + 2);
        return l;
      }
      if (this.closed) throw new Error("connection closed");
      if (Date.now() > end) throw new Error("timed out reading a line");
      await new Promise<void>((r) => {
        this.#wake = r;
        setTimeout(r, 100);
      });
    }
  }

  /** Sends a tagged command and returns its tagged reply line. */
  async command(tag: string, text: string, ms?: number): Promise<string> {
    this.socket.write(`${tag} ${text}\r\n`);
    for (;;) {
      const l = await this.line(ms);
      if (l.startsWith(`${tag} `)) return l;
    }
  }

  /** Greeting, then LOGIN as `user`; throws unless both are OK. */
  async login(user: string): Promise<void> {
    const greeting = await this.line();
    if (!greeting.startsWith("* OK")) throw new Error(`greeting: ${greeting}`);
    const r = await this.command("l", `LOGIN ${user} ${PASSWORD}`);
    if (!r.startsWith("l OK")) throw new Error(`login: ${r}`);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** One short session: connect, greeting, LOGIN, NOOP, LOGOUT. Resolves with undefined, or the failure. */
export async function shortSession(port: number, user: string, o: { tls?: boolean } = {}): Promise<string | undefined> {
  let c: ImapConn | undefined;
  try {
    c = await ImapConn.connect(port, o);
    await c.login(user);
    const noop = await c.command("n", "NOOP");
    if (!noop.startsWith("n OK")) return `NOOP: ${noop}`;
    const out = await c.command("o", "LOGOUT");
    if (!out.startsWith("o OK")) return `LOGOUT: ${out}`;
    return undefined;
  } catch (err) {
    return (err as Error).message;
  } finally {
    c?.close();
  }
}

/** Short sessions in `concurrency` parallel loops until stop(). */
export class Load {
  ok = 0;
  /** Failed sessions: the login used, what went wrong, and when (Date.now() at the failure). */
  readonly failures: Array<{ user: string; error: string; at: number }> = [];
  #running = true;
  readonly #loops: Promise<void>[] = [];
  #n = 0;

  constructor(port: number, concurrency: number, prefix = "load", o: { tls?: boolean; pauseMs?: number } = {}) {
    for (let i = 0; i < concurrency; i++)
      this.#loops.push(
        (async () => {
          while (this.#running) {
            const user = `${prefix}${this.#n++}`;
            const error = await shortSession(port, user, o);
            if (error === undefined) this.ok++;
            else this.failures.push({ user, error, at: Date.now() });
            if (o.pauseMs) await new Promise((r) => setTimeout(r, o.pauseMs));
          }
        })(),
      );
  }

  /** Waits until at least `n` more sessions succeeded (the load is flowing). */
  async flowing(n = 10, ms = 20_000): Promise<void> {
    const target = this.ok + n;
    const end = Date.now() + ms;
    while (this.ok < target) {
      if (Date.now() > end) throw new Error(`load not flowing: ${this.ok} ok, failures ${JSON.stringify(this.failures.slice(0, 5))}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(): Promise<{ ok: number; failures: Array<{ user: string; error: string; at: number }> }> {
    this.#running = false;
    await Promise.all(this.#loops);
    return { ok: this.ok, failures: this.failures };
  }
}

/** `count` logged-in sessions held open (login `${prefix}N`). */
export async function holdSessions(port: number, count: number, prefix: string, from?: string): Promise<Map<string, ImapConn>> {
  const held = new Map<string, ImapConn>();
  for (let i = 0; i < count; i++) {
    const user = `${prefix}${i}`;
    const c = await ImapConn.connect(port, { from });
    await c.login(user);
    held.set(user, c);
  }
  return held;
}

/** Asks every held session for a NOOP: which still answer OK and which are gone. */
export async function probeHeld(held: Map<string, ImapConn>): Promise<{ alive: string[]; dead: string[] }> {
  const alive: string[] = [];
  const dead: string[] = [];
  await Promise.all(
    [...held].map(async ([user, c]) => {
      try {
        const r = await c.command("p", "NOOP", 5000);
        (r.startsWith("p OK") ? alive : dead).push(user);
      } catch {
        dead.push(user);
      }
    }),
  );
  return { alive: alive.sort(), dead: dead.sort() };
}

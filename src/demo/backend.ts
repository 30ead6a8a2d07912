/**
 * The demo mail backend (main.ts is its program): a separate program that `npm start`
 * (scripts/start.js) runs beside Postern so a first run shows mail flowing.
 * One in-memory mailbox for the demo user, holding a welcome message,
 * served over IMAP and POP3, and an SMTP receiver that delivers into it.
 * It is not part of the `postern` command and not a mail server: no TLS
 * (it listens on 127.0.0.1 behind Postern), no storage, one user. It trusts
 * that Postern's auth service checked the password: any non-empty password
 * opens the demo mailbox.
 */
import { type Server, type Socket, createServer, isIP } from "node:net";
import { serveImap } from "./imap.js";
import { type DemoLog, consoleLog } from "./log.js";
import { DemoMailbox, welcomeMessage } from "./mailbox.js";
import { servePop3 } from "./pop3.js";
import { serveSmtp } from "./smtp.js";

const USAGE = "usage: node dist/src/demo/main.js [--imap ADDR:PORT] [--pop3 ADDR:PORT] [--smtp ADDR:PORT] [--user LOGIN]";
/** Connections per protocol at once: a demo needs few, a flood gets refused. */
const MAX_CONNECTIONS = 32;

export interface DemoOptions {
  readonly imap: Listen;
  readonly pop3: Listen;
  readonly smtp: Listen;
  readonly user: string;
}

export interface Listen {
  readonly host: string;
  readonly port: number;
}

/** The defaults are what scripts/start.js writes into conf/users for the demo user. */
export const DEMO_DEFAULTS: DemoOptions = {
  imap: { host: "127.0.0.1", port: 10143 },
  pop3: { host: "127.0.0.1", port: 10110 },
  smtp: { host: "127.0.0.1", port: 10025 },
  user: "demo@localhost",
};

function parseListen(text: string): Listen | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):([0-9]{1,5})$/.exec(text);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  return host !== undefined && isIP(host) !== 0 && port >= 0 && port <= 65535 ? { host, port } : null;
}

/** The options from argv, or a message for stderr. */
export function parseDemoArgs(argv: readonly string[]): DemoOptions | string {
  const options: { -readonly [K in keyof DemoOptions]: DemoOptions[K] } = { ...DEMO_DEFAULTS };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i]!;
    const value = argv[i + 1];
    if (value === undefined) return USAGE;
    if (name === "--user") {
      if (!/^[\x21-\x7e]{1,255}$/.test(value)) return `bad --user "${value}"`;
      options.user = value;
    } else if (name === "--imap" || name === "--pop3" || name === "--smtp") {
      const listen = parseListen(value);
      if (!listen) return `bad ${name} "${value}" (expected ADDR:PORT with a numeric address)`;
      options[name.slice(2) as "imap" | "pop3" | "smtp"] = listen;
    } else {
      return USAGE;
    }
  }
  return options;
}

/** A running demo backend. */
export interface DemoBackend {
  readonly mailbox: DemoMailbox;
  /** The bound ports (0 in the options picks a free one). */
  readonly ports: { readonly imap: number; readonly pop3: number; readonly smtp: number };
  close(): Promise<void>;
}

function listen(serve: (socket: Socket) => void, at: Listen, log: DemoLog): Promise<Server> {
  const server = createServer(serve);
  server.maxConnections = MAX_CONNECTIONS;
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(at.port, at.host, () => {
      server.off("error", reject);
      // an accept that fails (out of descriptors) is logged, not thrown
      server.on("error", (e) => log(`accept failed: ${e.message}`));
      resolve(server);
    });
  });
}

/** Starts the three servers on one mailbox holding the welcome message. */
export async function startDemoBackend(options: DemoOptions, log: DemoLog = consoleLog): Promise<DemoBackend> {
  const mailbox = new DemoMailbox();
  mailbox.deliver(welcomeMessage(options.user));
  const shared = { mailbox, user: options.user, log };
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  const track =
    (serve: (s: Socket, o: typeof shared) => void) =>
    (socket: Socket): void => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      serve(socket, shared);
    };
  try {
    servers.push(await listen(track(serveImap), options.imap, log));
    servers.push(await listen(track(servePop3), options.pop3, log));
    servers.push(await listen(track(serveSmtp), options.smtp, log));
  } catch (e) {
    for (const s of servers) s.close();
    throw e;
  }
  const port = (s: Server): number => {
    const a = s.address();
    return typeof a === "object" && a !== null ? a.port : 0;
  };
  return {
    mailbox,
    ports: { imap: port(servers[0]!), pop3: port(servers[1]!), smtp: port(servers[2]!) },
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
    },
  };
}

/**
 * A scripted IMAP/POP3 backend speaking TLS the ways the backend-TLS tests
 * need, well-behaved or hostile: implicit TLS, STARTTLS/STLS, a reply with
 * bytes after the STARTTLS reply, capabilities without STARTTLS, a
 * listener that never answers the handshake. It counts handshakes, resumed
 * sessions and the SNI names received, and records the logins.
 */
import net from "node:net";
import tls from "node:tls";

/** How the backend behaves. */
export interface TlsBackendOptions {
  protocol: "imap" | "pop3";
  /** implicit TLS, STARTTLS in the dialogue, or a TCP listener that never speaks. */
  mode: "implicit" | "starttls" | "silent";
  cert?: string;
  key?: string;
  /** Limits the backend's TLS versions (a protocol mismatch). */
  maxVersion?: tls.SecureVersion;
  /** Leave STARTTLS/STLS out of the capabilities. */
  dropStarttls?: boolean;
  /** Bytes sent right after the positive STARTTLS reply, in the same write. */
  inject?: string;
}

/** A running backend. */
export interface TlsBackend {
  port: number;
  handshakes: number;
  resumed: number;
  /** The SNI name of each handshake (false: none sent). */
  servernames: Array<string | false>;
  /** Login names that reached the login, and whether the session was TLS then. */
  logins: Array<{ login: string; secure: boolean }>;
  close(): Promise<void>;
}

/** Starts the backend on 127.0.0.1 with an ephemeral port. */
export async function startTlsBackend(options: TlsBackendOptions): Promise<TlsBackend> {
  const context = options.cert ? tls.createSecureContext({ cert: options.cert, key: options.key, maxVersion: options.maxVersion }) : undefined;
  const sockets = new Set<net.Socket>();
  const state: TlsBackend = {
    port: 0,
    handshakes: 0,
    resumed: 0,
    servernames: [],
    logins: [],
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const secure = (raw: net.Socket, onReady: (s: tls.TLSSocket) => void): void => {
    // one context for every connection: its ticket key lets a session resume on a new connection
    const s = new tls.TLSSocket(raw, { isServer: true, secureContext: context! });
    s.on("error", () => s.destroy());
    s.once("secure", () => {
      state.handshakes++;
      if (s.isSessionReused()) state.resumed++;
      state.servernames.push((s as unknown as { servername: string | false }).servername ?? false);
      onReady(s);
    });
  };
  const server = net.createServer((raw) => {
    sockets.add(raw);
    raw.on("close", () => sockets.delete(raw));
    raw.on("error", () => raw.destroy());
    if (options.mode === "silent") return;
    if (options.mode === "implicit") secure(raw, (s) => dialogue(s, true));
    else dialogue(raw, false);
  });
  const dialogue = (socket: net.Socket, isTls: boolean): void => {
    const imap = options.protocol === "imap";
    socket.write(imap ? "* OK ready\r\n" : "+OK ready\r\n");
    let pending = "";
    let loginStage = 0;
    let tag = "";
    let login = "";
    const onData = (chunk: Buffer): void => {
      pending += chunk.toString("latin1");
      let i: number;
      while ((i = pending.indexOf("\r\n")) >= 0) {
        const line = pending.slice(0, i);
        pending = pending.slice(i + 2);
        if (handle(line) === "upgraded") return;
      }
    };
    const capabilities = (): string => {
      const starttls = !isTls && !options.dropStarttls;
      return imap ? `* CAPABILITY IMAP4rev1${starttls ? " STARTTLS" : ""} LITERAL+\r\n` : `+OK\r\nUSER\r\n${starttls ? "STLS\r\n" : ""}.\r\n`;
    };
    const handle = (line: string): "upgraded" | undefined => {
      if (imap && loginStage === 1) {
        login = line.replace(/ \{\d+\}$/, "");
        loginStage = 2;
        socket.write("+ go on\r\n");
        return;
      }
      if (imap && loginStage === 2) {
        loginStage = 0;
        state.logins.push({ login, secure: isTls });
        socket.write(`${tag} OK [CAPABILITY IMAP4rev1] Logged in${isTls ? " over TLS" : ""}\r\n`);
        return;
      }
      const [first = "", second = "", ...rest] = line.split(" ");
      const verb = (imap ? second : first).toUpperCase();
      if (imap) tag = first;
      switch (verb) {
        case "CAPABILITY":
          socket.write(`${capabilities()}${tag} OK done\r\n`);
          return;
        case "CAPA":
          socket.write(capabilities());
          return;
        case "STARTTLS":
        case "STLS": {
          socket.write(`${imap ? `${tag} OK Begin TLS` : "+OK Begin TLS"}\r\n${options.inject ?? ""}`);
          socket.off("data", onData);
          secure(socket, (s) => dialogueAfterTls(s));
          return "upgraded";
        }
        case "LOGIN":
          loginStage = 1;
          socket.write("+ go on\r\n");
          return;
        case "USER":
          login = second;
          socket.write("+OK\r\n");
          return;
        case "PASS":
          state.logins.push({ login, secure: isTls });
          socket.write(`+OK Logged in${isTls ? " over TLS" : ""}\r\n`);
          return;
        case "NOOP":
          socket.write(imap ? `${tag} OK NOOP${isTls ? " over TLS" : ""}\r\n` : "+OK\r\n");
          return;
        case "LOGOUT":
        case "QUIT":
          socket.end(imap ? `* BYE\r\n${tag} OK bye\r\n` : "+OK bye\r\n");
          return;
        default:
          void rest;
          socket.write(imap ? `${tag} BAD unknown\r\n` : "-ERR unknown\r\n");
      }
    };
    // after STARTTLS the greeting is not repeated: the dialogue goes on over TLS
    const dialogueAfterTls = (s: tls.TLSSocket): void => {
      isTls = true;
      socket = s;
      s.on("data", onData);
    };
    socket.on("data", onData);
  };
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  state.port = (server.address() as net.AddressInfo).port;
  return state;
}

/** A fake auth_http server on a raw `net` server, so the exact request bytes are captured. */
import net from "node:net";
import tls from "node:tls";

/** One auth_http request as received. */
export interface AuthRequest {
  /** The raw header block, request line to the blank line included. */
  raw: string;
  /** Request line, e.g. `GET /auth HTTP/1.0`. */
  requestLine: string;
  /** Header lines in order, duplicates kept, split at the first `:` with the value's leading spaces removed. */
  headers: Array<[string, string]>;
  /** The first value of a header (name case-insensitive), or undefined. */
  header(name: string): string | undefined;
  /** 0-based index of the request since the server started. */
  index: number;
}

/** A structured reply; the status line and headers are written with CRLF. */
export interface AuthReplySpec {
  headers: Array<[string, string]>;
  /** Status line, default `HTTP/1.0 200 OK`; an empty string omits it. */
  status?: string;
  /** Wait this long before answering. */
  delayMs?: number;
  /** `beforeReply`: close without answering; `afterHeaders`: send the headers but not the blank line, then close. */
  close?: "beforeReply" | "afterHeaders";
  /** Extra raw bytes written after the header lines and before the blank line (e.g. an invalid header). */
  garbage?: string;
  /** Keep-alive mode: raw bytes written after the blank line (a body, framing errors); no Content-Length is added then. */
  body?: string;
}

/** How the fake treats connections. */
export interface FakeAuthOptions {
  /**
   * HTTP/1.1 keep-alive: several requests per connection, structured replies
   * sent as `HTTP/1.1 200 OK` with `Content-Length: 0` (unless `body` is given)
   * and the connection left open; raw string replies are written as they are.
   */
  keepAlive?: boolean;
  /** Keep-alive mode: close a connection idle for this long after a reply. */
  idleCloseMs?: number;
  /** Serve HTTPS with these options (certificate, client certificate request). */
  tls?: tls.TlsOptions;
}

/** A reply: raw bytes written as is (then the connection is closed), or a structured reply. */
export type AuthReply = string | AuthReplySpec;

/** Computes the reply for one request. */
export type AuthHandler = (request: AuthRequest) => AuthReply | Promise<AuthReply>;

/** A running fake auth server. */
export interface FakeAuth {
  port: number;
  /** `127.0.0.1:PORT/auth`, ready for the auth_http directive. */
  url: string;
  /** Raw header blocks in arrival order. */
  requests: string[];
  /** Parsed view of `requests`. */
  parsed: AuthRequest[];
  /** Connections accepted so far. */
  readonly connections: number;
  /** For each request (same index as `parsed`), the number of the connection it came on (0-based). */
  connectionOf: number[];
  /** Replaces the reply function for later requests. */
  setHandler(handler: AuthHandler): void;
  /** Resolves when at least `count` requests have arrived (rejects after `timeoutMs`). */
  waitForRequests(count: number, timeoutMs?: number): Promise<AuthRequest[]>;
  /** Stops listening and destroys open connections. */
  close(): Promise<void>;
}

/** A handler that accepts every login and points to 127.0.0.1:`backendPort`; `extra` headers are appended. */
export function okTo(backendPort: number, extra: Array<[string, string]> = []): AuthHandler {
  return () => ({
    headers: [["Auth-Status", "OK"], ["Auth-Server", "127.0.0.1"], ["Auth-Port", String(backendPort)], ...extra],
  });
}

/** A handler that refuses every login with `message`, with `Auth-Wait: wait` if given. */
export function refuse(message: string, wait?: number): AuthHandler {
  return () => ({
    headers: [["Auth-Status", message], ...(wait === undefined ? [] : [["Auth-Wait", String(wait)] as [string, string]])],
  });
}

/** Parses a raw header block into an AuthRequest. */
export function parseAuthRequest(raw: string, index: number): AuthRequest {
  const lines = raw.split(/\r?\n/);
  const requestLine = lines.shift() ?? "";
  const headers: Array<[string, string]> = [];
  for (const line of lines) {
    if (line === "") continue;
    const colon = line.indexOf(":");
    if (colon < 0) headers.push([line, ""]);
    else headers.push([line.slice(0, colon), line.slice(colon + 1).replace(/^ +/, "")]);
  }
  const header = (name: string): string | undefined => headers.find(([k]) => k.toLowerCase() === name.toLowerCase())?.[1];
  return { raw, requestLine, headers, header, index };
}

/** Serialises a structured reply up to (not including) the terminating blank line. */
function renderHead(spec: AuthReplySpec): string {
  const status = spec.status ?? "HTTP/1.0 200 OK";
  let text = status === "" ? "" : `${status}\r\n`;
  for (const [k, v] of spec.headers) text += `${k}: ${v}\r\n`;
  return text + (spec.garbage ?? "");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Starts a fake auth_http server on 127.0.0.1 (port 0 = ephemeral). */
export async function startFakeAuth(handler: AuthHandler, port = 0, options: FakeAuthOptions = {}): Promise<FakeAuth> {
  let current = handler;
  const requests: string[] = [];
  const parsed: AuthRequest[] = [];
  const connectionOf: number[] = [];
  const sockets = new Set<net.Socket>();
  const waiters: Array<() => void> = [];
  let connections = 0;

  const onConnection = (socket: net.Socket): void => {
    const connection = connections++;
    sockets.add(socket);
    if (options.keepAlive) {
      serveKeepAlive(socket, connection);
      return;
    }
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {
      /* the proxy may reset the connection: not our concern */
    });
    let buffer = "";
    let answered = false;
    socket.on("data", (chunk) => {
      if (answered) return;
      buffer += chunk.toString("latin1");
      const end = buffer.search(/\r?\n\r?\n/);
      if (end < 0) return;
      answered = true;
      const blank = buffer.slice(end).match(/^\r?\n\r?\n/)![0];
      const raw = buffer.slice(0, end + blank.length);
      const request = parseAuthRequest(raw, parsed.length);
      requests.push(raw);
      parsed.push(request);
      connectionOf.push(connection);
      for (const w of waiters.splice(0)) w();
      void reply(socket, request);
    });
  };
  const server = options.tls ? tls.createServer(options.tls, onConnection) : net.createServer(onConnection);
  if (options.tls) server.on("tlsClientError", () => {});

  /** Keep-alive: requests one after another on the connection, each answered in turn. */
  function serveKeepAlive(socket: net.Socket, connection: number): void {
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let buffer = "";
    let busy = false;
    let idle: NodeJS.Timeout | undefined;
    const next = async (): Promise<void> => {
      if (busy) return;
      const end = buffer.search(/\r?\n\r?\n/);
      if (end < 0) return;
      busy = true;
      if (idle) clearTimeout(idle);
      const blank = buffer.slice(end).match(/^\r?\n\r?\n/)![0];
      const raw = buffer.slice(0, end + blank.length);
      buffer = buffer.slice(end + blank.length);
      const request = parseAuthRequest(raw, parsed.length);
      requests.push(raw);
      parsed.push(request);
      connectionOf.push(connection);
      for (const w of waiters.splice(0)) w();
      let answer: AuthReply;
      try {
        answer = await current(request);
      } catch {
        socket.destroy();
        return;
      }
      if (typeof answer === "string") socket.write(answer, "latin1");
      else {
        if (answer.delayMs) await sleep(answer.delayMs);
        if (socket.destroyed) return;
        if (answer.close === "beforeReply") return void socket.end();
        const spec = { ...answer, status: answer.status ?? "HTTP/1.1 200 OK" };
        if (answer.close === "afterHeaders") return void socket.end(renderHead(spec), "latin1");
        const framing = answer.body === undefined ? "Content-Length: 0\r\n" : "";
        socket.write(renderHead(spec) + framing + "\r\n" + (answer.body ?? ""), "latin1");
      }
      busy = false;
      if (options.idleCloseMs !== undefined) idle = setTimeout(() => socket.end(), options.idleCloseMs);
      void next();
    };
    socket.on("data", (chunk) => {
      buffer += chunk.toString("latin1");
      void next();
    });
  }

  async function reply(socket: net.Socket, request: AuthRequest): Promise<void> {
    let answer: AuthReply;
    try {
      answer = await current(request);
    } catch {
      socket.destroy();
      return;
    }
    if (typeof answer === "string") {
      socket.end(answer, "latin1");
      return;
    }
    if (answer.delayMs) await sleep(answer.delayMs);
    if (socket.destroyed) return;
    if (answer.close === "beforeReply") socket.end();
    else if (answer.close === "afterHeaders") socket.end(renderHead(answer), "latin1");
    else socket.end(renderHead(answer) + "\r\n", "latin1");
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  const address = server.address() as net.AddressInfo;

  return {
    port: address.port,
    url: `127.0.0.1:${address.port}/auth`,
    requests,
    parsed,
    connectionOf,
    get connections() {
      return connections;
    },
    setHandler(h: AuthHandler): void {
      current = h;
    },
    async waitForRequests(count: number, timeoutMs = 5000): Promise<AuthRequest[]> {
      const deadline = Date.now() + timeoutMs;
      while (parsed.length < count) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`fake auth: expected ${count} request(s), got ${parsed.length} within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
      return parsed;
    },
    close(): Promise<void> {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Test helpers for the proxy: a scripted raw-TCP backend, a front server that
 * hands each accepted client to proxySession, and a small line client.
 */
import { serverNameDirective } from "../../../src/mail/core-module.js";
import { createServer, connect, type Server, type Socket } from "node:net";
import { once } from "node:events";
import { freePort } from "../../support/ports.js";
import { ServerConf, Level, type Directive } from "../../../src/conf/directive.js";
import { ConnectionLog, ErrorLog, MemorySink } from "../../../src/core/log.js";
import type { AuthMethod, SessionInfo, SmtpInfo } from "../../../src/mail/types.js";
import { proxySession, type ProxySessionParams } from "../../../src/mail/proxy/proxy.js";
import { imapLoginSteps } from "../../../src/mail/proxy/login-imap.js";
import { pop3LoginSteps } from "../../../src/mail/proxy/login-pop3.js";
import { smtpBackendLogin } from "../../../src/mail/proxy/login-smtp.js";
import type { BackendLoginInput, LoginStep } from "../../../src/mail/proxy/login-step.js";

/** The backend login the protocol's front end would build (it keeps the IMAP tag and the SMTP dialogue). */
function loginStepsFor(o: RunOptions, input: BackendLoginInput): LoginStep[] {
  if (o.protocol === "imap") return imapLoginSteps({ tag: o.imapTag ?? "a1", login: input.login, password: input.password });
  if (o.protocol === "pop3") return pop3LoginSteps(input);
  return smtpBackendLogin(input, o.smtp ?? { helo: "", esmtp: false, clientHost: "[UNAVAILABLE]" });
}

/** A backend that sends `greeting`, then one scripted reply per CRLF-terminated line it receives. */
export interface FakeBackend {
  readonly port: number;
  /** Everything received, per connection. */
  readonly received: Buffer[];
  readonly sockets: Socket[];
  close(): Promise<void>;
}

/** Reply script: the reply to the n-th line received (undefined = say nothing). */
export type Script = readonly (string | Buffer | undefined)[];

/** Starts a scripted backend; `onDone` runs when the script has been used up. */
export async function fakeBackend(greeting: string | Buffer, script: Script, onDone?: (s: Socket) => void): Promise<FakeBackend> {
  const received: Buffer[] = [];
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    const index = received.length;
    received.push(Buffer.alloc(0));
    s.on("error", () => {});
    if (greeting.length > 0) s.write(greeting);
    let lines = 0;
    let scanned = 0;
    let scriptDone = script.length === 0;
    if (scriptDone) onDone?.(s);
    s.on("data", (d: Buffer) => {
      const all = Buffer.concat([received[index]!, d]);
      received[index] = all;
      if (scriptDone) return;
      let nl: number;
      while ((nl = all.indexOf("\n", scanned)) >= 0) {
        scanned = nl + 1;
        const reply = script[lines++];
        if (reply !== undefined) s.write(reply);
        if (lines === script.length) {
          scriptDone = true;
          onDone?.(s);
          return;
        }
      }
    });
  });
  return listening(server, { received, sockets });
}

async function listening<T extends object>(server: Server, extra: T): Promise<T & { port: number; close(): Promise<void> }> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;
  return Object.assign(extra, {
    port,
    async close(): Promise<void> {
      const sockets = (extra as { sockets?: Socket[] }).sockets ?? [];
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  });
}

/** Builds a ServerConf with the given directive values at server level. */
export function serverConf(values: ReadonlyArray<readonly [Directive<unknown>, unknown]> = []): ServerConf {
  const loc = { file: "test.conf", line: 1 };
  const own = new Level("server", loc);
  for (const [d, v] of values) own.set(d, v, loc);
  return new ServerConf(own, new Level("mail", loc));
}

/** What one proxied client session looks like from the test. */
export interface ProxyRun {
  readonly client: Socket;
  /** Everything the client received so far. */
  text(): string;
  bytes(): Buffer;
  /** Resolves when proxySession has returned. */
  readonly finished: Promise<void>;
  /** Resolves when the client socket closed. */
  readonly clientClosed: Promise<void>;
  readonly logs: MemorySink;
  /** The front server's accepted socket (proxySession's client). */
  readonly serverSide: Promise<Socket>;
  close(): Promise<void>;
}

/** The session inputs a test varies. */
export interface RunOptions {
  readonly protocol: "imap" | "pop3" | "smtp";
  readonly backendPort: number;
  readonly backendHost?: string;
  readonly conf?: ServerConf;
  readonly login?: string | Buffer;
  readonly password?: string | Buffer;
  readonly authMethod?: AuthMethod;
  readonly imapTag?: string;
  readonly smtp?: SmtpInfo;
  readonly clientAddr?: string;
  readonly pending?: string;
  readonly timeoutMs?: number;
  readonly serverName?: string;
  /** Client bytes to send right after connecting (arrive during the login). */
  readonly early?: string;
  /** Passed to proxySession. */
  readonly shutdown?: AbortSignal;
  /** Do not read automatically (for backpressure tests). */
  readonly manualRead?: boolean;
}

const INTERNAL: Record<"imap" | "pop3" | "smtp", string> = {
  imap: "* BAD internal server error\r\n",
  pop3: "-ERR internal server error\r\n",
  smtp: "451 4.3.2 Internal server error\r\n",
};

/** Starts a front server, connects a client, and runs proxySession for it. */
export async function runProxy(o: RunOptions): Promise<ProxyRun> {
  const logs = new MemorySink(1 << 20, "debug");
  const errorLog = new ErrorLog([logs]);
  let finishedResolve!: () => void;
  const finished = new Promise<void>((r) => {
    finishedResolve = r;
  });
  let sideResolve!: (s: Socket) => void;
  const serverSide = new Promise<Socket>((r) => {
    sideResolve = r;
  });
  const front = createServer({ pauseOnConnect: true }, (s) => {
    sideResolve(s);
    s.on("error", () => {});
    const local = s.localAddress ?? "127.0.0.1";
    const session: SessionInfo = {
      id: 1,
      protocol: o.protocol,
      clientAddr: o.clientAddr ?? s.remoteAddress ?? "127.0.0.1",
      clientPort: s.remotePort ?? 0,
      localAddr: local,
      localPort: s.localPort ?? 0,
      unixClient: false,
      smtp: o.smtp,
    };
    const log = new ConnectionLog(errorLog, 1, {
      client: session.clientAddr,
      server: `${local}:${s.localPort}`,
      login: typeof o.login === "string" ? o.login : Buffer.isBuffer(o.login) ? o.login.toString("latin1") : "user",
    });
    const start = (): void => {
      const conf = o.conf ?? serverConf();
      // the backend login reads server_name from the configuration, as the session's does
      if (!conf.own.has(serverNameDirective)) conf.own.set(serverNameDirective, [o.serverName ?? "proxy.test"], { file: "test.conf", line: 1 });
      const login: BackendLoginInput = {
        login: Buffer.isBuffer(o.login) ? o.login : Buffer.from(o.login ?? "user", "latin1"),
        password: Buffer.isBuffer(o.password) ? o.password : Buffer.from(o.password ?? "secret", "latin1"),
        authMethod: o.authMethod ?? "plain",
        conf,
        session,
      };
      const params: ProxySessionParams = {
        client: s,
        pending: Buffer.from(o.pending ?? "", "latin1"),
        session,
        backend: { host: o.backendHost ?? "127.0.0.1", port: o.backendPort },
        conf,
        timeoutMs: o.timeoutMs ?? 5000,
        log,
        loginSteps: () => loginStepsFor(o, login),
        internalError: () => {
          s.end(INTERNAL[o.protocol]);
        },
        shutdown: o.shutdown,
      };
      proxySession(params).then(finishedResolve, finishedResolve);
    };
    // Give early client bytes time to arrive before the login starts.
    if (o.early) setTimeout(start, 50);
    else start();
  });
  front.listen(0, "127.0.0.1");
  await once(front, "listening");
  const port = (front.address() as { port: number }).port;
  const client = connect(port, "127.0.0.1");
  client.on("error", () => {});
  const chunks: Buffer[] = [];
  if (!o.manualRead) client.on("data", (d: Buffer) => chunks.push(d));
  const clientClosed = new Promise<void>((r) => client.on("close", () => r()));
  await once(client, "connect");
  if (o.early) client.write(o.early);
  return {
    client,
    logs,
    finished,
    clientClosed,
    serverSide,
    text: () => Buffer.concat(chunks).toString("latin1"),
    bytes: () => Buffer.concat(chunks),
    async close(): Promise<void> {
      client.destroy();
      (await Promise.race([serverSide, Promise.resolve(undefined)]))?.destroy();
      await new Promise<void>((r) => front.close(() => r()));
    },
  };
}

/** Waits until `cond` holds, polling; fails after `ms`. */
export async function until(cond: () => boolean, ms = 3000, what = "condition"): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A port with nothing listening: claimed for this process (support/ports.ts) and never bound. */
export async function closedPort(): Promise<number> {
  return freePort();
}

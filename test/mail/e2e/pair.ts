/**
 * One nginx and one Postern per test file, each with its own fake auth server and
 * named fake backends, started once with the same config; every test runs its
 * scenario against both (in parallel) and compares the normalised records of that
 * scenario only (auth requests, backend bytes and log lines are sliced per run).
 *
 * `POSTERN_E2E_SECOND=nginx` replaces Postern with a second nginx: a development
 * switch that proves a scenario is deterministic before Postern can run it.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { normalizeDeep, normalizeLogLine, type ProxyStarter } from "../../support/differential.js";
import { startFakeAuth, type AuthHandler, type FakeAuth } from "../../support/fake-auth.js";
import { startFakeImap, startFakePop3, startFakeSmtp, type FakeBackend, type FakeBackendOptions } from "../../support/fake-backend.js";
import type { MailProxyOptions, MailProxyProcess } from "../../support/mail-proxy.js";
import { nginxAvailable, startNginx } from "../../support/nginx.js";
import { closedPorts, freePorts } from "../../support/ports.js";
import { startPostern } from "../../support/postern.js";

/** A named fake backend of a pair set-up. */
export interface BackendSpec {
  /** `scripted`: a raw server answering by `script` (for replies the fakes cannot produce). */
  protocol: "imap" | "pop3" | "smtp" | "scripted";
  options?: FakeBackendOptions;
  /** For `scripted`: the greeting, then for each received line the first matching rule's reply. */
  script?: { greeting: string; rules: Array<[RegExp, string]> };
  /** Put a PROXY-protocol reader in front of the fake: it records and strips the first line. */
  proxyProtocol?: boolean;
}

/** What the config function and auth handlers get for one side. */
export interface PairEnv {
  /** Proxy listening ports by name. */
  ports: Record<string, number>;
  /** `127.0.0.1:PORT/auth` of this side's fake auth server. */
  authUrl: string;
  /** Fake backend ports by name (the PROXY reader's port when it has one). */
  backends: Record<string, number>;
  /** Ports where nothing listens, by name. */
  closed: Record<string, number>;
}

/** A pair set-up: shared by both sides. */
export interface PairSetup {
  listen: string[];
  backends: Record<string, BackendSpec>;
  /** Names of ports to keep closed (backend down, auth server down). */
  closed?: string[];
  config: (env: PairEnv) => string;
  /** Default auth handler of every run (a run may replace it). */
  auth?: (env: PairEnv) => AuthHandler;
  proxyOptions?: MailProxyOptions;
}

/** Options of one run. */
export interface RunOptions {
  /** Auth handler for this run. */
  auth?: (env: PairEnv) => AuthHandler;
  /** Error-log levels to record (default none). */
  logLevels?: string[];
  /** Record lines without a connection too (the resolver's own, e.g. `no PTR type in DNS response`). */
  processLines?: boolean;
  /** Extra log files (relative to the prefix, e.g. a server's `error_log own.log`) to record like errorLog. */
  logFiles?: string[];
  /** Pause after the scenario so in-flight bytes and log lines are recorded (default 150 ms). */
  settleMs?: number;
}

/** Everything one side observed during one run, normalised. */
export interface SideRecord<T> {
  transcript: T;
  authRequests: string[];
  /** Bytes received per named backend, one latin1 string per new connection (over 64 KiB: a digest). */
  backendReceived: Record<string, string[]>;
  /** PROXY-protocol lines received by backends with `proxyProtocol`, per name. */
  proxyHeaders: Record<string, string[]>;
  errorLog: string[];
  /** Session lines of `logFiles`, by name (same levels and normalisation as errorLog). */
  logFiles: Record<string, string[]>;
}

/** The records of one run on both sides; `postern` is undefined when it could not start. */
export interface PairResult<T> {
  nginx: SideRecord<T>;
  postern: SideRecord<T> | undefined;
  posternError: string | undefined;
}

/** A scenario: drives clients against the side's ports (and may read `env`). */
export type PairScenario<T> = (ports: Record<string, number>, env: PairEnv) => Promise<T>;

/** Replaces long strings by their size and SHA-256, so huge transfers compare cheaply. */
export function digestLong(text: string, limit = 65536): string {
  if (text.length <= limit) return text;
  return `<${text.length} bytes sha256:${createHash("sha256").update(text, "latin1").digest("hex")}>`;
}

/** Splits an error log into entries; a line without a timestamp continues the previous entry (logged CR/LF). */
export function logLines(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split("\n")) {
    // The empty string after the final newline (or a log written in pieces) is no entry.
    if (line === "") continue;
    if (/^\d{4}\/\d\d\/\d\d /.test(line) || out.length === 0) out.push(line);
    else out[out.length - 1] += `\n${line}`;
  }
  return out.filter((l) => l !== "");
}

/**
 * A refused connection is reported by nginx as connect() or recv() failure depending
 * on timing (and the action differs with it for upstreams): both forms become one.
 */
export function normalizeRefused(line: string): string {
  return line
    .replace(
      /(?:connect|recv)\(\) failed \(111: Connection refused\) while (?:connecting to|reading response from) upstream/,
      "<connect|recv>() failed (111: Connection refused) while <connecting to|reading response from> upstream",
    )
    .replace(
      /(?:connect|recv)\(\) failed \(111: Connection refused\) while in http auth state/,
      "<connect|recv>() failed (111: Connection refused) while in http auth state",
    );
}

/** A TCP relay that records the first line (a PROXY header) and strips it before the fake backend. */
interface ProxyReader {
  port: number;
  headers: string[];
  close(): Promise<void>;
}

async function startProxyReader(target: number): Promise<ProxyReader> {
  const headers: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    const upstream = net.connect({ host: "127.0.0.1", port: target });
    sockets.add(upstream);
    client.on("close", () => {
      sockets.delete(client);
      upstream.destroy();
    });
    upstream.on("close", () => {
      sockets.delete(upstream);
      client.end();
    });
    client.on("error", () => undefined);
    upstream.on("error", () => undefined);
    upstream.pipe(client);
    let buffer = Buffer.alloc(0);
    let done = false;
    client.on("data", (chunk: Buffer) => {
      if (done) {
        upstream.write(chunk);
        return;
      }
      buffer = Buffer.concat([buffer, chunk]);
      const lf = buffer.indexOf("\n");
      if (lf < 0) return;
      done = true;
      const line = buffer.subarray(0, lf + 1).toString("latin1");
      if (line.startsWith("PROXY ")) {
        headers.push(line);
        buffer = buffer.subarray(lf + 1);
      } else {
        headers.push("<no PROXY header>");
      }
      if (buffer.length > 0) upstream.write(buffer);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    headers,
    close(): Promise<void> {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** A raw line server: greets, then answers each received line with the first matching rule (else nothing). */
async function startScripted(script: NonNullable<BackendSpec["script"]>): Promise<FakeBackend> {
  const connections: FakeBackend["connections"] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    let done!: () => void;
    const conn: FakeBackend["connections"][number] = {
      received: Buffer.alloc(0),
      sent: Buffer.alloc(0),
      loggedIn: false,
      commands: [],
      messages: [],
      closed: new Promise<void>((resolve) => {
        done = resolve;
      }),
    };
    connections.push(conn);
    socket.on("close", () => {
      sockets.delete(socket);
      done();
    });
    socket.on("error", () => undefined);
    let buffer = "";
    socket.on("data", (chunk: Buffer) => {
      conn.received = Buffer.concat([conn.received, chunk]);
      buffer += chunk.toString("latin1");
      for (let lf = buffer.indexOf("\n"); lf >= 0; lf = buffer.indexOf("\n")) {
        const line = buffer.slice(0, lf + 1);
        buffer = buffer.slice(lf + 1);
        conn.commands.push(line);
        // `$1`... in a reply are the rule's capture groups (e.g. the IMAP tag).
        for (const [re, reply] of script.rules) {
          const m = re.exec(line);
          if (!m) continue;
          socket.write(
            reply.replace(/\$(\d)/g, (_s, d: string) => m[Number(d)] ?? ""),
            "latin1",
          );
          break;
        }
      }
    });
    socket.write(script.greeting, "latin1");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return {
    protocol: "imap",
    port: (server.address() as net.AddressInfo).port,
    connections,
    waitForConnections: () => Promise.resolve(connections),
    close(): Promise<void> {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

const STARTERS: Record<string, (o: FakeBackendOptions) => Promise<FakeBackend>> = {
  imap: startFakeImap,
  pop3: startFakePop3,
  smtp: startFakeSmtp,
};

/** One proxy with its own fakes. */
class Side {
  readonly kind: "nginx" | "postern";
  readonly env: PairEnv;
  readonly auth: FakeAuth;
  readonly fakes: Record<string, FakeBackend>;
  readonly readers: Record<string, ProxyReader>;
  readonly names: Map<number, string>;
  proxy: MailProxyProcess | undefined;
  startError: string | undefined;

  constructor(kind: "nginx" | "postern", env: PairEnv, auth: FakeAuth, fakes: Record<string, FakeBackend>, readers: Record<string, ProxyReader>) {
    this.kind = kind;
    this.env = env;
    this.auth = auth;
    this.fakes = fakes;
    this.readers = readers;
    this.names = new Map();
    for (const [n, p] of Object.entries(env.ports)) this.names.set(p, `<port:${n}>`);
    this.names.set(auth.port, "<auth-port>");
    for (const [n, f] of Object.entries(fakes)) this.names.set(f.port, `<backend-port:${n}>`);
    for (const [n, r] of Object.entries(readers)) this.names.set(r.port, `<backend-port:${n}>`);
    for (const [n, p] of Object.entries(env.closed)) this.names.set(p, `<closed-port:${n}>`);
  }

  async run<T>(setup: PairSetup, options: RunOptions, scenario: PairScenario<T>): Promise<SideRecord<T>> {
    const handler = (options.auth ?? setup.auth)?.(this.env);
    if (handler) this.auth.setHandler(handler);
    const authStart = this.auth.requests.length;
    const connStart = Object.fromEntries(Object.entries(this.fakes).map(([n, f]) => [n, f.connections.length]));
    const hdrStart = Object.fromEntries(Object.entries(this.readers).map(([n, r]) => [n, r.headers.length]));
    const logStart = this.proxy!.errorLog().length;
    const fileStart = Object.fromEntries((options.logFiles ?? []).map((f) => [f, this.#readLog(f).length]));
    const transcript = await scenario(this.env.ports, this.env);
    await new Promise((r) => setTimeout(r, options.settleMs ?? 150));
    const logText = this.proxy!.errorLog().slice(logStart);
    const levels = options.logLevels ?? [];
    const sessionLines = (text: string): string[] =>
      logLines(text)
        .filter((l) => levels.some((lv) => l.includes(` [${lv}] `)) && (options.processLines === true || / \d+#\d+: \*\d+ /.test(l)))
        .map((l) => normalizeRefused(normalizeLogLine(l, this.names)));
    const errorLog = sessionLines(logText);
    const logFiles: Record<string, string[]> = {};
    for (const [f, start] of Object.entries(fileStart)) logFiles[f] = sessionLines(this.#readLog(f).slice(start));
    const backendReceived: Record<string, string[]> = {};
    for (const [n, f] of Object.entries(this.fakes)) {
      backendReceived[n] = f.connections.slice(connStart[n]).map((c) => digestLong(c.received.toString("latin1")));
    }
    const proxyHeaders: Record<string, string[]> = {};
    for (const [n, r] of Object.entries(this.readers)) proxyHeaders[n] = r.headers.slice(hdrStart[n]);
    const record = normalizeDeep(
      {
        transcript,
        authRequests: this.auth.requests.slice(authStart),
        backendReceived,
        proxyHeaders,
      },
      this.names,
    );
    return { ...record, errorLog, logFiles };
  }

  /** A file in the proxy's prefix ('' when missing). */
  #readLog(name: string): string {
    try {
      return readFileSync(path.join(this.proxy!.prefix, name), "utf8");
    } catch {
      return "";
    }
  }

  async stop(): Promise<void> {
    await this.proxy?.stop();
    await this.auth.close();
    await Promise.all([...Object.values(this.fakes), ...Object.values(this.readers)].map((f) => f.close()));
  }
}

async function startSide(kind: "nginx" | "postern", start: ProxyStarter, setup: PairSetup): Promise<Side> {
  const fakes: Record<string, FakeBackend> = {};
  const readers: Record<string, ProxyReader> = {};
  const backends: Record<string, number> = {};
  for (const [name, spec] of Object.entries(setup.backends)) {
    const fake = spec.protocol === "scripted" ? await startScripted(spec.script!) : await STARTERS[spec.protocol]!(spec.options ?? {});
    fakes[name] = fake;
    backends[name] = fake.port;
    if (spec.proxyProtocol) {
      const reader = await startProxyReader(fake.port);
      readers[name] = reader;
      backends[name] = reader.port;
    }
  }
  const auth = await startFakeAuth(() => ({ headers: [["Auth-Status", "no handler set"]] }));
  const closedNames = setup.closed ?? [];
  const allocated = await freePorts(setup.listen.length);
  const ports: Record<string, number> = {};
  setup.listen.forEach((n, i) => {
    ports[n] = allocated[i]!;
  });
  const closed: Record<string, number> = {};
  const down = closedPorts(closedNames.length);
  closedNames.forEach((n, i) => {
    closed[n] = down[i]!;
  });
  const env: PairEnv = { ports, authUrl: auth.url, backends, closed };
  const side = new Side(kind, env, auth, fakes, readers);
  try {
    side.proxy = await start(setup.config(env), setup.proxyOptions);
  } catch (err) {
    side.startError = `${kind} did not start: ${(err as Error).message}`;
  }
  return side;
}

/** nginx and Postern started once with the same set-up; run() compares one scenario on both. */
export class Pair {
  readonly setup: PairSetup;
  readonly #nginx: Side;
  readonly #postern: Side;

  private constructor(setup: PairSetup, nginx: Side, postern: Side) {
    this.setup = setup;
    this.#nginx = nginx;
    this.#postern = postern;
  }

  /** Starts both sides; nginx must start (it is the oracle), a Postern failure is reported by every run. */
  static async start(setup: PairSetup): Promise<Pair> {
    assert.ok(nginxAvailable(), "nginx with the mail module is required (the oracle)");
    const secondIsNginx = process.env.POSTERN_E2E_SECOND === "nginx";
    const [nginx, postern] = await Promise.all([startSide("nginx", startNginx, setup), startSide("postern", secondIsNginx ? startNginx : startPostern, setup)]);
    if (nginx.startError) {
      await Promise.all([nginx.stop(), postern.stop()]);
      throw new Error(nginx.startError);
    }
    return new Pair(setup, nginx, postern);
  }

  /** Runs the scenario on both sides at once and returns both normalised records. */
  async run<T>(options: RunOptions, scenario: PairScenario<T>): Promise<PairResult<T>> {
    const postern = this.#postern.startError === undefined;
    const [n, p] = await Promise.all([
      this.#nginx.run(this.setup, options, scenario),
      postern ? this.#postern.run(this.setup, options, scenario).catch((e: Error) => e) : Promise.resolve(undefined),
    ]);
    if (p instanceof Error) return { nginx: n, postern: undefined, posternError: `Postern run failed: ${p.stack ?? p.message}` };
    return { nginx: n, postern: p, posternError: this.#postern.startError };
  }

  /** The nginx side's environment (ports), for scenarios that need it outside run(). */
  get nginxEnv(): PairEnv {
    return this.#nginx.env;
  }

  async stop(): Promise<void> {
    await Promise.all([this.#nginx.stop(), this.#postern.stop()]);
  }
}

/** Returns Postern's record, failing the test when Postern could not run. */
export function posternRecord<T>(r: PairResult<T>): SideRecord<T> {
  if (!r.postern) assert.fail(r.posternError ?? "no Postern record");
  return r.postern;
}

/**
 * nginx's record with its `client sent too long command "..."` lines as
 * Postern writes them for an authentication command: tag and command name
 * only, never the arguments (a deliberate difference, compat.md).
 */
export function tooLongByName<T>(side: SideRecord<T>): SideRecord<T> {
  const cut = (l: string): string =>
    l.replace(/(client sent too long command ")((?:[A-Za-z0-9._-]+ +)?(?:LOGIN|AUTHENTICATE|USER|PASS|APOP|AUTH))(?: [^"]*)?"/i, '$1$2"');
  return { ...side, errorLog: side.errorLog.map(cut) };
}

/** Asserts that Postern's record equals nginx's. */
export function assertSame<T>(r: PairResult<T>): void {
  assert.deepEqual(posternRecord(r), r.nginx);
}

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

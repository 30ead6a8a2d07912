/**
 * A Postern cluster as operators deploy it (docs/scaling.md): one Redis
 * (redis.ts), N Postern nodes, each its own prefix dir, ports, master and
 * two workers, all pointing at that Redis with the same secret_file, one
 * auth service (fake-auth.ts: a real HTTP server) and one set of backends
 * (fake-backend.ts), and HAProxy (haproxy.ts) in front: `send-proxy-v2` to
 * each node's `listen ... proxy_protocol` ports, health checks on its
 * metrics_listen /health.
 *
 * Every node names itself to the auth service (`auth_http_header
 * X-Postern-Node nK`), so a test knows which node served a login, and trusts
 * HAProxy's PROXY header (`set_real_ip_from 127.0.0.1`), so the auth service
 * sees the client's own address: clients bind to another loopback address
 * (CLIENT_IP) than HAProxy's 127.0.0.1.
 *
 * Nodes run with `daemon on`, as packaged servers do: nginx (and Postern)
 * refuse USR2 while the process that started the master is its parent.
 * Besides the PROXY-protocol ports each node has `direct` ports without
 * PROXY protocol (IMAP over TLS and plain IMAP), so a test can reach one
 * node on purpose (a TLS session made on A, resumed on B).
 */
import { spawn } from "node:child_process";
import http from "node:http";
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { certs } from "./certs.js";
import { type AuthHandler, type FakeAuth, startFakeAuth } from "./fake-auth.js";
import { type FakeBackend, startFakeImap, startFakePop3, startFakeSmtp } from "./fake-backend.js";
import { type Haproxy, type HaproxyOptions, startHaproxy } from "./haproxy.js";
import { freePorts } from "./ports.js";
import { posternCommand } from "./postern.js";
import { type RedisServer, startRedis } from "./redis.js";

/** The address clients of the cluster connect from (HAProxy connects to the nodes from 127.0.0.1). */
export const CLIENT_IP = "127.0.0.5";
export const USER = "test@example.com";
export const PASSWORD = "secret";

/** Frontends HAProxy has, and the node port each one goes to. */
export const FRONTENDS = ["imap", "pop3", "smtp", "imaps"] as const;
export type Frontend = (typeof FRONTENDS)[number];

export interface ClusterOptions {
  /** Nodes (default 3). */
  nodes?: number;
  /** worker_processes of each node (default 2). */
  workers?: number;
  /** Directives added to every node's mail block (e.g. the zones with `sync`). */
  mailExtra?: (node: string) => string;
  /** The auth service's answers (default: every login goes to the fake backend of its protocol). */
  auth?: AuthHandler;
  /** HAProxy's health check settings (default inter 200 ms, fall 2, rise 2). */
  haproxy?: Pick<HaproxyOptions, "interMs" | "fall" | "rise" | "balance">;
  /** `error_log` level (default info). */
  logLevel?: string;
  /**
   * Name each node to the auth service with `auth_http_header X-Postern-Node`
   * (default true). Off for a shared auth cache: that header is part of the
   * cache key, so nodes that send different ones never share an entry.
   */
  nodeHeader?: boolean;
  /** Inside `events {}` (default `worker_connections 4096;`). */
  events?: string;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function until<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Running (not a zombie: a daemon's reparented master may never be reaped in a container). */
export function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** Direct children of a process (every thread's children list). */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const t of readdirSync(`/proc/${pid}/task`))
      for (const c of readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim().split(/\s+/)) if (c) out.push(Number(c));
  } catch {
    // gone
  }
  return out;
}

/** Resident memory of a process, in bytes (0 when gone). */
export function rssOf(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

/** One Postern node: a daemon in its own prefix dir. */
export class PosternNode {
  readonly dir: string;
  /** Masters this node ever had (a USR2 adds one), for cleanup. */
  readonly #masters = new Set<number>();

  constructor(
    readonly name: string,
    /** PROXY-protocol ports by frontend. */
    readonly ports: Record<Frontend, number>,
    /** Ports without PROXY protocol: implicit TLS IMAP and plain IMAP. */
    readonly direct: { imaps: number; imap: number },
    readonly metricsPort: number,
    config: string,
  ) {
    this.dir = mkdtempSync(path.join(os.tmpdir(), `postern-node-${name}-`));
    // workers run as nobody when tests run as root and reopen their logs here
    chmodSync(this.dir, 0o755);
    writeFileSync(path.join(this.dir, "nginx.conf"), config);
  }

  get configPath(): string {
    return path.join(this.dir, "nginx.conf");
  }

  /** Runs `postern ARGS` against this node's prefix and config (the launcher of `daemon on`, `-t`, `-s`). */
  async command(args: string[] = []): Promise<{ code: number | null; stderr: string }> {
    const [cmd, ...rest] = posternCommand();
    const c = spawn(cmd!, [...rest, "-p", this.dir + "/", "-c", "nginx.conf", "-e", "error.log", ...args], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    c.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((r) => c.on("exit", (x) => r(x)));
    return { code, stderr };
  }

  /** Starts the daemon and waits until its /health says ready. */
  async start(): Promise<number> {
    rmSync(path.join(this.dir, "nginx.pid"), { force: true });
    const r = await this.command();
    if (r.code !== 0) throw new Error(`node ${this.name} did not start (${r.code}): ${r.stderr}\n${this.log()}`);
    const pid = await until(`${this.name}'s pid file`, () => this.pid());
    this.#masters.add(pid);
    await until(`${this.name} ready`, async () => (await this.health()).status === 200);
    return pid;
  }

  /** The pid in nginx.pid (or nginx.pid.oldbin), or undefined. */
  pid(file = "nginx.pid"): number | undefined {
    // read at once, never checked first: USR2 renames the file under us (nginx.pid -> .oldbin)
    let text: string;
    try {
      text = readFileSync(path.join(this.dir, file), "utf8");
    } catch {
      return undefined;
    }
    const m = /^(\d+)\n$/.exec(text);
    return m ? Number(m[1]) : undefined;
  }

  log(): string {
    const p = path.join(this.dir, "error.log");
    return existsSync(p) ? readFileSync(p, "utf8") : "";
  }

  /** The master (from the pid file) and its workers, alive now. */
  processes(): number[] {
    const master = this.pid();
    return master === undefined || !alive(master) ? [] : [master, ...childrenOf(master).filter(alive)];
  }

  /** Resident memory of the master and its workers, in bytes. */
  rss(): number {
    return this.processes().reduce((sum, p) => sum + rssOf(p), 0);
  }

  /** /health over HTTP on a new connection each time, as a balancer's check: status and body (status 0 when nothing answers). */
  health(): Promise<{ status: number; body: string }> {
    return new Promise((resolve) => {
      const req = http.get({ host: "127.0.0.1", port: this.metricsPort, path: "/health", agent: false, timeout: 2000 }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: body.trim() }));
        res.on("error", () => resolve({ status: 0, body: "" }));
      });
      req.on("timeout", () => req.destroy());
      req.on("error", () => resolve({ status: 0, body: "" }));
    });
  }

  /** The Prometheus page (empty when nothing answers). */
  async metrics(): Promise<string> {
    try {
      const res = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`, { signal: AbortSignal.timeout(5000) });
      return await res.text();
    } catch {
      return "";
    }
  }

  signal(sig: NodeJS.Signals, pid = this.pid()): void {
    if (pid !== undefined) process.kill(pid, sig);
  }

  /** SIGKILL to the master and every worker at once: the node dies as in a crash (its sessions are lost). */
  async kill(): Promise<void> {
    const victims = this.processes();
    for (const p of victims)
      try {
        process.kill(p, "SIGKILL");
      } catch {
        // gone
      }
    await until(`${this.name} dead`, () => victims.every((p) => !alive(p)));
  }

  /** HUP; resolves when a new generation of workers started and the node is ready. */
  async reload(): Promise<void> {
    const starts = (this.log().match(/start worker processes/g) ?? []).length;
    this.signal("SIGHUP");
    await until(`${this.name} reloaded`, () => (this.log().match(/start worker processes/g) ?? []).length > starts);
    await until(`${this.name} ready after reload`, async () => (await this.health()).status === 200);
  }

  /**
   * USR2, then QUIT to the old master once the new one serves (nginx's
   * upgrade on the fly); resolves with the new master's pid when the old
   * master has exited (its open sessions finished on its own workers).
   */
  async upgrade(waitOldExit = true): Promise<number> {
    const old = this.pid();
    if (old === undefined) throw new Error(`${this.name} has no master`);
    this.signal("SIGUSR2", old);
    const next = await until(
      `${this.name}'s new master`,
      () => {
        const p = this.pid();
        return p !== undefined && p !== old && this.pid("nginx.pid.oldbin") === old ? p : undefined;
      },
      20_000,
    );
    this.#masters.add(next);
    await until(`${this.name}'s new workers`, () => new RegExp(`\\] ${next}#\\d+: start worker process \\d+$`, "m").test(this.log()), 20_000);
    this.signal("SIGQUIT", old);
    if (waitOldExit) await until(`${this.name}'s old master exit`, () => !alive(old), 20_000);
    return next;
  }

  /** QUIT (graceful drain) and wait for the exit. */
  async quit(timeoutMs = 20_000): Promise<void> {
    const pid = this.pid();
    if (pid === undefined) return;
    this.signal("SIGQUIT", pid);
    await until(`${this.name} exit`, () => !alive(pid), timeoutMs);
  }

  /** Kills whatever is left and removes the dir (unless POSTERN_KEEP_TMP). */
  async cleanup(): Promise<void> {
    const pids = new Set<number>();
    for (const m of this.#masters) if (alive(m)) for (const p of [m, ...childrenOf(m)]) pids.add(p);
    for (const p of this.processes()) pids.add(p);
    for (const p of pids)
      try {
        process.kill(p, "SIGKILL");
      } catch {
        // gone
      }
    await sleep(100);
    if (!process.env.POSTERN_KEEP_TMP) rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface Cluster {
  readonly redis: RedisServer;
  readonly auth: FakeAuth;
  readonly backends: Record<"imap" | "pop3" | "smtp", FakeBackend>;
  readonly nodes: PosternNode[];
  readonly haproxy: Haproxy;
  /** HAProxy's port for a frontend. */
  port(front: Frontend): number;
  /** The secret_file every node shares. */
  readonly secretFile: string;
  /** Logins the auth service saw: node name and Client-IP, in arrival order. */
  logins(): Array<{ node: string; clientIp: string; user: string }>;
  stop(): Promise<void>;
}

/** The mail block of node `name`. */
/**
 * One node's configuration. The store's timeout is 2s, not the default
 * 100 ms: the tests count and resume across nodes, and on a loaded CI
 * machine Redis can take longer than 100 ms to answer, which falls back to
 * node-local state (a CI run lost every shared test of a lane that way).
 */
export function nodeConfig(o: {
  name: string;
  authPort: number;
  redisPort: number;
  secretFile: string;
  ports: Record<Frontend, number>;
  direct: { imaps: number; imap: number };
  metricsPort: number;
  workers: number;
  logLevel: string;
  events: string;
  mailExtra: string;
  nodeHeader?: boolean;
}): string {
  const tls = certs();
  return `daemon on;
master_process on;
worker_processes ${o.workers};
pid nginx.pid;
error_log error.log ${o.logLevel};
events { ${o.events} }
mail {
  auth_http 127.0.0.1:${o.authPort}/auth;
  ${o.nodeHeader === false ? "" : `auth_http_header X-Postern-Node ${o.name};`}
  set_real_ip_from 127.0.0.1;
  metrics_listen 127.0.0.1:${o.metricsPort};
  shared_store redis 127.0.0.1:${o.redisPort} secret_file=${o.secretFile} timeout=2s;
  ssl_certificate ${tls.serverEcdsa.cert};
  ssl_certificate_key ${tls.serverEcdsa.key};
  ssl_protocols TLSv1.2 TLSv1.3;
  smtp_auth plain login;
  ${o.mailExtra}
  server { listen 127.0.0.1:${o.ports.imap} proxy_protocol; protocol imap; }
  server { listen 127.0.0.1:${o.ports.pop3} proxy_protocol; protocol pop3; }
  server { listen 127.0.0.1:${o.ports.smtp} proxy_protocol; protocol smtp; }
  server { listen 127.0.0.1:${o.ports.imaps} ssl proxy_protocol; protocol imap; }
  server { listen 127.0.0.1:${o.direct.imaps} ssl; listen 127.0.0.1:${o.direct.imap}; protocol imap; }
}
`;
}

export async function startCluster(o: ClusterOptions = {}): Promise<Cluster> {
  const count = o.nodes ?? 3;
  const cleanups: Array<() => Promise<void>> = [];
  const stopAll = async (): Promise<void> => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
  };
  try {
    const redis = await startRedis();
    cleanups.push(() => redis.close());
    const backends = { imap: await startFakeImap(), pop3: await startFakePop3(), smtp: await startFakeSmtp() };
    for (const b of Object.values(backends)) cleanups.push(() => b.close());
    const route: AuthHandler = (req) => {
      const protocol = (req.header("Auth-Protocol") ?? "imap") as keyof typeof backends;
      const backend = backends[protocol] ?? backends.imap;
      return {
        headers: [
          ["Auth-Status", "OK"],
          ["Auth-Server", "127.0.0.1"],
          ["Auth-Port", String(backend.port)],
        ],
      };
    };
    const auth = await startFakeAuth(o.auth ?? route);
    cleanups.push(() => auth.close());
    const shared = mkdtempSync(path.join(os.tmpdir(), "postern-cluster-"));
    chmodSync(shared, 0o755);
    cleanups.push(() => Promise.resolve(rmSync(shared, { recursive: true, force: true })));
    const secretFile = path.join(shared, "store.secret");
    // the same 32+ random bytes on every node: values sealed by one open on the others
    writeFileSync(secretFile, Buffer.from(Array.from({ length: 48 }, () => Math.floor(Math.random() * 256))).toString("hex"), { mode: 0o600 });
    const nodes: PosternNode[] = [];
    // one call for every node: separate calls may hand out the same port twice (each releases its own)
    const allPorts = await freePorts(7 * count);
    for (let i = 1; i <= count; i++) {
      const [imap, pop3, smtp, imaps, dImaps, dImap, metricsPort] = allPorts.slice(7 * (i - 1), 7 * i) as [
        number,
        number,
        number,
        number,
        number,
        number,
        number,
      ];
      const name = `n${i}`;
      const ports = { imap, pop3, smtp, imaps };
      const direct = { imaps: dImaps, imap: dImap };
      const config = nodeConfig({
        name,
        authPort: auth.port,
        redisPort: redis.port,
        secretFile,
        ports,
        direct,
        metricsPort,
        workers: o.workers ?? 2,
        logLevel: o.logLevel ?? "info",
        events: o.events ?? "worker_connections 4096;",
        mailExtra: o.mailExtra?.(name) ?? "",
        nodeHeader: o.nodeHeader,
      });
      const node = new PosternNode(name, ports, direct, metricsPort, config);
      cleanups.push(() => node.cleanup());
      nodes.push(node);
    }
    await Promise.all(nodes.map((n) => n.start()));
    const frontPorts = await freePorts(FRONTENDS.length);
    const frontends = Object.fromEntries(FRONTENDS.map((f, i) => [f, frontPorts[i]!])) as Record<Frontend, number>;
    const haproxy = await startHaproxy({
      frontends,
      servers: nodes.map((n) => ({ name: n.name, ports: n.ports, healthPort: n.metricsPort })),
      ...o.haproxy,
    });
    cleanups.push(() => haproxy.stop());
    for (const n of nodes) await haproxy.waitFor(n.name, "UP");
    return {
      redis,
      auth,
      backends,
      nodes,
      haproxy,
      secretFile,
      port: (front) => frontends[front],
      logins: () =>
        auth.parsed.map((r) => ({ node: r.header("X-Postern-Node") ?? "", clientIp: r.header("Client-IP") ?? "", user: r.header("Auth-User") ?? "" })),
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** True when `postern -t` accepts `mailExtra` in a node's configuration (the `sync` zones need the merged shared-state work). */
export async function configAccepted(mailExtra: string): Promise<{ ok: boolean; stderr: string }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "postern-cluster-t-"));
  try {
    const secretFile = path.join(dir, "store.secret");
    writeFileSync(secretFile, "x".repeat(64));
    const text = nodeConfig({
      name: "n0",
      authPort: 9,
      redisPort: 6379,
      secretFile,
      ports: { imap: 1, pop3: 2, smtp: 3, imaps: 4 },
      direct: { imaps: 5, imap: 6 },
      metricsPort: 7,
      workers: 1,
      logLevel: "info",
      events: "worker_connections 64;",
      mailExtra,
    });
    writeFileSync(path.join(dir, "nginx.conf"), text);
    const [cmd, ...rest] = posternCommand();
    const c = spawn(cmd!, [...rest, "-t", "-p", dir + "/", "-c", "nginx.conf", "-e", "error.log"], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    c.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((r) => c.on("exit", (x) => r(x)));
    return { ok: code === 0, stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

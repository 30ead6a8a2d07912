/**
 * A real HAProxy (Debian's haproxy 2.6) in front of Postern nodes, as
 * operators deploy it (docs/scaling.md): TCP mode, one frontend per
 * protocol, `send-proxy-v2` to each node's `listen ... proxy_protocol`
 * port, and an HTTP health check against the node's `metrics_listen`
 * /health (200 `ready`, 503 `starting`/`draining`). Intervals are short so
 * a test sees a node go down (or drain) within a second.
 *
 * It runs in the foreground (`haproxy -db -f CFG`) in a temp dir; server
 * states are read from its stats socket (`show stat`). A connection refused
 * by a node (killed, or closed its listeners while draining) is retried on
 * another node (`retries` + `option redispatch 1`), so a client of HAProxy
 * never sees that refusal.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

export const HAPROXY_BIN = "/usr/sbin/haproxy";

export function haproxyAvailable(): boolean {
  return existsSync(HAPROXY_BIN);
}

/** One Postern node as HAProxy sees it. */
export interface HaproxyServer {
  /** Server name in HAProxy's config and stats (e.g. `n1`). */
  readonly name: string;
  /** The node's `listen ... proxy_protocol` port per frontend name. */
  readonly ports: Readonly<Record<string, number>>;
  /** The node's metrics_listen port: /health is checked there. */
  readonly healthPort: number;
}

export interface HaproxyOptions {
  /** Frontend name (e.g. `imap`) -> the port HAProxy listens on for it. */
  readonly frontends: Readonly<Record<string, number>>;
  readonly servers: readonly HaproxyServer[];
  /** `roundrobin` (default: each new client goes to the next node) or `leastconn`. */
  readonly balance?: "roundrobin" | "leastconn";
  /** Health check interval in ms (default 200); `fall`/`rise` checks (default 2/2). */
  readonly interMs?: number;
  readonly fall?: number;
  readonly rise?: number;
}

/** One row of `show stat` for a server. */
export interface ServerState {
  readonly backend: string;
  readonly server: string;
  /** `UP`, `DOWN`, `UP 1/2`, `DOWN 1/2`, `MAINT`, `NOLB`... */
  readonly status: string;
  /** Sessions in progress, and sessions since the start. */
  readonly current: number;
  readonly total: number;
}

export interface Haproxy {
  readonly dir: string;
  readonly config: string;
  /** Frontend name -> port. */
  readonly ports: Readonly<Record<string, number>>;
  /** The servers' states from the stats socket. */
  states(): Promise<ServerState[]>;
  /** Waits until `server` is exactly `status` (not `UP 1/2`, a transition) in every backend. */
  waitFor(server: string, status: "UP" | "DOWN", timeoutMs?: number): Promise<void>;
  /** What HAProxy wrote to stderr (alerts, warnings, server state changes). */
  output(): string;
  stop(): Promise<void>;
}

export function haproxyConfig(dir: string, o: HaproxyOptions): string {
  const inter = o.interMs ?? 200;
  const lines = [
    "global",
    `  stats socket ${path.join(dir, "stats.sock")} mode 600 level admin`,
    "  maxconn 4000",
    "defaults",
    "  mode tcp",
    "  timeout connect 1s",
    "  timeout client 120s",
    "  timeout server 120s",
    "  timeout check 1s",
    // a refused connect (a killed or draining node) is retried, on another node each time
    "  retries 3",
    "  option redispatch 1",
    `  default-server inter ${inter}ms fastinter ${inter}ms downinter ${inter}ms fall ${o.fall ?? 2} rise ${o.rise ?? 2}`,
  ];
  for (const [front, port] of Object.entries(o.frontends)) {
    lines.push(`frontend ${front}`, `  bind 127.0.0.1:${port}`, `  default_backend postern_${front}`);
    lines.push(
      `backend postern_${front}`,
      `  balance ${o.balance ?? "roundrobin"}`,
      "  option httpchk",
      "  http-check send meth GET uri /health",
      "  http-check expect status 200",
    );
    for (const s of o.servers) {
      const p = s.ports[front];
      if (p === undefined) throw new Error(`server ${s.name} has no port for frontend ${front}`);
      lines.push(`  server ${s.name} 127.0.0.1:${p} send-proxy-v2 check port ${s.healthPort}`);
    }
  }
  return lines.join("\n") + "\n";
}

/** Sends one command to the stats socket and returns the whole answer. */
function statsCommand(socketPath: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socketPath);
    let out = "";
    s.setTimeout(3000, () => s.destroy(new Error("stats socket timed out")));
    s.on("connect", () => s.write(command + "\n"));
    s.on("data", (d: Buffer) => (out += d.toString("utf8")));
    s.on("end", () => resolve(out));
    s.on("error", reject);
  });
}

/** Parses `show stat` CSV (first line `# pxname,svname,...`) into server rows. */
export function parseStat(csv: string): ServerState[] {
  const lines = csv.split("\n").filter((l) => l.trim() !== "");
  const header = (lines.shift() ?? "").replace(/^# /, "").split(",");
  const col = (name: string): number => header.indexOf(name);
  const out: ServerState[] = [];
  for (const line of lines) {
    const f = line.split(",");
    const server = f[col("svname")] ?? "";
    if (server === "FRONTEND" || server === "BACKEND") continue;
    out.push({ backend: f[col("pxname")] ?? "", server, status: f[col("status")] ?? "", current: Number(f[col("scur")]), total: Number(f[col("stot")]) });
  }
  return out;
}

export async function startHaproxy(o: HaproxyOptions): Promise<Haproxy> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "postern-haproxy-"));
  const config = haproxyConfig(dir, o);
  const cfgPath = path.join(dir, "haproxy.cfg");
  writeFileSync(cfgPath, config);
  const check = spawn(HAPROXY_BIN, ["-c", "-q", "-f", cfgPath], { stdio: ["ignore", "ignore", "pipe"] });
  let checkErr = "";
  check.stderr.on("data", (d: Buffer) => (checkErr += d.toString()));
  const checkCode = await new Promise<number | null>((r) => check.on("exit", (c) => r(c)));
  if (checkCode !== 0) throw new Error(`haproxy -c refused the configuration:\n${checkErr}\n${config}`);
  let output = "";
  const child: ChildProcess = spawn(HAPROXY_BIN, ["-db", "-f", cfgPath], { stdio: ["ignore", "pipe", "pipe"] });
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const sock = path.join(dir, "stats.sock");
  const states = async (): Promise<ServerState[]> => parseStat(await statsCommand(sock, "show stat"));
  // up once the stats socket answers: the frontends are bound before it (no probe
  // connection through a frontend, which would reach a node as a session of its own)
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`haproxy exited at start:\n${output}`);
    if (
      existsSync(sock) &&
      (await states().then(
        () => true,
        () => false,
      ))
    )
      break;
    if (Date.now() > deadline) throw new Error(`haproxy did not start:\n${output}`);
    await sleep(50);
  }
  return {
    dir,
    config,
    ports: o.frontends,
    states,
    async waitFor(server, status, timeoutMs = 10_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const rows = (await states()).filter((r) => r.server === server);
        if (rows.length > 0 && rows.every((r) => r.status === status)) return;
        if (Date.now() > end) throw new Error(`haproxy: ${server} not ${status}: ${JSON.stringify(rows)}\n${output}`);
        await sleep(50);
      }
    },
    output: () => output,
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGKILL");
        await exited;
      }
      if (!process.env.POSTERN_KEEP_TMP) rmSync(dir, { recursive: true, force: true });
    },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

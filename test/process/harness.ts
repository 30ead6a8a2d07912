/** Runs Postern as a server in a temp dir and talks to it over loopback. */
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const POSTERN = fileURLToPath(new URL("../../../bin/postern.js", import.meta.url));

export { freePort } from "../support/ports.js";

/** How long a start-up may take before a test gives up on it. */
export const START_WAIT_MS = 30_000;

/** Polls until `check` returns a value (not undefined/false) or the time is up. */
export async function waitFor<T>(what: string, check: () => T | undefined | false, ms = 8000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A configuration for the provisional mail block. */
export function config(o: { ports: number[]; workers?: number; capability?: string; extra?: string; daemon?: boolean; master?: boolean }): string {
  const listens = o.ports.map((p) => `listen 127.0.0.1:${p};`).join(" ");
  return [
    "load_module /usr/lib/nginx/modules/ngx_mail_module.so;",
    `daemon ${o.daemon ? "on" : "off"};`,
    `master_process ${o.master === false ? "off" : "on"};`,
    `worker_processes ${o.workers ?? 2};`,
    "pid nginx.pid;",
    "error_log error.log info;",
    o.extra ?? "",
    "events { worker_connections 64; }",
    `mail { ${o.capability ? `imap_capabilities IMAP4rev1 ${o.capability};` : ""} server { ${listens} protocol imap; auth_http 127.0.0.1:9/auth; } }`,
    "",
  ].join("\n");
}

/** One Postern instance in its own directory. */
export class Instance {
  readonly dir: string;
  child: ChildProcess | undefined;
  stderr = "";
  exit: Promise<number | null> = Promise.resolve(null);

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), "postern-proc-"));
    // as /var/log/nginx: workers run as nobody when tests run as root, and
    // reopen their logs here on USR1 (mkdtemp's 0700 would stop them, as it would nginx's)
    chmodSync(this.dir, 0o755);
  }

  write(conf: string): void {
    writeFileSync(join(this.dir, "nginx.conf"), conf);
  }

  get pidPath(): string {
    return join(this.dir, "nginx.pid");
  }

  /** The pid file's content, or undefined. */
  pidText(): string | undefined {
    return existsSync(this.pidPath) ? readFileSync(this.pidPath, "utf8") : undefined;
  }

  log(): string {
    const p = join(this.dir, "error.log");
    return existsSync(p) ? readFileSync(p, "utf8") : "";
  }

  /** Starts `postern -p dir/ -c nginx.conf -e error.log` in the foreground (`node` switches and environment optional). */
  start(extraArgs: string[] = [], o: { nodeArgs?: string[]; env?: NodeJS.ProcessEnv } = {}): void {
    const args = [...(o.nodeArgs ?? []), POSTERN, "-p", this.dir + "/", "-c", "nginx.conf", "-e", "error.log", ...extraArgs];
    const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"], env: o.env ?? process.env });
    this.child = child;
    child.stderr.on("data", (d: Buffer) => (this.stderr += d.toString()));
    this.exit = new Promise((r) => child.on("exit", (code) => r(code)));
  }

  /** Starts and waits for the pid file; returns the master pid. */
  async up(extraArgs: string[] = [], o: { nodeArgs?: string[]; env?: NodeJS.ProcessEnv } = {}): Promise<number> {
    this.start(extraArgs, o);
    // start-up waits are generous: a CI machine running three test files at once can starve a
    // starting master for seconds (a run timed out at 8 s); a healthy start takes well under one
    const text = await waitFor("pid file", () => this.pidText() || undefined, START_WAIT_MS);
    return Number(text.trim());
  }

  /** Runs a one-shot command (e.g. -s reload) against this instance. */
  async command(args: string[]): Promise<{ code: number | null; stderr: string }> {
    const c = spawn(process.execPath, [POSTERN, "-p", this.dir + "/", "-c", "nginx.conf", "-e", "error.log", ...args], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    c.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((r) => c.on("exit", (x) => r(x)));
    return { code, stderr };
  }

  /** Stops whatever is left and removes the directory. */
  async cleanup(): Promise<void> {
    const pid = Number(this.pidText()?.trim());
    if (pid > 0)
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* gone */
      }
    if (this.child && this.child.exitCode === null) this.child.kill("SIGKILL");
    // workers notice the master's death through their IPC channel and exit
    await new Promise((r) => setTimeout(r, 100));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A line-based client. */
export class Client {
  readonly socket: net.Socket;
  #buf = "";
  #waiters: (() => void)[] = [];
  closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("data", (d) => {
      this.#buf += d.toString("latin1");
      for (const w of this.#waiters.splice(0)) w();
    });
    socket.on("close", () => {
      this.closed = true;
      for (const w of this.#waiters.splice(0)) w();
    });
    socket.on("error", () => {});
  }

  /** Connects; rejects with the socket error (e.g. ECONNREFUSED). */
  static connect(port: number): Promise<Client> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => resolve(new Client(s)));
      s.once("error", reject);
    });
  }

  /** The next line (without CRLF); rejects on close or after 5 s. */
  async line(): Promise<string> {
    const end = Date.now() + 5000;
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
        this.#waiters.push(r);
        setTimeout(r, 100);
      });
    }
  }

  async command(line: string): Promise<string> {
    this.socket.write(line + "\r\n");
    return this.line();
  }

  /** Sends a tagged command; returns the untagged lines and the tagged reply. */
  async tagged(tag: string, command: string): Promise<{ untagged: string[]; reply: string }> {
    this.socket.write(`${tag} ${command}\r\n`);
    const untagged: string[] = [];
    for (;;) {
      const l = await this.line();
      if (l.startsWith(`${tag} `)) return { untagged, reply: l };
      untagged.push(l);
    }
  }

  /** The `* CAPABILITY` line (which tells which configuration serves this connection). */
  async capability(): Promise<string> {
    const r = await this.tagged("c", "CAPABILITY");
    return r.untagged.find((l) => l.startsWith("* CAPABILITY ")) ?? "";
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Worker pids from the master's `start worker process N` lines. */
export function workerPids(log: string): number[] {
  return [...log.matchAll(/start worker process (\d+)/g)].map((m) => Number(m[1]));
}

/** Direct children of a process, read from /proc (all its threads' children lists). */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    try {
      for (const w of readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim().split(/\s+/)) if (w) out.push(Number(w));
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

/** The `Uid:`/`Gid:`/`Groups:` lines of /proc/PID/status as numbers (real, effective, saved, fs). */
export function procIds(pid: number): { uid: number[]; gid: number[]; groups: number[] } {
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  const nums = (name: string): number[] => (new RegExp(`^${name}:[ \\t]*(.*)$`, "m").exec(text)?.[1] ?? "").trim().split(/\s+/).filter(Boolean).map(Number);
  return { uid: nums("Uid"), gid: nums("Gid"), groups: nums("Groups") };
}

/** The inodes of the sockets a process has open (from /proc/PID/fd; none if it is gone). */
export function socketInodesOf(pid: number): Set<string> {
  const inodes = new Set<string>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return inodes;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  return inodes;
}

/** TCP ports in LISTEN state owned by any of the processes (socket inodes from /proc/PID/fd matched with /proc/net/tcp*). */
export function listeningPortsOf(pids: readonly number[]): Set<number> {
  const inodes = new Set(pids.flatMap((pid) => [...socketInodesOf(pid)]));
  const ports = new Set<number>();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    if (!existsSync(file)) continue;
    for (const line of readFileSync(file, "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] === "0A" && f[9] && inodes.has(f[9])) ports.add(parseInt(f[1]!.split(":")[1]!, 16));
    }
  }
  return ports;
}

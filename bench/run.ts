/**
 * The benchmark driver: nginx and Postern side by side, same mail
 * configuration, same certificates, one worker each, the server pinned to
 * one core and the load generator (plus the fake auth service and backend)
 * to the other. A third server, the Node floor (node-floor.ts), does the
 * least any Node proxy must do for each workload: what Postern adds and what
 * Node itself costs are then told apart. Workloads alternate nginx, floor,
 * Postern for `--rounds` rounds; the table shows medians of the raw rate and
 * of operations per second of server CPU (the steadier figure on a shared
 * machine), and the generator's CPU so a saturated generator is visible.
 * The hold workload shows memory per idle logged-in TLS session instead.
 *
 * The backend-TLS rows (proxy_ssl on | starttls) compare Postern with TLS to
 * the backend against Postern with a plaintext backend, in the same run:
 * nginx cannot talk TLS to a mail backend.
 *
 * `--shared-store` adds the shared-store rows (shared-store.ts): Postern
 * with its zones synced through Redis against the same zones node-local.
 *
 *   node dist/bench/run.js [--quick] [--rounds N] [--seconds S] [--warmup S] [--only name,=name] [--profile DIR]
 *                      [--observability [--postern-only] [--observe log|metrics] [--access-log-buffer SIZE]] [--shared-store]
 *                      [--instructions DIR] [--side-by-side]
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, writeFileSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import tls from "node:tls";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { AUTH_PATH_HEADER, AUTH_PATH_WORKLOADS, authPathRow } from "./auth-path.js";
import {
  SHARED_HEADER,
  SHARED_KINDS,
  SHARED_WORKLOADS,
  type SharedKind,
  sharedDirectives,
  sharedRow,
  sharedStoreUnavailable,
  startBenchRedis,
} from "./shared-store.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const args = process.argv.slice(2);
const quick = args.includes("--quick");
// quick: about 3 minutes, one round per workload (the full run's medians are the figures to quote)
const rounds = Number(valueOf("--rounds") ?? (quick ? 1 : 5));
const seconds = Number(valueOf("--seconds") ?? (quick ? 2 : 5));
/** `--only a,=b`: workloads whose name contains `a` or is exactly `b`. */
const only = valueOf("--only")?.split(",");
/** `--profile DIR`: Postern's processes write V8 CPU profiles there (node --cpu-prof). */
const profileDir = valueOf("--profile");
/** `--observability`: Postern is run a second time with an access log and metrics_listen, and a row compares the two. */
const observability = args.includes("--observability");
/** `--shared-store`: rows comparing the zones synced through Redis with node-local ones. */
const sharedStore = args.includes("--shared-store");
/** `--access-log-buffer SIZE`: the --observability server's access_log gets `buffer=SIZE flush=1s` (no write per line). */
const accessLogBuffer = valueOf("--access-log-buffer");
/** `--observe log|metrics`: the --observability server gets only the access log or only metrics_listen (both by default). */
const observeOnly = valueOf("--observe");
if (observeOnly !== undefined && observeOnly !== "log" && observeOnly !== "metrics") throw new Error("--observe takes log or metrics");
/** `--postern-only`: with --observability, only the two Postern kinds run (the on/off ratio in half the time). */
const posternOnly = args.includes("--postern-only");
/**
 * `--side-by-side` (with --observability --postern-only): the three Postern
 * kinds run at the same time, each on listeners of its own and with a load
 * generator of its own, instead of one after the other. This VM's speed
 * drifts from minute to minute; side by side, every kind meets the same drift, and
 * the ratio of their CPU per operation keeps only what differs between
 * them. Meant for the paced rows: the three servers share one core.
 */
const sideBySide = args.includes("--side-by-side");
if (sideBySide && !(observability && posternOnly)) throw new Error("--side-by-side needs --observability --postern-only");

/**
 * `--instructions DIR`: the Postern kinds run under valgrind's callgrind
 * (one process: master_process off), counting only the measured window;
 * each run prints the user-space instructions per operation and leaves its
 * profile in DIR (callgrind_annotate reads it). Deterministic where CPU
 * time on a shared VM is not, and about 20 times slower: use long rounds.
 */
const instructionsDir = valueOf("--instructions");
if (instructionsDir !== undefined) {
  // the server may run as another user (`user`)
  mkdirSync(instructionsDir, { recursive: true });
  chmodSync(instructionsDir, 0o1777);
}
const underCallgrind = (bin: ServerKind): boolean => instructionsDir !== undefined && bin.startsWith("postern");

/** `--warmup S`: load before every measured run, same workload, not counted (1 s by default). */
const WARMUP_SECONDS = Number(valueOf("--warmup") ?? 1);

function valueOf(flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}

interface Workload {
  readonly name: string;
  /** mailload arguments. */
  readonly load: readonly string[];
  /** Which listener of the config the workload uses. */
  readonly port: "imaps" | "imap" | "imapsRsa" | "imapBackendTls" | "imapBackendStarttls";
  /** Backend-TLS rows: Postern only, `port` (backend TLS) against this listener (plaintext backend). */
  readonly plainPort?: "imap";
  /** rate: operations per second (default); mbs: relayed MB/s; hold: KiB of server memory per idle session. */
  readonly measure?: "rate" | "mbs" | "hold";
  /**
   * The auth_http path rows: nginx and Postern only, both asking the costly
   * auth service (auth-cost-server.ts); `postern` holds Postern's extra mail
   * directives. Their table shows logins/s and CPU per login.
   */
  readonly authPath?: { readonly postern: string };
}

/**
 * Sessions held by the hold workload: two descriptors each in the server
 * (client and backend), under the open-file limit (ulimit -n) of every process.
 */
const HOLD_SESSIONS = Math.min(quick ? 2000 : 10000, Math.max(100, Math.floor((Number(execFileSync("sh", ["-c", "ulimit -n"]).toString().trim()) - 1000) / 2)));

/** Sessions held by the backend-TLS hold row: each login there costs a backend handshake too. */
const BACKEND_TLS_HOLD = Math.min(HOLD_SESSIONS, 1000);

const WORKLOADS: readonly Workload[] = [
  { name: "handshake ECDSA TLSv1.3", port: "imaps", load: ["--mode", "handshake", "--tls1.3", "--conns", "64"] },
  { name: "handshake ECDSA TLSv1.2", port: "imaps", load: ["--mode", "handshake", "--tls1.2", "--conns", "64"] },
  { name: "handshake RSA TLSv1.3", port: "imapsRsa", load: ["--mode", "handshake", "--tls1.3", "--conns", "64"] },
  { name: "handshake RSA TLSv1.2", port: "imapsRsa", load: ["--mode", "handshake", "--tls1.2", "--conns", "64"] },
  { name: "resume TLSv1.2 session id", port: "imaps", load: ["--mode", "handshake", "--tls1.2", "--resume", "id", "--conns", "64"] },
  { name: "resume TLSv1.3 ticket", port: "imaps", load: ["--mode", "handshake", "--tls1.3", "--resume", "ticket", "--conns", "64"] },
  { name: "IMAP STARTTLS", port: "imap", load: ["--mode", "starttls", "--conns", "64"] },
  { name: "login over TLS", port: "imaps", load: ["--mode", "login", "--tls", "--conns", "32"] },
  { name: "login plain", port: "imap", load: ["--mode", "login", "--conns", "32"] },
  // Paced rows: every server gets the same offered load, well under its saturation, so CPU per
  // operation compares like with like (a saturated server batches more events per turn). The
  // access log and metrics cost (--observability) is read from these.
  { name: "paced: handshake ECDSA TLSv1.3 at 200/s", port: "imaps", load: ["--mode", "handshake", "--tls1.3", "--conns", "64", "--rate", "200"] },
  { name: "paced: login over TLS at 150/s", port: "imaps", load: ["--mode", "login", "--tls", "--conns", "32", "--rate", "150"] },
  { name: "paced: login plain at 400/s", port: "imap", load: ["--mode", "login", "--conns", "32", "--rate", "400"] },
  { name: "relay MB/s (FETCH 1 MB, TLS)", port: "imaps", load: ["--mode", "fetch", "--tls", "--conns", "4"], measure: "mbs" },
  { name: "NOOP round trip (latency)", port: "imaps", load: ["--mode", "command", "--tls", "--conns", "16"] },
  { name: "latency: connect to greeting, TLSv1.3 (4 clients)", port: "imaps", load: ["--mode", "handshake", "--tls1.3", "--conns", "4"] },
  { name: "latency: STARTTLS to CAPABILITY (4 clients)", port: "imap", load: ["--mode", "starttls", "--conns", "4"] },
  ...AUTH_PATH_WORKLOADS.map((a) => ({ name: a.name, port: "imap" as const, load: ["--mode", "login", "--conns", "32"], authPath: { postern: a.postern } })),
  {
    name: `idle TLS sessions held (${HOLD_SESSIONS}), KiB each`,
    port: "imaps",
    load: ["--mode", "hold", "--tls", "--conns", String(HOLD_SESSIONS)],
    measure: "hold",
  },
  { name: "backend TLS (proxy_ssl on): login", port: "imapBackendTls", plainPort: "imap", load: ["--mode", "login", "--conns", "32"] },
  { name: "backend TLS (proxy_ssl starttls): login", port: "imapBackendStarttls", plainPort: "imap", load: ["--mode", "login", "--conns", "32"] },
  {
    name: "backend TLS (proxy_ssl on): relay MB/s (FETCH 1 MB)",
    port: "imapBackendTls",
    plainPort: "imap",
    load: ["--mode", "fetch", "--conns", "4"],
    measure: "mbs",
  },
  {
    name: "backend TLS (proxy_ssl starttls): relay MB/s (FETCH 1 MB)",
    port: "imapBackendStarttls",
    plainPort: "imap",
    load: ["--mode", "fetch", "--conns", "4"],
    measure: "mbs",
  },
  {
    name: `backend TLS (proxy_ssl on): idle sessions held (${BACKEND_TLS_HOLD}), KiB each`,
    port: "imapBackendTls",
    plainPort: "imap",
    load: ["--mode", "hold", "--conns", String(BACKEND_TLS_HOLD)],
    measure: "hold",
  },
];

/** postern-twin: Postern's own configuration run a second time (the control of --observability: what the bench reads between two identical servers). */
type ServerKind = "nginx" | "floor" | "postern" | "postern-obs" | "postern-twin" | SharedKind;
const SERVERS = ["nginx", "floor", "postern"] as const;

interface Ports {
  imaps: number;
  imap: number;
  imapsRsa: number;
  imapBackendTls: number;
  imapBackendStarttls: number;
  auth: number;
  backend: number;
  /** The costly auth service (auth_http path rows). */
  costlyAuth: number;
  backendTls: number;
  backendStarttls: number;
  metrics: number;
  /** The redis-server of the shared-store rows. */
  redis: number;
}

function freePorts(n: number): Promise<number[]> {
  return Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<number>((resolve) => {
          const s = createServer();
          s.listen(0, "127.0.0.1", () => {
            const port = (s.address() as { port: number }).port;
            s.close(() => resolve(port));
          });
        }),
    ),
  );
}

function makeCerts(dir: string): void {
  const run = (a: string[]) => execFileSync("openssl", a, { stdio: "ignore" });
  run([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    join(dir, "ec.key"),
    "-out",
    join(dir, "ec.crt"),
    "-days",
    "30",
    "-subj",
    "/CN=localhost",
  ]);
  run([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    join(dir, "rsa.key"),
    "-out",
    join(dir, "rsa.crt"),
    "-days",
    "30",
    "-subj",
    "/CN=localhost",
  ]);
}

/**
 * The ON/OFF per-CPU ratio of each round (the two runs of a round are back to
 * back, so a machine that drifts between rounds moves both): the median and a
 * 90% bootstrap interval of it. A ratio of medians hides how far the rounds
 * spread; this says what one run can and cannot resolve.
 */
function pairedRatios(on: readonly Sample[], off: readonly Sample[]): string {
  const r = on.map((s, i) => s.perCpu / off[i]!.perCpu);
  const boots: number[] = [];
  for (let b = 0; b < 2000; b++) boots.push(median(r.map(() => r[Math.floor(Math.random() * r.length)]!)));
  boots.sort((x, y) => x - y);
  const t = (x: number): string => x.toFixed(2);
  return `paired rounds: median ${t(median(r))}, 90% interval ${t(boots[100]!)} to ${t(boots[1899]!)} (${r.length} rounds)`;
}

function mailConfig(dir: string, p: Ports, bin: Exclude<ServerKind, "floor">, authPath?: Workload["authPath"]): string {
  const shared = bin === "postern-local" || bin === "postern-sync" ? sharedDirectives(bin, dir, p.redis) : undefined;
  const observed =
    bin === "postern-obs"
      ? (observeOnly === "metrics"
          ? ""
          : `  log_format bench '$remote_addr [$time_local] "$mail_login" $mail_auth_status $upstream_addr $mail_session_end $bytes_received $bytes_sent $session_time $ssl_protocol';
  access_log ${dir}/access.log bench${accessLogBuffer ? ` buffer=${accessLogBuffer} flush=1s` : ""};
`) +
        (observeOnly === "log"
          ? ""
          : `  metrics_listen 127.0.0.1:${p.metrics};
`)
      : "";
  const module = bin === "nginx" ? "load_module /usr/lib/nginx/modules/ngx_mail_module.so;\n" : "";
  const auth = authPath ? `auth_http 127.0.0.1:${p.costlyAuth}/auth; ${bin !== "nginx" ? authPath.postern : ""}` : `auth_http 127.0.0.1:${p.auth}/auth;`;
  return `${module}daemon off; master_process ${underCallgrind(bin) ? "off" : "on"}; worker_processes 1;
pid ${dir}/${bin}.pid; error_log ${dir}/${bin}.error.log error;
events { worker_connections 20000; }
mail {
  ${auth}
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache ${shared?.sessionCache ?? "shared:BENCH:20m"};
  ssl_certificate ${dir}/ec.crt; ssl_certificate_key ${dir}/ec.key;
  proxy_buffer 16k;
${observed}${shared?.extra ?? ""}  server { listen 127.0.0.1:${p.imaps} ssl; protocol imap; }
  server { listen 127.0.0.1:${p.imapsRsa} ssl; protocol imap; ssl_certificate ${dir}/rsa.crt; ssl_certificate_key ${dir}/rsa.key; }
  server { listen 127.0.0.1:${p.imap}; protocol imap; starttls on; }
${bin !== "nginx" ? backendTlsServers(dir, p) : ""}}
`;
}

/** Postern only: the listeners whose sessions go to the backend over TLS (the auth service routes them by X-Backend). */
function backendTlsServers(dir: string, p: Ports): string {
  const common = `proxy_ssl_trusted_certificate ${dir}/ec.crt; proxy_ssl_name localhost;`;
  return `  server { listen 127.0.0.1:${p.imapBackendTls}; protocol imap; auth_http_header X-Backend tls; proxy_ssl on; ${common} }
  server { listen 127.0.0.1:${p.imapBackendStarttls}; protocol imap; auth_http_header X-Backend starttls; proxy_ssl starttls; ${common} }
`;
}

/** A fast auth service: every login goes to the fake backend (its TLS listeners for X-Backend: tls / starttls). */
function startAuth(port: number, p: Ports): Server {
  const reply = (backend: number) => `HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: ${backend}\r\n\r\n`;
  const server = createServer((s) => {
    let seen = "";
    s.on("data", (d) => {
      seen += d.toString("latin1");
      if (!seen.includes("\r\n\r\n")) return;
      const route = /\r\nX-Backend: (\w+)/.exec(seen)?.[1];
      s.end(reply(route === "tls" ? p.backendTls : route === "starttls" ? p.backendStarttls : p.backend));
    });
    s.on("error", () => s.destroy());
  });
  server.listen(port, "127.0.0.1");
  return server;
}

/**
 * A fake IMAP backend: LOGIN by literals, NOOP, LOGOUT, FETCH of 1 MB; with
 * `tls`, implicit TLS or CAPABILITY + STARTTLS (then the same dialogue over TLS).
 */
function startBackend(port: number, tlsMode: "plain" | "tls" | "starttls" = "plain", dir = ""): Server {
  const body = Buffer.alloc(1 << 20, "x");
  const fetch = Buffer.concat([Buffer.from(`* 1 FETCH (BODY[] {${body.length}}\r\n`), body, Buffer.from(")\r\nf OK FETCH completed\r\n")]);
  const secureContext =
    tlsMode === "plain" ? undefined : tls.createSecureContext({ cert: readFileSync(join(dir, "ec.crt")), key: readFileSync(join(dir, "ec.key")) });
  const serve = (s: Socket, greet: boolean): void => {
    s.setNoDelay(true);
    if (greet) s.write("* OK bench backend ready\r\n");
    let buf: Buffer = Buffer.alloc(0);
    let command = ""; // the command so far, literals dropped
    let literal = 0;
    s.on("data", (d: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      for (;;) {
        if (literal > 0) {
          if (buf.length < literal) return;
          buf = buf.subarray(literal);
          literal = 0;
        }
        const eol = buf.indexOf("\r\n");
        if (eol < 0) return;
        const line = buf.subarray(0, eol).toString("latin1");
        buf = buf.subarray(eol + 2);
        const lit = /\{(\d+)\}$/.exec(line);
        command += line;
        if (lit) {
          literal = Number(lit[1]);
          s.write("+ go ahead\r\n");
          continue;
        }
        const [tag, verb = ""] = command.split(" ");
        command = "";
        switch (verb.toUpperCase()) {
          case "CAPABILITY":
            s.write(`* CAPABILITY IMAP4rev1${tlsMode === "starttls" && !(s instanceof tls.TLSSocket) ? " STARTTLS" : ""}\r\n${tag} OK done\r\n`);
            break;
          case "STARTTLS": {
            s.write(`${tag} OK Begin TLS\r\n`);
            s.removeAllListeners("data");
            const secure = new tls.TLSSocket(s, { isServer: true, secureContext: secureContext! });
            secure.on("error", () => secure.destroy());
            serve(secure, false);
            return;
          }
          case "LOGIN":
            s.write(`${tag} OK LOGIN completed\r\n`);
            break;
          case "FETCH":
            s.write(fetch);
            break;
          case "NOOP":
            s.write(`${tag} OK NOOP completed\r\n`);
            break;
          case "LOGOUT":
            s.end(`* BYE\r\n${tag} OK LOGOUT completed\r\n`);
            break;
          default:
            s.write(`${tag} BAD unknown\r\n`);
        }
      }
    });
    s.on("error", () => s.destroy());
  };
  const server =
    tlsMode === "tls"
      ? tls.createServer({ cert: readFileSync(join(dir, "ec.crt")), key: readFileSync(join(dir, "ec.key")) }, (s) => serve(s, true))
      : createServer((s: Socket) => serve(s, true));
  server.listen(port, "127.0.0.1");
  return server;
}

/** CPU seconds used so far by a process and its children (utime + stime from /proc). */
function cpuOfTree(pid: number): number {
  let total = 0;
  for (const [cpu] of countersOfTree(pid).values()) total += cpu!;
  return total;
}

/** Per process of the tree: CPU seconds (utime + stime), context switches (voluntary, involuntary) and minor faults. */
function countersOfTree(pid: number): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (const p of [pid, ...childPids(pid)]) {
    try {
      const f = readFileSync(`/proc/${p}/stat`, "utf8").split(") ")[1]!.split(" ");
      const status = readFileSync(`/proc/${p}/status`, "utf8");
      const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? 0);
      // utime + stime, switches, minor faults, stime
      out.set(p, [
        (Number(f[11]) + Number(f[12])) / 100,
        field("voluntary_ctxt_switches"),
        field("nonvoluntary_ctxt_switches"),
        Number(f[7]),
        Number(f[12]) / 100,
      ]);
    } catch {
      // exited
    }
  }
  return out;
}

/** Dumps the callgrind profile of `pid` (the measured window), stops counting, and returns the window's instructions. */
function instructionsOf(pid: number): number {
  const out = execFileSync("callgrind_control", ["--dump", String(pid)], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  execFileSync("callgrind_control", ["--instr=off", String(pid)], { stdio: "ignore" });
  const dumps = readdirSync(instructionsDir!).filter((f) => new RegExp(`\\.${pid}\\.\\d+$`).test(f));
  const last = dumps.sort((x, y) => Number(x.split(".").pop()) - Number(y.split(".").pop())).pop();
  const totals = last && /^totals: (\d+)/m.exec(readFileSync(join(instructionsDir!, last), "utf8"));
  if (!totals) throw new Error(`no callgrind dump of pid ${pid} in ${instructionsDir}: ${out.trim()}`);
  return Number(totals[1]);
}

function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

async function startServer(bin: ServerKind, dir: string, ports: Ports): Promise<ChildProcess> {
  const pidFile = join(dir, `${bin}.pid`);
  rmSync(pidFile, { force: true });
  let argv: string[];
  if (bin === "floor") {
    argv = [
      process.execPath,
      ...(profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}/floor`] : []),
      join(root, "dist", "bench", "node-floor.js"),
      JSON.stringify({ ...ports, dir, pidFile }),
    ];
  } else {
    const cmd = bin === "nginx" ? ["/usr/sbin/nginx"] : [process.execPath, join(root, "bin", "postern.js")];
    // --cpu-prof is refused in NODE_OPTIONS; forked workers inherit execArgv.
    if (bin === "postern" && profileDir) cmd.splice(1, 0, "--cpu-prof", `--cpu-prof-dir=${profileDir}`);
    if (bin === "postern-obs" && profileDir) cmd.splice(1, 0, "--cpu-prof", `--cpu-prof-dir=${profileDir}/obs`);
    // --smc-check: V8 rewrites its JIT code in place (stack and heap alike)
    if (underCallgrind(bin))
      cmd.unshift("valgrind", "--tool=callgrind", "--instr-atstart=no", "--smc-check=all-non-file", `--callgrind-out-file=${instructionsDir}/${bin}.%p`);
    argv = [...cmd, "-p", `${dir}/`, "-c", join(dir, `${bin}.conf`), "-e", join(dir, `${bin}.error.log`)];
  }
  const child = spawn("taskset", ["-c", "0", ...argv], { stdio: "ignore" });
  // under valgrind Node takes about a minute to start
  for (let i = 0; i < (underCallgrind(bin) ? 3000 : 100) && !existsSync(pidFile); i++) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 300));
  return child;
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
}

interface Sample {
  rate: number;
  perCpu: number;
  genCpu: number;
  p50: number;
  p99: number;
  mbs: number;
  errors: number;
  kibPerSession: number;
  /** auth_http path rows: CPU seconds of the auth service per login. */
  authCpuPerOp: number;
}

/** Resident memory of a process and its children, in bytes. */
function rssOfTree(pid: number): number {
  let total = 0;
  for (const p of [pid, ...childPids(pid)]) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, "utf8"));
      total += Number(m?.[1] ?? 0) * 1024;
    } catch {
      // exited
    }
  }
  return total;
}

/** Holds HOLD_SESSIONS logged-in sessions; the server's memory growth per session. */
async function holdOnce(child: ChildProcess, w: Workload, ports: Ports, loadgen: string): Promise<Sample> {
  const pid = child.pid!;
  const before = rssOfTree(pid);
  const gen = spawn("taskset", ["-c", "1", loadgen, "--port", String(ports[w.port]), ...w.load], { stdio: ["ignore", "pipe", "inherit"] });
  const held = await new Promise<{ held: number; errors: number }>((resolve) => {
    let out = "";
    const timer = setTimeout(() => resolve({ held: 0, errors: -1 }), 120_000);
    gen.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      const line = out.split("\n").find((l) => l.includes('"held"'));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line) as { held: number; errors: number });
      }
    });
  });
  await new Promise((r) => setTimeout(r, 1000));
  const after = rssOfTree(pid);
  gen.kill("SIGTERM");
  await new Promise((r) => gen.once("exit", r));
  if (process.env.BENCH_DEBUG) console.error("hold", JSON.stringify(held), before, after);
  const kib = held.held > 0 ? (after - before) / held.held / 1024 : Number.NaN;
  return { rate: 0, perCpu: 0, genCpu: 0, p50: 0, p99: 0, mbs: 0, errors: held.errors, kibPerSession: kib, authCpuPerOp: 0 };
}

async function runOnce(bin: ServerKind, w: Workload, dir: string, ports: Ports, loadgen: string, costlyAuth: ChildProcess): Promise<Sample> {
  if (bin !== "floor") writeFileSync(join(dir, `${bin}.conf`), mailConfig(dir, ports, bin, w.authPath));
  const child = await startServer(bin, dir, ports);
  if (w.measure === "hold") {
    try {
      return await holdOnce(child, w, ports, loadgen);
    } finally {
      await stopServer(child);
    }
  }
  // Warm-up, not measured: servers run for days, so the table shows them
  // after V8 has compiled the hot paths (nginx has nothing to warm).
  await runLoad(["-c", "1", loadgen, "--port", String(ports[w.port]), "--seconds", String(WARMUP_SECONDS), ...w.load]);
  const cpu0 = cpuOfTree(child.pid!);
  const counters0 = process.env.BENCH_DEBUG ? countersOfTree(child.pid!) : undefined;
  const auth0 = cpuOfTree(costlyAuth.pid!);
  if (underCallgrind(bin)) execFileSync("callgrind_control", ["--instr=on", String(child.pid)], { stdio: "ignore" });
  // asynchronously: the fake auth service and backend live in this process
  const out = await runLoad(["-c", "1", loadgen, "--port", String(ports[w.port]), "--seconds", String(seconds), ...w.load]);
  const cpu1 = cpuOfTree(child.pid!);
  const instructions = underCallgrind(bin) ? instructionsOf(child.pid!) : undefined;
  const counters1 = counters0 && countersOfTree(child.pid!);
  const auth1 = cpuOfTree(costlyAuth.pid!);
  await stopServer(child);
  const r = loadResult(out);
  const serverCpu = Math.max(cpu1 - cpu0, 0.01);
  debugCpu(bin, w, serverCpu, r, out);
  if (instructions !== undefined)
    console.log(
      `${bin} ${w.name}: ${(instructions / Math.max(r.ops, 1) / 1000).toFixed(1)}K instructions per operation (${r.ops} operations; ${instructionsDir}/${bin}.${child.pid}.*)`,
    );
  if (counters0 && counters1) debugCounters(child.pid!, counters0, counters1, r.ops);
  return sampleOf(r, serverCpu, r.ops > 0 ? (auth1 - auth0) / r.ops : Number.NaN);
}

/** BENCH_DEBUG: each process's CPU (and its kernel part), switches and faults per operation over the measured window. */
function debugCounters(master: number, counters0: Map<number, number[]>, counters1: Map<number, number[]>, ops: number): void {
  for (const [p, c1] of counters1) {
    const c0 = counters0.get(p) ?? [0, 0, 0, 0, 0];
    const perOp = c1.map((v, i) => (v - c0[i]!) / Math.max(ops, 1));
    console.error(
      `  pid ${p}${p === master ? " (master)" : ""}: per op ${(perOp[0]! * 1e6).toFixed(0)} µs CPU (${(perOp[4]! * 1e6).toFixed(0)} in the kernel), ${perOp[1]!.toFixed(2)} voluntary + ${perOp[2]!.toFixed(2)} involuntary switches, ${perOp[3]!.toFixed(2)} minor faults`,
    );
  }
}

/** What mailload prints last: one JSON line. */
interface LoadResult {
  ops: number;
  errors: number;
  seconds: number;
  rate: number;
  bytes: number;
  client_cpu: number;
  p50_ms: number;
  p99_ms: number;
}

function loadResult(out: string): LoadResult {
  const last = out.trim().split("\n").pop()!;
  if (!last.startsWith("{")) throw new Error(`the load generator printed no result: ${JSON.stringify(out)}`);
  return JSON.parse(last) as LoadResult;
}

function debugCpu(bin: ServerKind, w: Workload, serverCpu: number, r: LoadResult, out: string): void {
  if (process.env.BENCH_DEBUG) console.error(bin, w.name, `server CPU ${serverCpu.toFixed(2)} s, per CPU ${(r.ops / serverCpu).toFixed(0)}`, out.trim());
}

function sampleOf(r: LoadResult, serverCpu: number, authCpuPerOp: number): Sample {
  return {
    rate: r.rate,
    perCpu: r.ops / serverCpu,
    genCpu: r.client_cpu / r.seconds,
    p50: r.p50_ms,
    p99: r.p99_ms,
    mbs: r.bytes / r.seconds / 1e6,
    errors: r.errors,
    kibPerSession: 0,
    authCpuPerOp,
  };
}

/**
 * --side-by-side: the servers start together, are warmed up together and
 * measured over the same seconds, each with its own generator. The costly
 * auth service is shared, so no auth CPU per operation is reported.
 */
async function runSideBySide(bins: readonly ServerKind[], w: Workload, dir: string, portsOf: (bin: ServerKind) => Ports, loadgen: string): Promise<Sample[]> {
  const children: ChildProcess[] = [];
  try {
    for (const bin of bins) {
      writeFileSync(join(dir, `${bin}.conf`), mailConfig(dir, portsOf(bin), bin as Exclude<ServerKind, "floor">, w.authPath));
      children.push(await startServer(bin, dir, portsOf(bin)));
    }
    // a paced row's rate is shared among the servers: the core carries the same load as when they take turns
    const args = w.load.map((a, i) => (w.load[i - 1] === "--rate" ? String(Math.round(Number(a) / bins.length)) : a));
    const load = (bin: ServerKind, secs: number) => runLoad(["-c", "1", loadgen, "--port", String(portsOf(bin)[w.port]), "--seconds", String(secs), ...args]);
    await Promise.all(bins.map((bin) => load(bin, WARMUP_SECONDS)));
    const cpu0 = children.map((c) => cpuOfTree(c.pid!));
    const counters0 = process.env.BENCH_DEBUG ? children.map((c) => countersOfTree(c.pid!)) : undefined;
    const outs = await Promise.all(bins.map((bin) => load(bin, seconds)));
    const cpu1 = children.map((c) => cpuOfTree(c.pid!));
    const counters1 = counters0 && children.map((c) => countersOfTree(c.pid!));
    return bins.map((bin, i) => {
      const r = loadResult(outs[i]!);
      const serverCpu = Math.max(cpu1[i]! - cpu0[i]!, 0.01);
      debugCpu(bin, w, serverCpu, r, outs[i]!);
      if (counters0 && counters1) debugCounters(children[i]!.pid!, counters0[i]!, counters1[i]!, r.ops);
      return sampleOf(r, serverCpu, Number.NaN);
    });
  } finally {
    await Promise.all(children.map(stopServer));
  }
}

function runLoad(argv: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("taskset", argv, { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("exit", () => resolve(out));
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

async function main(): Promise<void> {
  // This process is the fake auth service and backend: on the generator's core, every thread of it, so
  // the server's core runs the server alone (unpinned, it took a tenth of that core, and the server
  // paid the context switches and the cold caches).
  execFileSync("taskset", ["-a", "-p", "-c", "1", String(process.pid)], { stdio: "ignore" });
  const dir = mkdtempSync(join(tmpdir(), "postern-bench-"));
  // Postern's workers write their profiles as the unprivileged user they run as
  if (profileDir)
    for (const d of [profileDir, join(profileDir, "obs")]) {
      mkdirSync(d, { recursive: true });
      chmodSync(d, 0o1777);
    }
  const build = join(root, "bench", ".build");
  mkdirSync(build, { recursive: true });
  const loadgen = join(build, "mailload");
  execFileSync("gcc", ["-O2", "-o", loadgen, join(root, "bench", "loadgen", "mailload.c"), "-lssl", "-lcrypto"]);
  makeCerts(dir);
  const [imaps, imap, imapsRsa, auth, backend, costly, imapBackendTls, imapBackendStarttls, backendTls, backendStarttls, metricsPort, redisPort] =
    await freePorts(12);
  const ports: Ports = {
    imaps: imaps!,
    imap: imap!,
    imapsRsa: imapsRsa!,
    imapBackendTls: imapBackendTls!,
    imapBackendStarttls: imapBackendStarttls!,
    auth: auth!,
    backend: backend!,
    costlyAuth: costly!,
    backendTls: backendTls!,
    backendStarttls: backendStarttls!,
    metrics: metricsPort!,
    redis: redisPort!,
  };
  // --side-by-side: the kinds run at the same time, so each but the first listens on ports of its own
  const own = sideBySide ? await freePorts(10) : [];
  const portsOf = (bin: ServerKind): Ports => {
    const k = bin === "postern-obs" ? 0 : bin === "postern-twin" ? 5 : -1;
    if (k < 0 || !sideBySide) return ports;
    const [imaps, imap, imapsRsa, imapBackendTls, imapBackendStarttls] = own.slice(k, k + 5) as [number, number, number, number, number];
    return { ...ports, imaps, imap, imapsRsa, imapBackendTls, imapBackendStarttls };
  };
  // with the load generator, on the second core
  const costlyAuth = spawn(
    "taskset",
    ["-c", "1", process.execPath, join(root, "dist", "bench", "auth-cost-server.js"), JSON.stringify({ port: costly, backend })],
    {
      stdio: "ignore",
    },
  );
  const authRows: string[] = [];
  for (const bin of ["nginx", "postern", "postern-obs", "postern-twin"] as const) writeFileSync(join(dir, `${bin}.conf`), mailConfig(dir, portsOf(bin), bin));
  const aux = [
    startAuth(ports.auth, ports),
    startBackend(ports.backend),
    startBackend(ports.backendTls, "tls", dir),
    startBackend(ports.backendStarttls, "starttls", dir),
  ];
  const rows: string[] = [];
  rows.push(
    "| workload | nginx | Node floor | Postern | Postern / nginx | nginx /cpu-s | floor /cpu-s | Postern /cpu-s | Postern / nginx per CPU | Postern / floor per CPU | generator CPU (nginx / floor / Postern) | p50 / p99 ms (nginx; floor; Postern) |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
  );
  const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : "-");
  const f2 = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : "-");
  const f0 = (x: number): string => (Number.isFinite(x) ? x.toFixed(0) : "-");
  const backendTlsRows: string[] = [];
  for (const w of WORKLOADS) {
    if (only && !only.some((o) => (o.startsWith("=") ? w.name === o.slice(1) : w.name.includes(o)))) continue;
    if (w.plainPort) {
      backendTlsRows.push(await backendTlsRow(w, dir, ports, loadgen, costlyAuth));
      console.log(backendTlsRows[backendTlsRows.length - 1]);
      continue;
    }
    const samples: Record<ServerKind, Sample[]> = {
      nginx: [],
      floor: [],
      postern: [],
      "postern-obs": [],
      "postern-twin": [],
      "postern-local": [],
      "postern-sync": [],
    };
    const kinds: readonly ServerKind[] = observability && w.measure !== "hold" ? [...SERVERS, "postern-obs", "postern-twin"] : SERVERS;
    const hold = w.measure === "hold";
    // memory is not noisy the way rates are: one round of the hold workload
    const servers = w.authPath ? kinds.filter((bin) => bin !== "floor") : posternOnly ? kinds.filter((bin) => bin.startsWith("postern")) : kinds;
    for (let i = 0; i < (hold ? 1 : rounds); i++) {
      if (sideBySide && !hold && !w.authPath) {
        const got = await runSideBySide(servers, w, dir, portsOf, loadgen);
        servers.forEach((bin, k) => samples[bin].push(got[k]!));
        continue;
      }
      // --postern-only: the order rotates from round to round (on, off, twin; off, twin, on; ...), so every kind runs
      // first, middle and last equally often and neither a drifting machine nor a position favours one
      const order = posternOnly ? servers.map((_, k) => servers[(k + i) % servers.length]!) : servers;
      for (const bin of order) samples[bin].push(await runOnce(bin, w, dir, ports, loadgen, costlyAuth));
    }
    const m = (bin: ServerKind, k: keyof Sample) => median(samples[bin].map((s) => s[k]));
    if (w.authPath) {
      authRows.push(
        authPathRow(
          w.name,
          m("nginx", "rate"),
          m("postern", "rate"),
          m("nginx", "perCpu"),
          m("postern", "perCpu"),
          m("nginx", "authCpuPerOp"),
          m("postern", "authCpuPerOp"),
        ),
      );
      console.log(authRows[authRows.length - 1]);
      continue;
    }
    if (hold) {
      const [a, f, b] = SERVERS.map((bin) => m(bin, "kibPerSession")) as [number, number, number];
      rows.push(`| ${w.name} | ${f1(a)} | ${f1(f)} | ${f1(b)} | ${f2(b / a)} (memory: lower is better, goal <= 1.5) | | | | | ${f2(b / f)} | | |`);
    } else {
      const key: keyof Sample = w.measure === "mbs" ? "mbs" : "rate";
      const [a, f, b] = SERVERS.map((bin) => m(bin, key)) as [number, number, number];
      const [ca, cf, cb] = SERVERS.map((bin) => m(bin, "perCpu")) as [number, number, number];
      const gen = SERVERS.map((bin) => `${f0(m(bin, "genCpu") * 100)}%`).join(" / ");
      const lat = SERVERS.map((bin) => `${f1(m(bin, "p50"))}/${f1(m(bin, "p99"))}`).join("; ");
      rows.push(
        `| ${w.name} | ${f1(a)} | ${f1(f)} | ${f1(b)} | ${f2(b / a)} | ${f0(ca)} | ${f0(cf)} | ${f0(cb)} | ${f2(cb / ca)} | ${f2(cb / cf)} | ${gen} | ${lat} |`,
      );
    }
    console.log(rows[rows.length - 1]);
    if (kinds.includes("postern-obs")) {
      const key: keyof Sample = w.measure === "mbs" ? "mbs" : "rate";
      const [off, on] = [m("postern", key), m("postern-obs", key)];
      const [cOff, cOn] = [m("postern", "perCpu"), m("postern-obs", "perCpu")];
      rows.push(
        `| ${w.name}: Postern with access_log + metrics_listen | | | ${f1(on)} | ${f2(on / off)} of Postern without | | | ${f0(cOn)} | ${f2(cOn / cOff)} of Postern without, per CPU; ${pairedRatios(samples["postern-obs"], samples.postern)} | | | |`,
      );
      console.log(rows[rows.length - 1]);
      const cTwin = m("postern-twin", "perCpu");
      rows.push(
        `| ${w.name}: control, Postern without them run twice | | | ${f1(m("postern-twin", key))} | ${f2(m("postern-twin", key) / off)} of the first | | | ${f0(cTwin)} | ${f2(cTwin / cOff)} of the first, per CPU; ${pairedRatios(samples["postern-twin"], samples.postern)} (what this run resolves) | | | |`,
      );
      console.log(rows[rows.length - 1]);
    }
  }
  const sharedRows = sharedStore ? await sharedStoreRows(dir, ports, loadgen, costlyAuth) : [];
  for (const s of aux) s.close();
  costlyAuth.kill("SIGTERM");
  const authTable = authRows.length > 0 ? `\n\n${AUTH_PATH_HEADER}\n${authRows.join("\n")}` : "";
  console.log(`\n${new Date().toISOString()} rounds=${rounds} seconds=${seconds}\n${rows.join("\n")}${authTable}`);
  if (backendTlsRows.length > 0) {
    console.log(
      `\n| workload (Postern only) | plaintext backend | backend TLS | TLS / plaintext | plaintext /cpu-s | TLS /cpu-s | TLS / plaintext per CPU |\n|---|---|---|---|---|---|---|\n${backendTlsRows.join("\n")}`,
    );
  }
  if (sharedRows.length > 0) console.log(`\n${SHARED_HEADER}\n${sharedRows.join("\n")}`);
}

/** The shared-store rows: node-local zones, then the same zones synced through Redis, alternating for `rounds` rounds. */
async function sharedStoreRows(dir: string, ports: Ports, loadgen: string, costlyAuth: ChildProcess): Promise<string[]> {
  const why = sharedStoreUnavailable(root, dir, mailConfig(dir, ports, "postern-sync"));
  if (why) {
    console.log(`\nshared-store rows skipped: ${why}`);
    return [];
  }
  const redis = await startBenchRedis(dir, ports.redis);
  const rows: string[] = [];
  try {
    for (const w of WORKLOADS.filter((x) => SHARED_WORKLOADS.includes(x.name))) {
      const samples: Record<SharedKind, Sample[]> = { "postern-local": [], "postern-sync": [] };
      for (let i = 0; i < rounds; i++) for (const kind of SHARED_KINDS) samples[kind].push(await runOnce(kind, w, dir, ports, loadgen, costlyAuth));
      const m = (kind: SharedKind, k: keyof Sample) => median(samples[kind].map((s) => s[k]));
      const of = (kind: SharedKind) => ({ rate: m(kind, "rate"), perCpu: m(kind, "perCpu") });
      rows.push(sharedRow(w.name, of("postern-local"), of("postern-sync"), m("postern-sync", "errors") + m("postern-local", "errors")));
      console.log(rows[rows.length - 1]);
    }
  } finally {
    redis.stop();
  }
  return rows;
}

/** One backend-TLS row: Postern to the plaintext backend, then to the TLS one, alternating for `rounds` rounds. */
async function backendTlsRow(w: Workload, dir: string, ports: Ports, loadgen: string, costlyAuth: ChildProcess): Promise<string> {
  const plain: Sample[] = [];
  const secure: Sample[] = [];
  const hold = w.measure === "hold";
  for (let i = 0; i < (hold ? 1 : rounds); i++) {
    plain.push(await runOnce("postern", { ...w, port: w.plainPort! }, dir, ports, loadgen, costlyAuth));
    secure.push(await runOnce("postern", w, dir, ports, loadgen, costlyAuth));
  }
  const m = (xs: Sample[], k: keyof Sample) => median(xs.map((s) => s[k]));
  const f = (x: number, d = 1): string => (Number.isFinite(x) ? x.toFixed(d) : "-");
  const key: keyof Sample = hold ? "kibPerSession" : w.measure === "mbs" ? "mbs" : "rate";
  const [a, b] = [m(plain, key), m(secure, key)];
  const errors = m(secure, "errors");
  if (hold) return `| ${w.name} | ${f(a)} | ${f(b)} | ${f(b / a, 2)} (memory) | | | |${errors !== 0 ? ` errors ${errors}` : ""}`;
  const [ca, cb] = [m(plain, "perCpu"), m(secure, "perCpu")];
  return `| ${w.name} | ${f(a)} | ${f(b)} | ${f(b / a, 2)} | ${f(ca, 0)} | ${f(cb, 0)} | ${f(cb / ca, 2)} |${errors !== 0 ? ` errors ${errors}` : ""}`;
}

await main();

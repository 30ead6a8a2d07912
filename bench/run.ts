/**
 * The benchmark driver: nginx and Postern side by side, same mail
 * configuration, same certificates, one worker each, the server pinned to
 * one core and the load generator (plus the fake auth service and backend)
 * to the other. Workloads alternate A B A B for `--rounds` rounds; the table
 * shows medians of the raw rate and of operations per second of server CPU
 * (the steadier figure on a shared machine), and the generator's CPU so a
 * saturated generator is visible.
 *
 *   node dist/bench/run.js [--quick] [--rounds N] [--seconds S] [--only name,name] [--profile DIR]
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, existsSync, mkdirSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const args = process.argv.slice(2);
const quick = args.includes("--quick");
const rounds = Number(valueOf("--rounds") ?? (quick ? 3 : 5));
const seconds = Number(valueOf("--seconds") ?? (quick ? 2 : 5));
const only = valueOf("--only")?.split(",");
/** `--profile DIR`: Postern's processes write V8 CPU profiles there (node --cpu-prof). */
const profileDir = valueOf("--profile");

function valueOf(flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}

interface Workload {
  readonly name: string;
  /** mailload arguments; PORT is replaced. */
  readonly load: readonly string[];
  /** Which listener of the config the workload uses. */
  readonly port: "imaps" | "imap" | "imapsRsa";
}

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
  { name: "relay MB/s (FETCH 1 MB, TLS)", port: "imaps", load: ["--mode", "fetch", "--tls", "--conns", "4"] },
  { name: "NOOP round trip (latency)", port: "imaps", load: ["--mode", "command", "--tls", "--conns", "16"] },
];

interface Ports { imaps: number; imap: number; imapsRsa: number; auth: number; backend: number }

function freePorts(n: number): Promise<number[]> {
  return Promise.all(Array.from({ length: n }, () => new Promise<number>((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  })));
}

function makeCerts(dir: string): void {
  const run = (a: string[]) => execFileSync("openssl", a, { stdio: "ignore" });
  run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", join(dir, "ec.key"), "-out", join(dir, "ec.crt"), "-days", "30", "-subj", "/CN=localhost"]);
  run(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", join(dir, "rsa.key"), "-out", join(dir, "rsa.crt"), "-days", "30", "-subj", "/CN=localhost"]);
}

function mailConfig(dir: string, p: Ports, bin: "nginx" | "postern"): string {
  const module = bin === "nginx" ? "load_module /usr/lib/nginx/modules/ngx_mail_module.so;\n" : "";
  return `${module}daemon off; master_process on; worker_processes 1;
pid ${dir}/${bin}.pid; error_log ${dir}/${bin}.error.log error;
events { worker_connections 20000; }
mail {
  auth_http 127.0.0.1:${p.auth}/auth;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:BENCH:20m;
  ssl_certificate ${dir}/ec.crt; ssl_certificate_key ${dir}/ec.key;
  proxy_buffer 16k;
  server { listen 127.0.0.1:${p.imaps} ssl; protocol imap; }
  server { listen 127.0.0.1:${p.imapsRsa} ssl; protocol imap; ssl_certificate ${dir}/rsa.crt; ssl_certificate_key ${dir}/rsa.key; }
  server { listen 127.0.0.1:${p.imap}; protocol imap; starttls on; }
}
`;
}

/** A fast auth service: every login goes to the fake backend. */
function startAuth(port: number, backend: number): Server {
  const reply = `HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: ${backend}\r\n\r\n`;
  const server = createServer((s) => {
    let seen = "";
    s.on("data", (d) => {
      seen += d.toString("latin1");
      if (seen.includes("\r\n\r\n")) s.end(reply);
    });
    s.on("error", () => s.destroy());
  });
  server.listen(port, "127.0.0.1");
  return server;
}

/** A fake IMAP backend: LOGIN by literals, NOOP, LOGOUT, FETCH of 1 MB. */
function startBackend(port: number): Server {
  const body = Buffer.alloc(1 << 20, "x");
  const fetch = Buffer.concat([Buffer.from(`* 1 FETCH (BODY[] {${body.length}}\r\n`), body, Buffer.from(")\r\nf OK FETCH completed\r\n")]);
  const server = createServer((s: Socket) => {
    s.setNoDelay(true);
    s.write("* OK bench backend ready\r\n");
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
          case "LOGIN": s.write(`${tag} OK LOGIN completed\r\n`); break;
          case "FETCH": s.write(fetch); break;
          case "NOOP": s.write(`${tag} OK NOOP completed\r\n`); break;
          case "LOGOUT": s.end(`* BYE\r\n${tag} OK LOGOUT completed\r\n`); break;
          default: s.write(`${tag} BAD unknown\r\n`);
        }
      }
    });
    s.on("error", () => s.destroy());
  });
  server.listen(port, "127.0.0.1");
  return server;
}

/** CPU seconds used so far by a process and its children (utime + stime from /proc). */
function cpuOfTree(pid: number): number {
  let total = 0;
  const ticks = 100;
  const pids = [pid, ...childPids(pid)];
  for (const p of pids) {
    try {
      const f = readFileSync(`/proc/${p}/stat`, "utf8").split(") ")[1]!.split(" ");
      total += (Number(f[11]) + Number(f[12])) / ticks;
    } catch {
      // exited
    }
  }
  return total;
}

function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

async function startServer(bin: "nginx" | "postern", dir: string): Promise<ChildProcess> {
  const conf = join(dir, `${bin}.conf`);
  const cmd = bin === "nginx" ? ["/usr/sbin/nginx"] : [process.execPath, join(root, "bin", "postern.js")];
  // --cpu-prof is refused in NODE_OPTIONS; forked workers inherit execArgv.
  if (bin === "postern" && profileDir) cmd.splice(1, 0, "--cpu-prof", `--cpu-prof-dir=${profileDir}`);
  const child = spawn("taskset", ["-c", "0", ...cmd, "-p", `${dir}/`, "-c", conf, "-e", join(dir, `${bin}.error.log`)], { stdio: "ignore" });
  const pidFile = join(dir, `${bin}.pid`);
  for (let i = 0; i < 100 && !existsSync(pidFile); i++) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 300));
  return child;
}

async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
}

interface Sample { rate: number; perCpu: number; genCpu: number; p50: number; p99: number; mbs: number; errors: number }

async function runOnce(bin: "nginx" | "postern", w: Workload, dir: string, ports: Ports, loadgen: string): Promise<Sample> {
  const child = await startServer(bin, dir);
  const cpu0 = cpuOfTree(child.pid!);
  // asynchronously: the fake auth service and backend live in this process
  const out = await runLoad(["-c", "1", loadgen, "--port", String(ports[w.port]), "--seconds", String(seconds), ...w.load]);
  const cpu1 = cpuOfTree(child.pid!);
  await stopServer(child);
  if (process.env.BENCH_DEBUG) console.error(bin, w.name, out.trim());
  const r = JSON.parse(out.trim().split("\n").pop()!) as { ops: number; errors: number; seconds: number; rate: number; bytes: number; client_cpu: number; p50_ms: number; p99_ms: number };
  const serverCpu = Math.max(cpu1 - cpu0, 0.01);
  return { rate: r.rate, perCpu: r.ops / serverCpu, genCpu: r.client_cpu / r.seconds, p50: r.p50_ms, p99: r.p99_ms, mbs: r.bytes / r.seconds / 1e6, errors: r.errors };
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
  const dir = mkdtempSync(join(tmpdir(), "postern-bench-"));
  const build = join(root, "bench", ".build");
  mkdirSync(build, { recursive: true });
  const loadgen = join(build, "mailload");
  execFileSync("gcc", ["-O2", "-o", loadgen, join(root, "bench", "loadgen", "mailload.c"), "-lssl", "-lcrypto"]);
  makeCerts(dir);
  const [imaps, imap, imapsRsa, auth, backend] = await freePorts(5);
  const ports: Ports = { imaps: imaps!, imap: imap!, imapsRsa: imapsRsa!, auth: auth!, backend: backend! };
  for (const bin of ["nginx", "postern"] as const) writeFileSync(join(dir, `${bin}.conf`), mailConfig(dir, ports, bin));
  const aux = [startAuth(ports.auth, ports.backend), startBackend(ports.backend)];
  const rows: string[] = [];
  const header = "| workload | nginx | Postern | ratio | nginx /cpu-s | Postern /cpu-s | ratio per CPU | generator CPU | p50 / p99 ms (nginx; Postern) |";
  rows.push(header, "|---|---|---|---|---|---|---|---|---|");
  for (const w of WORKLOADS) {
    if (only && !only.some((o) => w.name.includes(o))) continue;
    const samples: Record<"nginx" | "postern", Sample[]> = { nginx: [], postern: [] };
    for (let i = 0; i < rounds; i++) {
      for (const bin of ["nginx", "postern"] as const) samples[bin].push(await runOnce(bin, w, dir, ports, loadgen));
    }
    const m = (bin: "nginx" | "postern", k: keyof Sample) => median(samples[bin].map((s) => s[k]));
    const key: keyof Sample = w.name.startsWith("relay") ? "mbs" : "rate";
    const a = m("nginx", key), b = m("postern", key);
    const ca = m("nginx", "perCpu"), cb = m("postern", "perCpu");
    rows.push(`| ${w.name} | ${a.toFixed(1)} | ${b.toFixed(1)} | ${(b / a).toFixed(2)} | ${ca.toFixed(0)} | ${cb.toFixed(0)} | ${(cb / ca).toFixed(2)} | ${(m("nginx", "genCpu") * 100).toFixed(0)}% / ${(m("postern", "genCpu") * 100).toFixed(0)}% | ${m("nginx", "p50").toFixed(1)}/${m("nginx", "p99").toFixed(1)}; ${m("postern", "p50").toFixed(1)}/${m("postern", "p99").toFixed(1)} |`);
    console.log(rows[rows.length - 1]);
  }
  for (const s of aux) s.close();
  console.log(`\n${new Date().toISOString()} rounds=${rounds} seconds=${seconds}\n${rows.join("\n")}`);
}

await main();

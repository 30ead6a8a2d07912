/**
 * Soak and reload-under-load runs against a running Postern (NOT part of the
 * test suite; see docs/reliability.md).
 *
 *   npx tsc -p . && node dist/bench/soak.js soak [--sessions 100000] [--concurrency 32] [--fault-rate 0.02] [--size 65536]
 *   npx tsc -p . && node dist/bench/soak.js reload [--hups 20] [--interval-ms 500] [--concurrency 16]
 *   add --nginx to run the same load against nginx 1.22.1 for comparison
 *
 * soak: N complete sessions over TLS (implicit TLS and STARTTLS, IMAP, POP3,
 * SMTP): login through auth_http, a transfer checked by SHA-256 (IMAP FETCH,
 * POP3 RETR, SMTP DATA as received by the backend), logout; mixed with
 * injected faults (refused logins, backend down, auth service garbage,
 * hostile bytes) whose replies are checked too.
 * reload: sustained logins and transfers while the master gets HUPs; every
 * connection must be accepted, every session must succeed, no byte may differ.
 * Both print a summary and exit non-zero when a criterion fails.
 */
import { readdirSync } from "node:fs";
import { createHash } from "node:crypto";
import { MailClient } from "../test/support/client.js";
import { makeMessage } from "../test/support/fake-backend.js";
import { startNginx } from "../test/support/nginx.js";
import { startPostern } from "../test/support/postern.js";
import { freePort } from "../test/support/ports.js";
import { PASSWORD, PORTS, USER, rssBytes, severeLines, startBed, workerPids, type Bed, type PortName, type Protocol } from "../test/hostile/env.js";
import { mutateBytes } from "../test/fuzz/fuzz-support.js";

interface Args {
  mode: "soak" | "reload";
  sessions: number;
  concurrency: number;
  faultRate: number;
  size: number;
  hups: number;
  intervalMs: number;
  nginx: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { mode: "soak", sessions: 100000, concurrency: 32, faultRate: 0.02, size: 65536, hups: 20, intervalMs: 500, nginx: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const v = (): number => Number(argv[++i]);
    if (k === "soak" || k === "reload") a.mode = k;
    else if (k === "--sessions") a.sessions = v();
    else if (k === "--concurrency") a.concurrency = v();
    else if (k === "--fault-rate") a.faultRate = v();
    else if (k === "--size") a.size = v();
    else if (k === "--hups") a.hups = v();
    else if (k === "--interval-ms") a.intervalMs = v();
    else if (k === "--nginx") a.nginx = true;
    else throw new Error(`unknown argument ${k}`);
  }
  return a;
}

const sha = (s: string): string => createHash("sha256").update(s, "latin1").digest("hex");
const b64 = (s: string): string => Buffer.from(s, "latin1").toString("base64");

/** Counters of one run. */
interface Stats {
  ok: number;
  failed: number;
  refused: number;
  corrupted: number;
  faults: number;
  faultsAsExpected: number;
  bytes: number;
  errors: Map<string, number>;
}

function newStats(): Stats {
  return { ok: 0, failed: 0, refused: 0, corrupted: 0, faults: 0, faultsAsExpected: 0, bytes: 0, errors: new Map() };
}

function note(stats: Stats, e: unknown): void {
  const msg = (e as Error).message.split("\n")[0]!.replace(/\d+/g, "N").slice(0, 120);
  stats.errors.set(msg, (stats.errors.get(msg) ?? 0) + 1);
}

/** Connects to a port; STARTTLS ports are upgraded first. Returns the client after the greeting (SMTP: after EHLO). */
async function open(bed: Bed, name: PortName, protocol: Protocol, stats: Stats): Promise<MailClient> {
  const tls = PORTS.find((p) => p.name === name)!.tls;
  let c: MailClient;
  try {
    c = await MailClient.connect({ port: bed.ports[name], timeoutMs: 15000, ...(tls ? { tls: {} } : {}) });
  } catch (e) {
    if (/ECONNREFUSED|ECONNRESET/.test((e as Error).message)) stats.refused++;
    throw e;
  }
  await c.readLine();
  if (protocol === "smtp") {
    await c.send("EHLO soak.example\r\n");
    await c.read(/^250 .*\r\n/m);
  }
  if (!tls) {
    await c.send(protocol === "imap" ? "t1 STARTTLS\r\n" : protocol === "pop3" ? "STLS\r\n" : "STARTTLS\r\n");
    await c.readLine();
    await c.startTls();
    if (protocol === "smtp") {
      await c.send("EHLO soak.example\r\n");
      await c.read(/^250 .*\r\n/m);
    }
  }
  return c;
}

/** One complete good session with a checksummed transfer; throws on any deviation. */
async function goodSession(bed: Bed, name: PortName, size: number, stats: Stats): Promise<void> {
  const protocol = PORTS.find((p) => p.name === name)!.protocol;
  const expected = makeMessage(size);
  const c = await open(bed, name, protocol, stats);
  try {
    if (protocol === "imap") {
      await c.send(`a1 LOGIN ${USER} ${PASSWORD}\r\n`);
      if (!/^a1 OK/m.test(await c.read(/^a1 .*\r\n/m))) throw new Error("IMAP login failed");
      await c.send("a2 FETCH 1 BODY[]\r\n");
      const head = await c.read(/\{\d+\}\r\n/);
      const len = Number(/\{(\d+)\}\r\n$/.exec(head)![1]);
      const body = await c.read(new RegExp(`^[\\s\\S]{${len}}`));
      await c.read(/^a2 .*\r\n/m);
      if (sha(body) !== sha(expected)) { stats.corrupted++; throw new Error("IMAP body checksum mismatch"); }
      stats.bytes += len;
      await c.send("a3 LOGOUT\r\n");
      await c.read(/^a3 .*\r\n/m);
    } else if (protocol === "pop3") {
      await c.send(`USER ${USER}\r\n`);
      await c.readLine();
      await c.send(`PASS ${PASSWORD}\r\n`);
      if (!(await c.readLine()).startsWith("+OK")) throw new Error("POP3 login failed");
      await c.send("RETR 1\r\n");
      await c.readLine();
      const raw = await c.read(/\r\n\.\r\n/);
      const body = raw.slice(0, -3).replace(/^\.\./gm, ".");
      if (sha(body) !== sha(expected)) { stats.corrupted++; throw new Error("POP3 body checksum mismatch"); }
      stats.bytes += body.length;
      await c.send("QUIT\r\n");
      await c.readLine();
    } else {
      await c.send(`AUTH PLAIN ${b64(`\0${USER}\0${PASSWORD}`)}\r\n`);
      if (!(await c.readLine()).startsWith("235")) throw new Error("SMTP login failed");
      const id = `${Date.now()}-${Math.random()}`;
      const message = `Message-Id: <${id}>\r\n${expected}`;
      await c.send("MAIL FROM:<soak@example.com>\r\nRCPT TO:<sink@example.com>\r\nDATA\r\n");
      await c.readLine();
      await c.readLine();
      await c.readLine();
      await c.send(`${message.replace(/^\./gm, "..")}.\r\n`);
      if (!(await c.readLine()).startsWith("250")) throw new Error("SMTP DATA not accepted");
      smtpSent.set(id, sha(message));
      stats.bytes += message.length;
      await c.send("QUIT\r\n");
      await c.readLine();
    }
  } finally {
    c.close();
  }
}

/** What the SMTP backend must have received: Message-Id -> SHA-256. */
const smtpSent = new Map<string, string>();

/** Compares what the fake SMTP backend received with what was sent. */
function checkSmtpBackend(bed: Bed, stats: Stats): void {
  const got = new Map<string, string>();
  for (const conn of bed.smtp.connections) {
    for (const m of conn.messages) {
      const text = m.toString("latin1");
      const id = /^Message-Id: <([^>]+)>/.exec(text)?.[1];
      if (id) got.set(id, sha(text));
    }
  }
  for (const [id, hash] of smtpSent) if (got.get(id) !== hash) stats.corrupted++;
}

/** One injected fault; returns true when the proxy answered as expected. */
async function faultSession(bed: Bed, rand: number, stats: Stats): Promise<boolean> {
  const kinds = ["refused", "backend-down", "auth-garbage", "hostile"] as const;
  const kind = kinds[Math.floor(rand * kinds.length)]!;
  const name = (["imaps", "pop3s", "smtps"] as const)[Math.floor(rand * 1000) % 3]!;
  const protocol = PORTS.find((p) => p.name === name)!.protocol;
  const c = await open(bed, name, protocol, stats);
  try {
    if (kind === "hostile") {
      await c.send(mutateBytes(Buffer.from(protocol === "imap" ? `a1 LOGIN ${USER} ${PASSWORD}\r\n` : "NOOP\r\n"), Math.random));
      await c.readAll(20);
      return true;
    }
    const login = kind;
    if (protocol === "imap") await c.send(`f1 LOGIN ${login} x\r\n`);
    else if (protocol === "pop3") { await c.send(`USER ${login}\r\n`); await c.readLine(); await c.send("PASS x\r\n"); }
    else await c.send(`AUTH PLAIN ${b64(`\0${login}\0x`)}\r\n`);
    const reply = await c.readLine();
    const want = kind === "refused"
      ? { imap: /^f1 NO /, pop3: /^-ERR /, smtp: /^535 / }[protocol]
      : { imap: /^\* BAD internal server error/, pop3: /^-ERR internal server error/, smtp: /^451 4\.3\.2 / }[protocol];
    return want.test(reply);
  } finally {
    c.close();
  }
}

async function startSoakBed(args: Args): Promise<{ bed: Bed; downPort: number }> {
  const downPort = await freePort(); // nothing listens there
  const bed = await startBed({
    start: args.nginx ? startNginx : startPostern,
    timeout: "30s",
    proxyOptions: { workerProcesses: 2, events: "worker_connections 4096;" },
    backends: { imap: { message: args.size }, pop3: { message: args.size } },
    auth: (fakes) => (request) => {
      const user = request.header("Auth-User");
      if (user === "refused") return { headers: [["Auth-Status", "Invalid login or password"], ["Auth-Wait", "0"]] };
      if (user === "auth-garbage") return "\x00garbage\r\n\r\n";
      const protocol = request.header("Auth-Protocol") as Protocol;
      const port = user === "backend-down" ? downPort : fakes[protocol].port;
      return { headers: [["Auth-Status", "OK"], ["Auth-Server", "127.0.0.1"], ["Auth-Port", String(port)]] };
    },
  });
  return { bed, downPort };
}

function summary(title: string, stats: Stats, bed: Bed, started: number, extra: Record<string, string | number>): void {
  const secs = (Date.now() - started) / 1000;
  const severe = severeLines(bed.proxy.errorLog(), bed.proxy.kind);
  console.log(`\n== ${title} (${bed.proxy.kind}) ==`);
  const rows: Record<string, string | number> = {
    "sessions ok": stats.ok, "sessions failed": stats.failed, "connections refused": stats.refused,
    "corrupted transfers": stats.corrupted, "faults injected": stats.faults, "faults answered as expected": stats.faultsAsExpected,
    "payload bytes checked": stats.bytes, "duration s": secs.toFixed(1), "sessions/s": ((stats.ok + stats.faults) / secs).toFixed(1),
    "alert/crit log lines": severe.length, ...extra,
  };
  for (const [k, v] of Object.entries(rows)) console.log(`${k.padEnd(30)} ${v}`);
  for (const [msg, n] of stats.errors) console.log(`  error x${n}: ${msg}`);
  for (const l of severe.slice(0, 10)) console.log(`  ${l}`);
}

async function soak(args: Args): Promise<boolean> {
  const { bed } = await startSoakBed(args);
  const stats = newStats();
  const rss = (): string => workerPids(bed.proxy.pid).map((p) => `${(rssBytes(p) / 1048576).toFixed(0)}M`).join("/");
  const rssTotal = (): number => workerPids(bed.proxy.pid).reduce((t, p) => t + rssBytes(p), 0);
  // open descriptors of the workers: the same when idle at the end as at the start
  const fds = (): number => workerPids(bed.proxy.pid).reduce((t, p) => t + readdirSync(`/proc/${p}/fd`).length, 0);
  const rssStart = rss();
  const fdStart = fds();
  // memory after warm-up (caches and JIT filled): the end must not be above it
  let rssWarm = 0;
  const started = Date.now();
  let next = 0;
  try {
    const worker = async (): Promise<void> => {
      while (next < args.sessions) {
        const n = next++;
        const r = Math.random();
        try {
          if (r < args.faultRate) {
            stats.faults++;
            if (await faultSession(bed, r / args.faultRate, stats)) stats.faultsAsExpected++;
          } else {
            await goodSession(bed, PORTS[n % PORTS.length]!.name, args.size, stats);
            stats.ok++;
          }
        } catch (e) {
          stats.failed++;
          note(stats, e);
        }
        if (n % 5000 === 0 && n > 0) console.log(`.. ${n} sessions, ${stats.failed} failed, worker RSS ${rss()}`);
        if (n === Math.min(10000, Math.floor(args.sessions / 4))) rssWarm = rssTotal();
      }
    };
    await Promise.all(Array.from({ length: args.concurrency }, worker));
    await new Promise((r) => setTimeout(r, 2000));
    checkSmtpBackend(bed, stats);
    const fdEnd = fds();
    const rssEnd = rssTotal();
    const memoryOk = rssWarm === 0 || rssEnd <= rssWarm * 1.25;
    summary("soak", stats, bed, started, {
      "worker RSS start": rssStart, "worker RSS after warm-up": `${(rssWarm / 1048576).toFixed(0)}M (total)`,
      "worker RSS end (idle)": `${rss()} (${memoryOk ? "not above warm-up + 25%" : "GREW"})`,
      "worker fds start / end (idle)": `${fdStart} / ${fdEnd}${fdEnd > fdStart + 2 ? " LEAK" : ""}`,
    });
    return stats.failed === 0 && stats.corrupted === 0 && stats.refused === 0 && stats.faults === stats.faultsAsExpected
      && severeLines(bed.proxy.errorLog(), bed.proxy.kind).length === 0 && fdEnd <= fdStart + 2 && memoryOk;
  } finally {
    await bed.stop();
  }
}

async function reload(args: Args): Promise<boolean> {
  const { bed } = await startSoakBed({ ...args, faultRate: 0 });
  const stats = newStats();
  const started = Date.now();
  let stop = false;
  let hups = 0;
  try {
    const worker = async (w: number): Promise<void> => {
      for (let n = w; !stop; n += args.concurrency) {
        try {
          await goodSession(bed, PORTS[n % PORTS.length]!.name, args.size, stats);
          stats.ok++;
        } catch (e) {
          stats.failed++;
          note(stats, e);
        }
      }
    };
    const load = Promise.all(Array.from({ length: args.concurrency }, (_, w) => worker(w)));
    await new Promise((r) => setTimeout(r, 1000));
    for (; hups < args.hups; hups++) {
      bed.proxy.signal("SIGHUP");
      await new Promise((r) => setTimeout(r, args.intervalMs));
    }
    await new Promise((r) => setTimeout(r, 1000));
    stop = true;
    await load;
    await new Promise((r) => setTimeout(r, 500));
    checkSmtpBackend(bed, stats);
    const reconfiguring = bed.proxy.errorLog().split("\n").filter((l) => /: reconfiguring$/.test(l)).length;
    summary("reload under load", stats, bed, started, { "HUPs sent": hups, "`reconfiguring` log lines": reconfiguring });
    return stats.failed === 0 && stats.corrupted === 0 && stats.refused === 0 && reconfiguring === hups
      && severeLines(bed.proxy.errorLog(), bed.proxy.kind).length === 0;
  } finally {
    await bed.stop();
  }
}

const args = parseArgs(process.argv.slice(2));
const passed = args.mode === "soak" ? await soak(args) : await reload(args);
console.log(passed ? "\nPASS" : "\nFAIL");
process.exitCode = passed ? 0 : 1;

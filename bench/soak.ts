/**
 * Soak and reload-under-load runs against a running Postern (NOT part of the
 * test suite; see docs/reliability.md).
 *
 *   npx tsc -p . && node dist/bench/soak.js soak [--sessions 100000] [--concurrency 32] [--fault-rate 0.02] [--size 65536] [--keep-snapshots]
 *   npx tsc -p . && node dist/bench/soak.js reload [--hups 20] [--interval-ms 500] [--concurrency 16]
 *   add --nginx to run the same load against nginx 1.22.1 for comparison
 *
 * soak: N complete sessions over TLS (implicit TLS and STARTTLS, IMAP, POP3,
 * SMTP): login through auth_http, a transfer checked by SHA-256 (IMAP FETCH,
 * POP3 RETR, SMTP DATA as received by the backend), logout; mixed with
 * injected faults (refused logins, backend down, auth service garbage,
 * hostile bytes) whose replies are checked too. One good session in four
 * uses TLS 1.2 (half of those resume the port's last session), so the shared
 * TLS session cache fills, evicts and answers lookups (TLS 1.3 sessions are
 * not stored). Memory: the live JavaScript heap of each process after a full
 * GC (a heap snapshot, live-heap.ts), before any session and when idle at the
 * end, after the cached TLS sessions have expired, must be back at the
 * start's level (V8's compiled code apart); open descriptors likewise.
 * reload: sustained logins and transfers while the master gets HUPs; every
 * connection must be accepted, every session must succeed, no byte may differ.
 * Both print a summary and exit non-zero when a criterion fails.
 */
import { chmodSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createHash } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { MailClient } from "../test/support/client.js";
import { makeMessage } from "../test/support/fake-backend.js";
import { startNginx } from "../test/support/nginx.js";
import type { ProxyStarter } from "../test/support/differential.js";
import { posternCommand, startPostern } from "../test/support/postern.js";
import { startMailProxy } from "../test/support/mail-proxy.js";
import { freePort } from "../test/support/ports.js";
import { PASSWORD, PORTS, USER, rssBytes, severeLines, startBed, workerPids, type Bed, type PortName, type Protocol } from "../test/hostile/env.js";
import { mutateBytes } from "../test/fuzz/fuzz-support.js";
import { heapGrowth, heapSnapshotNodeArgs, measureLiveHeap, type LiveHeap } from "./live-heap.js";

interface Args {
  mode: "soak" | "reload";
  sessions: number;
  concurrency: number;
  faultRate: number;
  size: number;
  hups: number;
  intervalMs: number;
  nginx: boolean;
  keepSnapshots: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    mode: "soak",
    sessions: 100000,
    concurrency: 32,
    faultRate: 0.02,
    size: 65536,
    hups: 20,
    intervalMs: 500,
    nginx: false,
    keepSnapshots: false,
  };
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
    else if (k === "--keep-snapshots") a.keepSnapshots = true;
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
  /** TLS 1.2 clients that offered a session, and those whose handshake resumed it. */
  resumeOffered: number;
  resumed: number;
  errors: Map<string, number>;
}

function newStats(): Stats {
  return { ok: 0, failed: 0, refused: 0, corrupted: 0, faults: 0, faultsAsExpected: 0, bytes: 0, resumeOffered: 0, resumed: 0, errors: new Map() };
}

function note(stats: Stats, e: unknown): void {
  const msg = (e as Error).message.split("\n")[0]!.replace(/\d+/g, "N").slice(0, 120);
  stats.errors.set(msg, (stats.errors.get(msg) ?? 0) + 1);
}

/** How a good session's client does TLS: 1.3 (Node's default), 1.2 with a full handshake, 1.2 offering the port's last session. */
type TlsMode = "1.3" | "1.2" | "1.2-resume";

/** The last TLS 1.2 session each port gave out, offered by the next "1.2-resume" client of that port. */
const lastTls12Session = new Map<PortName, Buffer>();

/**
 * Connects to a port; STARTTLS ports are upgraded first. Returns the client
 * after the greeting (SMTP: after EHLO).
 */
async function open(bed: Bed, name: PortName, protocol: Protocol, stats: Stats, mode: TlsMode = "1.3"): Promise<MailClient> {
  const tls = PORTS.find((p) => p.name === name)!.tls;
  const offer = mode === "1.2-resume" ? lastTls12Session.get(name) : undefined;
  if (offer) stats.resumeOffered++;
  const tlsOptions = mode === "1.3" ? {} : { maxVersion: "TLSv1.2" as const, ...(offer ? { session: offer } : {}) };
  let c: MailClient;
  try {
    c = await MailClient.connect({ port: bed.ports[name], timeoutMs: 15000, ...(tls ? { tls: tlsOptions } : {}) });
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
    await c.startTls(tlsOptions);
    if (protocol === "smtp") {
      await c.send("EHLO soak.example\r\n");
      await c.read(/^250 .*\r\n/m);
    }
  }
  if (mode !== "1.3") {
    if (c.tlsSocket?.isSessionReused()) stats.resumed++;
    const session = c.tlsSocket?.getSession();
    if (session) lastTls12Session.set(name, session);
  }
  return c;
}

/** One complete good session with a checksummed transfer; throws on any deviation. */
async function goodSession(bed: Bed, name: PortName, size: number, stats: Stats, mode: TlsMode = "1.3"): Promise<void> {
  const protocol = PORTS.find((p) => p.name === name)!.protocol;
  const expected = makeMessage(size);
  const c = await open(bed, name, protocol, stats, mode);
  try {
    if (protocol === "imap") {
      await c.send(`a1 LOGIN ${USER} ${PASSWORD}\r\n`);
      if (!/^a1 OK/m.test(await c.read(/^a1 .*\r\n/m))) throw new Error("IMAP login failed");
      await c.send("a2 FETCH 1 BODY[]\r\n");
      const head = await c.read(/\{\d+\}\r\n/);
      const len = Number(/\{(\d+)\}\r\n$/.exec(head)![1]);
      const body = await c.read(new RegExp(`^[\\s\\S]{${len}}`));
      await c.read(/^a2 .*\r\n/m);
      if (sha(body) !== sha(expected)) {
        stats.corrupted++;
        throw new Error("IMAP body checksum mismatch");
      }
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
      if (sha(body) !== sha(expected)) {
        stats.corrupted++;
        throw new Error("POP3 body checksum mismatch");
      }
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
    else if (protocol === "pop3") {
      await c.send(`USER ${login}\r\n`);
      await c.readLine();
      await c.send("PASS x\r\n");
    } else await c.send(`AUTH PLAIN ${b64(`\0${login}\0x`)}\r\n`);
    const reply = await c.readLine();
    const want =
      kind === "refused"
        ? { imap: /^f1 NO /, pop3: /^-ERR /, smtp: /^535 / }[protocol]
        : { imap: /^\* BAD internal server error/, pop3: /^-ERR internal server error/, smtp: /^451 4\.3\.2 / }[protocol];
    return want.test(reply);
  } finally {
    c.close();
  }
}

/**
 * ssl_session_timeout of the soak: short, so that the sessions the load left
 * in the TLS session caches have expired (and been swept, every 10 s) before
 * the final memory measurement.
 */
const SESSION_TIMEOUT_S = 10;
/** The sweep period of Postern's session stores (src/event/tls-session-store.ts). */
const SESSION_SWEEP_S = 10;

/** Postern with heap snapshots on SIGUSR2 written into `dir` (workers inherit the node options). */
function posternWithSnapshots(dir: string): ProxyStarter {
  const [node, ...script] = posternCommand();
  return (block, options) => startMailProxy("postern", [node!, ...heapSnapshotNodeArgs(dir), ...script], block, options);
}

/**
 * The bed of both modes; with `heapDir` (soak against Postern) the proxy
 * writes heap snapshots there. The soak turns the shared TLS session cache
 * on with a short timeout; tickets off, or TLS 1.2 sessions would go into a
 * ticket instead of the cache; 32 KiB hold 125 sessions in Postern, fewer
 * than the load creates in 10 s, so the LRU evicts too.
 */
async function startSoakBed(args: Args, heapDir?: string): Promise<{ bed: Bed; downPort: number }> {
  const downPort = await freePort(); // nothing listens there
  const bed = await startBed({
    start: args.nginx ? startNginx : heapDir ? posternWithSnapshots(heapDir) : startPostern,
    timeout: "30s",
    ...(args.mode === "soak"
      ? { extra: `  ssl_session_cache shared:SOAK:32k;\n  ssl_session_tickets off;\n  ssl_session_timeout ${SESSION_TIMEOUT_S}s;` }
      : {}),
    proxyOptions: { workerProcesses: 2, events: "worker_connections 4096;" },
    backends: { imap: { message: args.size }, pop3: { message: args.size } },
    auth: (fakes) => (request) => {
      const user = request.header("Auth-User");
      if (user === "refused")
        return {
          headers: [
            ["Auth-Status", "Invalid login or password"],
            ["Auth-Wait", "0"],
          ],
        };
      if (user === "auth-garbage") return "\x00garbage\r\n\r\n";
      const protocol = request.header("Auth-Protocol") as Protocol;
      const port = user === "backend-down" ? downPort : fakes[protocol].port;
      return {
        headers: [
          ["Auth-Status", "OK"],
          ["Auth-Server", "127.0.0.1"],
          ["Auth-Port", String(port)],
        ],
      };
    },
  });
  return { bed, downPort };
}

function summary(title: string, stats: Stats, bed: Bed, secs: number, extra: Record<string, string | number>): void {
  const severe = severeLines(bed.proxy.errorLog(), bed.proxy.kind);
  console.log(`\n== ${title} (${bed.proxy.kind}) ==`);
  const rows: Record<string, string | number> = {
    "sessions ok": stats.ok,
    "sessions failed": stats.failed,
    "connections refused": stats.refused,
    "corrupted transfers": stats.corrupted,
    "faults injected": stats.faults,
    "faults answered as expected": stats.faultsAsExpected,
    "payload bytes checked": stats.bytes,
    "duration s": secs.toFixed(1),
    "sessions/s": ((stats.ok + stats.faults) / secs).toFixed(1),
    "alert/crit log lines": severe.length,
    ...extra,
  };
  for (const [k, v] of Object.entries(rows)) console.log(`${k.padEnd(30)} ${v}`);
  for (const [msg, n] of stats.errors) console.log(`  error x${n}: ${msg}`);
  for (const l of severe.slice(0, 10)) console.log(`  ${l}`);
}

const MiB = 1048576;

function mib(b: number): string {
  return `${(b / MiB).toFixed(1)} MiB`;
}

function signed(b: number): string {
  return `${b >= 0 ? "+" : "-"}${mib(Math.abs(b))}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * V8's code may grow by this much from the start (taken before any session)
 * to the end: the JIT compiles and optimizes the session paths of Postern
 * and Node (+2.0 MiB per worker after 3000 sessions and after 8000: it
 * levels off early). It is bounded by the code
 * that runs; a leak of compiled code (a function or RegExp made per session
 * and kept) would pass it long before 100000 sessions.
 */
const CODE_ALLOWANCE = 8 * MiB;

/**
 * The live heap without V8's code ("data": objects, strings, arrays, maps,
 * closures) may end 10% or 1 MiB above the start, whichever is larger: room
 * for lazily built caches and the hidden classes the JIT adds. A leak of 20
 * bytes per session passes it after 100000 sessions over two workers.
 */
function judgeHeap(start: LiveHeap, end: LiveHeap): { dataOk: boolean; codeOk: boolean } {
  const startData = start.bytes - start.code;
  return {
    dataOk: end.bytes - end.code <= startData + Math.max(startData * 0.1, MiB),
    codeOk: end.code <= start.code + CODE_ALLOWANCE,
  };
}

async function soak(args: Args): Promise<boolean> {
  const heapDir = args.nginx ? undefined : mkdtempSync(path.join(os.tmpdir(), "postern-soak-heap-"));
  // started as root, the workers run as nobody: they must be able to write their snapshots here
  if (heapDir) chmodSync(heapDir, 0o1777);
  const { bed } = await startSoakBed(args, heapDir);
  const stats = newStats();
  const rss = (): string =>
    workerPids(bed.proxy.pid)
      .map((p) => `${(rssBytes(p) / MiB).toFixed(0)}M`)
      .join("/");
  const rssTotal = (): number => workerPids(bed.proxy.pid).reduce((t, p) => t + rssBytes(p), 0);
  // open descriptors of the workers: the same when idle at the end as at the start
  const fds = (): number => workerPids(bed.proxy.pid).reduce((t, p) => t + readdirSync(`/proc/${p}/fd`).length, 0);
  // live JavaScript heap after a full GC of each worker and of the master (Postern only)
  const heaps = async (): Promise<Map<number, LiveHeap>> => {
    const out = new Map<number, LiveHeap>();
    if (!heapDir) return out;
    for (const pid of [...workerPids(bed.proxy.pid), bed.proxy.pid]) out.set(pid, await measureLiveHeap(pid, heapDir, { keep: args.keepSnapshots }));
    return out;
  };
  // "total (data + code)" of each worker, then the master's
  const showHeaps = (m: Map<number, LiveHeap>): string =>
    [...m].map(([pid, h]) => `${pid === bed.proxy.pid ? "master " : ""}${mib(h.bytes)} (${mib(h.bytes - h.code)} + ${mib(h.code)} code)`).join(" / ");
  // the start: Postern up, no session yet (descriptors and RSS before the first snapshot)
  const rssStart = rss();
  const fdStart = fds();
  const heapStart = await heaps();
  if (heapDir) console.log(`.. live heap at start, after GC: ${showHeaps(heapStart)}`);
  // RSS under load after warm-up (caches and JIT filled): the end must not be above it
  let rssWarm = 0;
  let next = 0;
  const run = async (until: number): Promise<void> => {
    const worker = async (): Promise<void> => {
      while (next < until) {
        const n = next++;
        const r = Math.random();
        try {
          if (r < args.faultRate) {
            stats.faults++;
            if (await faultSession(bed, r / args.faultRate, stats)) stats.faultsAsExpected++;
          } else {
            // one in four over TLS 1.2 (only those sessions go into the session cache), half of them resuming
            const mode: TlsMode = n % 8 === 7 ? "1.2-resume" : n % 4 === 3 ? "1.2" : "1.3";
            await goodSession(bed, PORTS[n % PORTS.length]!.name, args.size, stats, mode);
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
  };
  try {
    let loadMs = 0;
    let t = Date.now();
    // a short warm-up, then a look at the idle heap with the JIT and the session cache warm (for the record)
    const warmup = heapDir ? Math.min(1000, Math.floor(args.sessions / 10)) : 0;
    let heapWarm = new Map<number, LiveHeap>();
    if (warmup > 0) {
      await run(warmup);
      loadMs += Date.now() - t;
      await sleep(1000);
      heapWarm = await heaps();
      console.log(`.. live heap after ${warmup} sessions, idle, after GC: ${showHeaps(heapWarm)}`);
      t = Date.now();
    }
    await run(args.sessions);
    loadMs += Date.now() - t;
    await sleep(2000);
    checkSmtpBackend(bed, stats);
    const fdEnd = fds();
    const rssEndText = rss();
    let heapEnd = new Map<number, LiveHeap>();
    if (heapDir) {
      const wait = SESSION_TIMEOUT_S + SESSION_SWEEP_S + 5;
      console.log(`.. idle: waiting ${wait} s for the cached TLS sessions to expire (ssl_session_timeout ${SESSION_TIMEOUT_S}s) and be swept`);
      await sleep(wait * 1000);
      heapEnd = await heaps();
    }
    // RSS is judged when it is lowest: after the forced GC (Postern), else when idle
    const rssAfterGc = rss();
    const memoryOk = rssWarm === 0 || rssTotal() <= rssWarm * 1.25;
    const rssVerdict = ` (${memoryOk ? "not above warm-up + 25%" : "GREW"})`;
    // every process's end against its own start: the data strictly, V8's code loosely
    let heapOk = heapDir === undefined || heapEnd.size > 1; // at least one worker besides the master
    const dataDelta: string[] = [];
    const codeDelta: string[] = [];
    const growth: string[] = [];
    for (const [pid, end] of heapEnd) {
      const who = pid === bed.proxy.pid ? "master" : "worker";
      const start = heapStart.get(pid);
      if (!start) {
        heapOk = false;
        dataDelta.push(`${who} ${pid} not there at the start`);
        continue;
      }
      const v = judgeHeap(start, end);
      heapOk &&= v.dataOk && v.codeOk;
      const tag = who === "master" ? "master " : "";
      dataDelta.push(`${tag}${signed(end.bytes - end.code - (start.bytes - start.code))}${v.dataOk ? "" : " GREW"}`);
      codeDelta.push(`${tag}${signed(end.code - start.code)}${v.codeOk ? "" : " GREW"}`);
      const top = heapGrowth(start, end, v.dataOk ? 6 : 15)
        .filter((g) => g.bytes > 0 && g.kind !== "code")
        .map((g) => `${g.kind} +${(g.bytes / 1024).toFixed(0)} KiB (${g.count >= 0 ? "+" : ""}${g.count})`);
      growth.push(`  ${who} ${pid}, data grown from start to end: ${top.join(", ") || "nothing"}`);
    }
    const heapRows: Record<string, string> = heapDir
      ? {
          "live heap start (after GC)": showHeaps(heapStart),
          ...(warmup > 0 ? { [`live heap after ${warmup} sessions`]: showHeaps(heapWarm) } : {}),
          "live heap end (idle, after GC)": showHeaps(heapEnd),
          "live heap end - start, data": `${dataDelta.join(" / ")} (limit: + max(10%, 1 MiB))`,
          "live heap end - start, code": `${codeDelta.join(" / ")} (limit: + ${mib(CODE_ALLOWANCE)})`,
        }
      : {};
    summary("soak", stats, bed, loadMs / 1000, {
      "TLS 1.2 sessions resumed": `${stats.resumed} of ${stats.resumeOffered} offered`,
      "worker RSS start": rssStart,
      "worker RSS after warm-up": `${(rssWarm / MiB).toFixed(0)}M (total)`,
      "worker RSS end (idle)": `${rssEndText}${heapDir ? "" : rssVerdict}`,
      ...heapRows,
      ...(heapDir ? { "worker RSS end, after GC": `${rssAfterGc}${rssVerdict}` } : {}),
      "worker fds start / end (idle)": `${fdStart} / ${fdEnd}${fdEnd > fdStart + 2 ? " LEAK" : ""}`,
    });
    for (const g of growth) console.log(g);
    return (
      stats.failed === 0 &&
      stats.corrupted === 0 &&
      stats.refused === 0 &&
      stats.faults === stats.faultsAsExpected &&
      severeLines(bed.proxy.errorLog(), bed.proxy.kind).length === 0 &&
      fdEnd <= fdStart + 2 &&
      memoryOk &&
      heapOk
    );
  } finally {
    await bed.stop();
    if (heapDir && !args.keepSnapshots) rmSync(heapDir, { recursive: true, force: true });
    else if (heapDir) console.log(`heap snapshots kept in ${heapDir}`);
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
    const reconfiguring = bed.proxy
      .errorLog()
      .split("\n")
      .filter((l) => /: reconfiguring$/.test(l)).length;
    summary("reload under load", stats, bed, (Date.now() - started) / 1000, { "HUPs sent": hups, "`reconfiguring` log lines": reconfiguring });
    return (
      stats.failed === 0 &&
      stats.corrupted === 0 &&
      stats.refused === 0 &&
      reconfiguring === hups &&
      severeLines(bed.proxy.errorLog(), bed.proxy.kind).length === 0
    );
  } finally {
    await bed.stop();
  }
}

const args = parseArgs(process.argv.slice(2));
const passed = args.mode === "soak" ? await soak(args) : await reload(args);
console.log(passed ? "\nPASS" : "\nFAIL");
process.exitCode = passed ? 0 : 1;

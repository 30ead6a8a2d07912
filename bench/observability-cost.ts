/**
 * The direct CPU cost of the access log and the metrics per session, in
 * process: the record a session keeps (session-events.ts), its metric
 * updates, and its access-log line rendered and written to a file, one
 * session per event-loop turn as under paced load (the worst case for the
 * unbuffered log: one write per line). The same loop without the record is
 * the baseline. This resolves microseconds where the paced rows of run.ts,
 * whole servers on a shared VM, resolve a few percent at best.
 *
 *   node dist/bench/observability-cost.js [--sessions N] [--parts]
 *
 * `--parts` splits the access log's cost instead: the record alone, the
 * line rendered, made a Buffer, and written at once with write(); and the
 * end-of-turn setImmediate alone.
 *
 * The sockets are stand-ins with the counters and TLS facts the record
 * reads; everything else is Postern's own code.
 */
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { metrics } from "../src/event/metrics.js";
import { compileLogFormat, renderFormat } from "../src/mail/access-log/format.js";
import { AccessLogFile } from "../src/mail/access-log/writer.js";
import { type SessionFacts, type SessionSink, SessionEvents } from "../src/mail/session-events.js";
import type { ObservedSession, SessionTls } from "../src/mail/session-services.js";
import type { ErrorLog } from "../src/core/log.js";

const args = process.argv.slice(2);
const at = args.indexOf("--sessions");
const SESSIONS = at >= 0 ? Number(args[at + 1]) : 200_000;
const parts = args.includes("--parts");

/** The format of run.ts's --observability servers. */
const FORMAT = compileLogFormat([
  '$remote_addr [$time_local] "$mail_login" $mail_auth_status $upstream_addr $mail_session_end $bytes_received $bytes_sent $session_time $ssl_protocol',
]);

const observed = {
  id: 0,
  server: { protocol: "imap", conf: { get: () => "off" } },
  serverName: "mail.example",
  listen: { ssl: true, text: "127.0.0.1:993", proxyProtocol: false },
  peer: { clientAddr: "192.0.2.7", clientPort: 40000, localAddr: "127.0.0.1", localPort: 993, unixClient: false, proxyProtocol: undefined },
  socket: { bytesWritten: 0, bytesRead: 0 },
} as unknown as ObservedSession;
const secure = {
  getProtocol: () => "TLSv1.3",
  getCipher: () => ({ name: "TLS_AES_256_GCM_SHA384" }),
  isSessionReused: () => false,
  bytesWritten: 1200,
  bytesRead: 400,
} as unknown as TLSSocket;
const tls = { describe: () => ({}) } as unknown as SessionTls;
const LOGIN = Buffer.from("user@example.org");

/** `log`: the access log's sink (AccessLogFile by default), or a part of it (--parts). */
type Variant = { name: string; record: boolean; metrics: boolean; log: boolean | ((facts: SessionFacts, fd: number) => void) };
/** Where a part keeps its result, so V8 cannot drop the work. */
const keep: { last: unknown } = { last: undefined };
const line = (facts: SessionFacts): string => renderFormat(FORMAT, facts, Date.now());
const VARIANTS: Variant[] = parts
  ? [
      { name: "neither (baseline)", record: false, metrics: false, log: false },
      { name: "the record alone", record: true, metrics: false, log: false },
      { name: "the line rendered", record: true, metrics: false, log: (f) => (keep.last = line(f)) },
      { name: "made a Buffer", record: true, metrics: false, log: (f) => (keep.last = Buffer.from(`${line(f)}\n`, "latin1")) },
      { name: "written with write()", record: true, metrics: false, log: (f, fd) => writeSync(fd, Buffer.from(`${line(f)}\n`, "latin1")) },
      {
        name: "rendered, with a setImmediate",
        record: true,
        metrics: false,
        log: (f) => {
          keep.last = line(f);
          setImmediate(() => undefined);
        },
      },
    ]
  : [
      { name: "neither (baseline)", record: false, metrics: false, log: false },
      { name: "metrics_listen", record: true, metrics: true, log: false },
      { name: "access_log", record: true, metrics: false, log: true },
      { name: "both", record: true, metrics: true, log: true },
    ];

/** CPU microseconds per session of one variant, one session per turn. */
async function measure(v: Variant, dir: string): Promise<number> {
  metrics.enabled = v.metrics;
  metrics.takeDelta();
  const file = new AccessLogFile(join(dir, "access.log"), undefined, () => ({ alert: () => undefined }) as unknown as ErrorLog);
  const fd = openSync(join(dir, "parts.log"), "a");
  const part = v.log;
  const sink: SessionSink | undefined = typeof part === "function" ? (facts) => part(facts, fd) : part ? (facts) => file.write(line(facts)) : undefined;
  const sinkOf = (): SessionSink | undefined => sink;
  const one = (): void => {
    if (!v.record) return;
    const e = new SessionEvents(observed, sinkOf);
    e.tlsDone(secure, tls, false);
    e.authStart(LOGIN, "plain");
    e.closing("client closed connection");
    e.ended();
  };
  const run = (n: number): Promise<void> =>
    new Promise((resolve) => {
      let i = 0;
      const step = (): void => {
        one();
        // the worker hands its metrics to the master once a second; here once per 1000 sessions, more often than that
        if (++i % 1000 === 0) metrics.takeDelta();
        if (i < n) setImmediate(step);
        else setImmediate(resolve);
      };
      step();
    });
  await run(SESSIONS / 10); // warm-up: V8 compiles the hot paths
  const before = process.cpuUsage();
  await run(SESSIONS);
  const used = process.cpuUsage(before);
  file.close();
  closeSync(fd);
  return (used.user + used.system) / SESSIONS;
}

const dir = mkdtempSync(join(tmpdir(), "postern-obs-cost-"));
try {
  const rows: [string, number][] = [];
  // two passes in opposite order: a machine that drifts during the run favours no variant
  for (const order of [VARIANTS, [...VARIANTS].reverse()]) for (const v of order) rows.push([v.name, await measure(v, dir)]);
  const best = (name: string): number => Math.min(...rows.filter(([n]) => n === name).map(([, us]) => us));
  const base = best(VARIANTS[0]!.name);
  console.log(`${new Date().toISOString()} ${SESSIONS} sessions per pass, Node.js ${process.version}`);
  console.log("| variant | CPU µs per session (best of 2) | added to the baseline |\n|---|---|---|");
  for (const v of VARIANTS) console.log(`| ${v.name} | ${best(v.name).toFixed(2)} | ${v.record ? `+${(best(v.name) - base).toFixed(2)} µs` : ""} |`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * The cluster soak (issue 16; NOT part of the test suite): the cluster of
 * the tests (test/support/cluster.ts: one Redis, three Postern nodes with
 * two workers each, HAProxy in front) for N minutes under steady IMAP
 * login load through HAProxy, with periodic faults:
 *
 * - every --kill-every seconds a node (in turn) is killed (SIGKILL of its
 *   master and workers) and started again once HAProxy has marked it down;
 * - every --reload-every seconds a node (in turn) gets a HUP;
 * - at half time Redis is stopped for --redis-outage seconds, then started.
 *
 * Meanwhile a TLS 1.2 probe makes a session on one node's direct port and
 * offers it to the next node, every --probe-ms: the resumption rate across
 * nodes (near 1 with `ssl_session_cache ... sync`, 0 without).
 *
 * Report: sessions ok, failed logins split into the killed node's own
 * (expected: its clients lose their sessions) and any other (a failure),
 * the resumption rates, and each node's memory (master + workers RSS) per
 * minute. Exits 1 when a login failed that a kill does not explain.
 *
 *   npx tsc -p . && bash scripts/soak-cluster.sh [--minutes 10] [--concurrency 6] [--kill-every 60] [--reload-every 45] [--redis-outage 10] [--probe-ms 1000] [--no-sync]
 *
 * The `sync` zones are used when `postern -t` accepts them (after issue
 * 16's shared-state work is merged), unless --no-sync.
 */
import tls from "node:tls";
import { Redis } from "ioredis";
import { type Cluster, type PosternNode, configAccepted, startCluster } from "../test/support/cluster.js";
import { Load } from "../test/support/cluster-load.js";

const args = process.argv.slice(2);
function num(flag: string, dflt: number): number {
  const i = args.indexOf(flag);
  return i >= 0 ? Number(args[i + 1]) : dflt;
}
const minutes = num("--minutes", 10);
const concurrency = num("--concurrency", 6);
const killEvery = num("--kill-every", 60) * 1000;
const reloadEvery = num("--reload-every", 45) * 1000;
const redisOutage = num("--redis-outage", 10) * 1000;
const probeMs = num("--probe-ms", 1000);

const SYNC_EXTRA = `
  ssl_session_cache shared:TLS:10m sync;
  limit_conn_zone $binary_remote_addr zone=perip:1m sync;
  limit_conn perip 1000;
  auth_http_cache zone=authcache:1m ok=60s sync;
`;
const LOCAL_EXTRA = `ssl_session_cache shared:TLS:10m;`;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A TLS 1.2 handshake to `port`, offering `session`; the session it got and whether it was resumed. */
function handshake(port: number, session?: Buffer): Promise<{ session?: Buffer; reused: boolean } | undefined> {
  return new Promise((resolve) => {
    let got: Buffer | undefined;
    const s = tls.connect({ port, host: "127.0.0.1", servername: "localhost", rejectUnauthorized: false, maxVersion: "TLSv1.2", session });
    const timer = setTimeout(() => {
      s.destroy();
      resolve(undefined);
    }, 5000);
    s.on("session", (b: Buffer) => (got = b));
    s.once("secureConnect", () => {
      const reused = s.isSessionReused();
      // the greeting arrives after the handshake; by then the session is known
      s.once("data", () => {
        clearTimeout(timer);
        s.destroy();
        resolve({ session: got ?? s.getSession(), reused });
      });
    });
    s.on("error", () => {
      clearTimeout(timer);
      resolve(undefined);
    });
  });
}

interface Window {
  node: string;
  from: number;
  to: number;
}

async function main(): Promise<void> {
  const sync = !args.includes("--no-sync") && (await configAccepted(SYNC_EXTRA)).ok;
  console.log(`cluster soak: ${minutes} min, ${concurrency} clients, zones ${sync ? "synced through Redis" : "node-local (sync refused or --no-sync)"}`);
  const cluster: Cluster = await startCluster({ mailExtra: () => (sync ? SYNC_EXTRA : LOCAL_EXTRA), logLevel: "notice" });
  const nodes = cluster.nodes;
  const start = Date.now();
  const end = start + minutes * 60_000;
  const kills: Window[] = [];
  const memory: Record<string, number[]> = Object.fromEntries(nodes.map((n) => [n.name, [n.rss()]]));
  const probes = { cross: 0, crossReused: 0, failed: 0 };
  const events: string[] = [];
  const log = (m: string): void => {
    const line = `${((Date.now() - start) / 1000).toFixed(0).padStart(5)}s ${m}`;
    events.push(line);
    console.log(line);
  };
  const load = new Load(cluster.port("imap"), concurrency, "soak");
  let running = true;
  const faults = (async () => {
    let nextKill = start + killEvery;
    let nextReload = start + reloadEvery;
    let outageDone = false;
    let k = 0;
    let r = 0;
    while (running && Date.now() < end) {
      const now = Date.now();
      if (now >= nextKill) {
        const node: PosternNode = nodes[k++ % nodes.length]!;
        const w: Window = { node: node.name, from: Date.now(), to: Number.POSITIVE_INFINITY };
        kills.push(w);
        log(`kill ${node.name}`);
        await node.kill();
        await cluster.haproxy.waitFor(node.name, "DOWN", 20_000);
        await node.start();
        await cluster.haproxy.waitFor(node.name, "UP", 20_000);
        w.to = Date.now();
        log(`${node.name} back up`);
        nextKill = Date.now() + killEvery;
      } else if (now >= nextReload) {
        const node = nodes[r++ % nodes.length]!;
        log(`HUP ${node.name}`);
        await node.reload();
        nextReload = Date.now() + reloadEvery;
      } else if (!outageDone && now >= start + (end - start) / 2) {
        outageDone = true;
        log("redis stopped");
        await cluster.redis.stop();
        await sleep(redisOutage);
        await cluster.redis.start();
        log("redis started");
      } else await sleep(200);
    }
  })();
  const probing = (async () => {
    let i = 0;
    while (running && Date.now() < end) {
      const a = nodes[i % nodes.length]!;
      const b = nodes[(i + 1) % nodes.length]!;
      i++;
      const first = await handshake(a.direct.imaps);
      const second = first?.session ? await handshake(b.direct.imaps, first.session) : undefined;
      if (!second) probes.failed++;
      else {
        probes.cross++;
        if (second.reused) probes.crossReused++;
      }
      await sleep(probeMs);
    }
  })();
  const sampling = (async () => {
    while (running && Date.now() < end) {
      await sleep(Math.min(60_000, end - Date.now()));
      for (const n of nodes) memory[n.name]!.push(n.rss());
    }
  })();
  await Promise.all([faults, probing, sampling]);
  running = false;
  const result = await load.stop();
  // a failure the kill of a node explains: the login was that node's, or never reached one, while it was down
  const nodeOf = new Map(cluster.logins().map((l) => [l.user, l.node]));
  const explained = (f: { user: string; at: number }): boolean =>
    kills.some((w) => f.at >= w.from && f.at <= w.to + 2000 && (nodeOf.get(f.user) === undefined || nodeOf.get(f.user) === w.node));
  const own = result.failures.filter(explained);
  const other = result.failures.filter((f) => !explained(f));
  const mib = (b: number): string => (b / 1048576).toFixed(0);
  console.log("\n## cluster soak");
  console.log(`duration ${minutes} min, zones ${sync ? "sync" : "node-local"}, ${kills.length} kills, Redis outage ${redisOutage / 1000}s`);
  console.log(`sessions ok ${result.ok}, failed on a killed node ${own.length}, failed otherwise ${other.length}`);
  console.log(
    `TLS 1.2 resumption across nodes: ${probes.crossReused}/${probes.cross} (${probes.cross ? ((100 * probes.crossReused) / probes.cross).toFixed(1) : "-"}%), probes that could not connect (a node down or starting) ${probes.failed}`,
  );
  console.log("memory per node (MiB, master + workers, per minute; a killed node starts again from its start-up size):");
  for (const [name, xs] of Object.entries(memory)) console.log(`  ${name}: ${xs.map(mib).join(" ")}`);
  const redis = new Redis(cluster.redis.port, "127.0.0.1", { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    const info = await redis.info("memory");
    const keys = await redis.dbsize();
    console.log(`Redis at the end: ${/used_memory_human:(\S+)/.exec(info)?.[1] ?? "?"} used, ${keys} keys (it lost everything at the outage)`);
  } catch (err) {
    console.log(`Redis memory not read: ${(err as Error).message}`);
  } finally {
    redis.disconnect();
  }
  if (other.length > 0) console.log(`unexplained failures (first 10): ${JSON.stringify(other.slice(0, 10))}`);
  await cluster.stop();
  process.exit(other.length > 0 ? 1 : 0);
}

await main();

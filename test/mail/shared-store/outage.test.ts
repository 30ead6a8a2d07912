/**
 * The shared store going away under load, with two real nodes (two
 * workers each) whose limit_conn, failure and auth cache zones say `sync`,
 * and Python's imaplib logging in through both nodes all along:
 *
 *  - Redis stopped: zero failed logins; each node logs exactly one warn
 *    line for the change; postern_shared_store_up drops to 0 and the
 *    fallbacks are counted per use;
 *  - Redis started again (empty, as after a restart without persistence):
 *    one warn line per node, up is 1 again, and the limit holds across the
 *    nodes again without a Postern restart (the nodes re-publish their
 *    counts);
 *  - Redis paused (SIGSTOP): a login waits at most about the timeout per
 *    use of the store, then none once the store is marked down.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { MailClient } from "../../support/client.js";
import { type Cluster, type ClusterNode, connect, eventually, imaplibLoop, logLines, login, metricsPage, sample, sleep, startCluster } from "./cluster.js";

let cluster: Cluster;
const DOWN = /\[warn\] .*shared store redis 127\.0\.0\.1:\d+ unavailable \(.*\), node-local state is used until it returns$/;
const UP = /\[warn\] .*shared store redis 127\.0\.0\.1:\d+ is available again, shared state is used$/;

before(async () => {
  cluster = await startCluster({
    store: "secret_file=store.secret timeout=150ms",
    mail: [
      "limit_conn_zone $binary_remote_addr zone=addr:32k sync;",
      "auth_fail_zone zone=fails:32k window=1m sync;",
      "auth_http_cache zone=answers:64k ok=1m sync;",
    ].join("\n"),
    server: "limit_conn addr 3; auth_fail_throttle fails delay_after=50;",
  });
});

after(async () => {
  await cluster?.close();
});

/** Holds `n` sessions on `node` from `from`; they stay open. */
async function hold(node: ClusterNode, n: number, from: string, into: MailClient[]): Promise<void> {
  for (let i = 0; i < n; i++) {
    const { client, first } = await connect(node, from);
    into.push(client);
    assert.match(first, /^\* OK/, `session ${i} on port ${node.imap}`);
  }
}

/** The next session from `from` on `node`: refused with IMAP's BYE? */
async function refusedOn(node: ClusterNode, from: string): Promise<boolean> {
  const { client, first } = await connect(node, from);
  client.close();
  return first === "* BYE Too many connections\r\n";
}

const fallbacks = (page: string, use: string): number => sample(page, `postern_shared_store_fallbacks_total{use="${use}"}`);

test("Redis stopped under load: no failed login, one warn line per change per node, metrics; started again: sharing returns", async () => {
  const [a, b] = cluster.nodes as [ClusterNode, ClusterNode];
  await eventually(async () => sample(await metricsPage(a), "postern_shared_store_up") === 1, 5000, "node A up");
  await eventually(async () => sample(await metricsPage(b), "postern_shared_store_up") === 1, 5000, "node B up");
  const loop = imaplibLoop([a.imap, b.imap]);
  const held: MailClient[] = [];
  try {
    await sleep(700);
    await cluster.redis.stop();
    await sleep(1500);
    for (const node of [a, b]) {
      await eventually(
        () => logLines(node, DOWN).length === 1,
        3000,
        () => `the down line: ${logLines(node, /shared store/).join("\n")}`,
      );
      // a use falls back only when a login of the loop reaches this node: under load that may take a while
      await eventually(
        async () => {
          const p = await metricsPage(node);
          return fallbacks(p, "auth_cache") > 0 && fallbacks(p, "auth_fail") > 0 && fallbacks(p, "limit_conn") > 0;
        },
        15_000,
        "a fallback of every use on the metrics page",
      );
      const page = await metricsPage(node);
      assert.equal(sample(page, "postern_shared_store_up"), 0);
      assert.equal(sample(page, 'postern_shared_store_state_changes_total{state="down"}'), 1);
      assert.ok(fallbacks(page, "auth_cache") > 0, page);
      assert.ok(fallbacks(page, "auth_fail") > 0, page);
      assert.ok(fallbacks(page, "limit_conn") > 0, page);
    }
    // while the store is away each node counts alone: 3 held on A do not stop B
    await hold(a, 3, "127.0.0.21", held);
    assert.equal(await refusedOn(a, "127.0.0.21"), true, "A's own count still holds");
    assert.equal(await refusedOn(b, "127.0.0.21"), false, "B cannot see A's count (the documented fallback)");

    await cluster.redis.start();
    for (const node of [a, b]) await eventually(() => logLines(node, UP).length === 1, 5000, "the up line");
    for (const node of [a, b]) assert.equal(sample(await metricsPage(node), "postern_shared_store_up"), 1);
    // A re-publishes the 3 it holds to the empty store: B refuses again, no restart
    await eventually(() => refusedOn(b, "127.0.0.21"), 6000, "B to see A's count again");
    await sleep(800);
  } finally {
    for (const c of held) c.close();
  }
  const result = await loop.stop();
  assert.deepEqual(result.failed, [], "no login failed");
  assert.ok(result.ok > 20, `logins went on: ${result.ok}`);
  for (const node of [a, b]) {
    assert.equal(logLines(node, DOWN).length, 1, "exactly one down line");
    assert.equal(logLines(node, UP).length, 1, "exactly one up line");
    // the first connection counts as one change to up, the return as the second
    assert.equal(sample(await metricsPage(node), 'postern_shared_store_state_changes_total{state="up"}'), 2);
  }
});

test("Redis paused (SIGSTOP): a login waits at most about the timeout per use of the store, none once it is marked down", async () => {
  const [a, b] = cluster.nodes as [ClusterNode, ClusterNode];
  cluster.redis.pause();
  try {
    const times: number[] = [];
    for (let i = 0; i < 6; i++) {
      const start = Date.now();
      assert.match(await login(i % 2 ? b : a, `paused${i}`, "secret", "127.0.0.31"), /^a1 OK/);
      times.push(Date.now() - start);
    }
    // three uses per login (limit, failures, cache), each bounded by timeout=150ms
    for (const ms of times) assert.ok(ms < 1200, `a login took ${ms}ms: ${times.join(" ")}`);
    for (const node of [a, b]) await eventually(() => logLines(node, DOWN).length === 2, 3000, "the second down line");
    const start = Date.now();
    assert.match(await login(a, "paused-late", "secret", "127.0.0.31"), /^a1 OK/);
    assert.ok(Date.now() - start < 400, `once down, no wait: ${Date.now() - start}ms`);
  } finally {
    cluster.redis.resume();
  }
  for (const node of [a, b]) await eventually(() => logLines(node, UP).length === 2, 5000, "the second up line");
});

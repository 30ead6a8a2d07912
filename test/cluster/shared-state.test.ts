/**
 * What three nodes share through Redis (issue 16; docs/scaling.md,
 * docs/shared-store.md, docs/shared-tls.md), with the cluster of
 * haproxy-cluster.test.ts: zones that opt in with `sync`.
 *
 * - a TLS 1.2 session made on node A resumes on B and C (session id, no
 *   ticket), and a ticket issued by any node is accepted by every node;
 * - limit_conn and the failure throttling count a client across nodes;
 * - the auth cache answers on B and C for a login asked on A;
 * - Redis stopped under load: no failed login, the fallback logged once per
 *   node at warn and counted on each node's metrics page; Redis started
 *   again: sharing returns without a restart.
 *
 * Nodes are reached on their `direct` ports (no PROXY protocol) where a
 * test needs one node on purpose.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { type Cluster, configAccepted, PASSWORD, startCluster } from "../support/cluster.js";
import { ImapConn, Load, holdSessions } from "../support/cluster-load.js";
import { haproxyAvailable } from "../support/haproxy.js";
import type { AuthHandler } from "../support/fake-auth.js";

const SYNC_EXTRA = `
  ssl_session_cache shared:TLS:1m sync;
  ssl_session_timeout 5m;
  limit_conn_zone $binary_remote_addr zone=perip:1m sync;
  limit_conn perip 10;
  auth_fail_zone zone=fails:1m window=1m sync;
  auth_fail_throttle fails delay_after=3 delay=10ms max_delay=10ms refuse_after=4;
  auth_http_cache zone=authcache:1m ok=60s fail=10s sync;
`;

/**
 * POSTERN_CLUSTER_LOCAL=1 runs the file with the same zones WITHOUT `sync`:
 * every test of shared behaviour must then fail (the control showing the
 * tests can fail), while the harness itself works.
 */
const LOCAL_CONTROL = process.env.POSTERN_CLUSTER_LOCAL === "1";
const ZONES = LOCAL_CONTROL ? SYNC_EXTRA.replace(/ sync;/g, ";") : SYNC_EXTRA;
const accepted = await configAccepted(ZONES);

let cluster: Cluster;
let backendPort = 0;
const auth: AuthHandler = (req) =>
  (req.header("Auth-User") ?? "").startsWith("bad")
    ? { headers: [["Auth-Status", "Invalid login or password"]] }
    : {
        headers: [
          ["Auth-Status", "OK"],
          ["Auth-Server", "127.0.0.1"],
          ["Auth-Port", String(backendPort)],
        ],
      };

before(async () => {
  // a configuration that refuses the zones is a failure, never a skip
  assert.ok(accepted.ok, `postern -t refuses the sync zones: ${accepted.stderr}`);
  assert.ok(haproxyAvailable(), "haproxy is not installed (scripts/install-test-deps.sh installs it)");
  // the auth cache is keyed on the whole request: no per-node header, or the nodes never share an entry
  cluster = await startCluster({ mailExtra: () => ZONES, nodeHeader: false, auth: (req) => auth(req) });
  backendPort = cluster.backends.imap.port;
});

after(async () => {
  await cluster?.stop();
});

/** `openssl s_client` to a node's direct TLS port: TLS 1.2, saving or offering a session; "New" or "Reused". */
async function sClient(port: number, o: { sessOut?: string; sessIn?: string; tickets: boolean }): Promise<"New" | "Reused"> {
  const args = ["s_client", "-connect", `127.0.0.1:${port}`, "-tls1_2", "-servername", "localhost", "-ign_eof"];
  if (!o.tickets) args.push("-no_ticket");
  if (o.sessOut) args.push("-sess_out", o.sessOut);
  if (o.sessIn) args.push("-sess_in", o.sessIn);
  const out = await new Promise<string>((resolve) => {
    const c = execFile("openssl", args, { timeout: 15_000, encoding: "latin1" }, (_err, stdout) => resolve(stdout));
    c.stdin!.end("a LOGOUT\r\n");
  });
  const m = /^(New|Reused), TLSv1\.2/m.exec(out);
  assert.ok(m, out);
  return m[1] as "New" | "Reused";
}

function tmp(): string {
  return mkdtempSync(path.join(os.tmpdir(), "postern-sess-"));
}

test("a TLS 1.2 session (session id, no ticket) made on node A resumes on nodes B and C", async () => {
  const dir = tmp();
  try {
    const [a, b, c] = cluster.nodes.map((n) => n.direct.imaps) as [number, number, number];
    const file = path.join(dir, "a.sess");
    assert.equal(await sClient(a, { sessOut: file, tickets: false }), "New");
    assert.equal(await sClient(b, { sessIn: file, tickets: false }), "Reused");
    assert.equal(await sClient(c, { sessIn: file, tickets: false }), "Reused");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a ticket issued by any node is accepted by every node", async () => {
  const dir = tmp();
  try {
    const ports = cluster.nodes.map((n) => n.direct.imaps);
    for (const [i, issuer] of ports.entries()) {
      const file = path.join(dir, `t${i}.sess`);
      assert.equal(await sClient(issuer, { sessOut: file, tickets: true }), "New");
      for (const other of ports) {
        const got = await sClient(other, { sessIn: file, tickets: true });
        // the nodes' warn lines say whether one served a key of its own
        if (got !== "Reused")
          assert.fail(
            `ticket of n${i + 1} on ${other}: ${got}\n${cluster.nodes
              .map((n) =>
                n
                  .log()
                  .split("\n")
                  .filter((l) => l.includes("[warn]"))
                  .join("\n"),
              )
              .join("\n")}`,
          );
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// Tickets across a key rotation are shown on three nodes with a 4-second
// ssl_session_timeout in test/mail/ssl/shared-tls.test.ts ("tickets from any
// node are accepted by every node, TLS 1.2 and 1.3, before and after a key
// rotation"); this cluster keeps a 5-minute ssl_session_timeout.

test("limit_conn counts a client across nodes: the 11th connection through HAProxy is refused on whichever node it lands", async () => {
  const from = "127.0.0.6";
  const held = await holdSessions(cluster.port("imap"), 10, "limit", from);
  try {
    const c = await ImapConn.connect(cluster.port("imap"), { from });
    try {
      assert.equal(await c.line(), "* BYE Too many connections");
    } finally {
      c.close();
    }
    const limited = cluster.nodes.filter((n) => /limiting connections by zone "perip", client: 127\.0\.0\.6/.test(n.log()));
    assert.equal(limited.length, 1);
  } finally {
    for (const c of held.values()) c.close();
  }
});

test("failure throttling counts across nodes: after 4 failures spread over the nodes, the 5th is refused without asking auth_http", async () => {
  const from = "127.0.0.7";
  const asked = (): number => cluster.auth.parsed.filter((r) => r.header("Client-IP") === from).length;
  for (let i = 0; i < 4; i++) {
    const c = await ImapConn.connect(cluster.port("imap"), { from });
    assert.match(await c.line(), /^\* OK/);
    assert.equal(await c.command("a", `LOGIN bad${i} ${PASSWORD}`), "a NO Invalid login or password");
    c.close();
  }
  assert.equal(asked(), 4);
  const c = await ImapConn.connect(cluster.port("imap"), { from });
  assert.match(await c.line(), /^\* OK/);
  assert.equal(await c.command("a", `LOGIN bad9 ${PASSWORD}`), "a NO [UNAVAILABLE] Too many authentication failures, try later");
  c.close();
  assert.equal(asked(), 4);
});

test("the auth cache is shared: a login asked on node A is answered from the store on B and C", async () => {
  const before = cluster.auth.parsed.length;
  for (const n of cluster.nodes) {
    const c = await ImapConn.connect(n.direct.imap);
    await c.login("cached-user");
    c.close();
  }
  assert.equal(cluster.auth.parsed.length - before, 1);
});

test("Redis stopped under load: no failed login, the fallback logged and counted on every node; started again: sharing returns", async () => {
  const load = new Load(cluster.port("imap"), 3, "outage");
  try {
    await load.flowing();
    await cluster.redis.stop();
    await load.flowing(60);
    for (const n of cluster.nodes) {
      assert.match(n.log(), /\[warn\] .*shared store redis 127\.0\.0\.1:\d+ unavailable \(.*\), node-local state is used until it returns/);
      const page = await n.metrics();
      assert.match(page, /^postern_shared_store_up 0$/m);
      assert.match(page, /^postern_shared_store_fallbacks_total\{use="\w+"\} [1-9]/m);
    }
    // a node's log may already hold an "available again" line from an earlier outage: wait for a new one
    const back = /shared store redis 127\.0\.0\.1:\d+ is available again, shared state is used/g;
    const seen = cluster.nodes.map((n) => n.log().match(back)?.length ?? 0);
    await cluster.redis.start();
    const deadline = Date.now() + 15_000;
    for (const [i, n] of cluster.nodes.entries()) {
      let page = "";
      while (((n.log().match(back)?.length ?? 0) <= seen[i]! || !/^postern_shared_store_up 1$/m.test((page = await n.metrics()))) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 100));
      assert.ok((n.log().match(back)?.length ?? 0) > seen[i]!, `node ${i} logs the store's return`);
      assert.match(page, /^postern_shared_store_up 1$/m);
    }
    await load.flowing(30);
  } finally {
    const r = await load.stop();
    assert.deepEqual(r.failures, []);
  }
  // the store is empty after the restart: a new session made on A resumes on B again
  const dir = tmp();
  try {
    const file = path.join(dir, "after.sess");
    assert.equal(await sClient(cluster.nodes[0]!.direct.imaps, { sessOut: file, tickets: false }), "New");
    assert.equal(await sClient(cluster.nodes[1]!.direct.imaps, { sessIn: file, tickets: false }), "Reused");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

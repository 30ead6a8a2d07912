/**
 * limit_conn and the failure throttle of `sync` zones across two real
 * nodes sharing one Redis: connections held on node A make node B refuse
 * the next client with IMAP's `* BYE Too many connections` and log the
 * limit line; failures counted on node A throttle the same login on
 * node B (the login hash is the same on every node). Nothing in Redis
 * names the client's address or login.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { MailClient } from "../../support/client.js";
import { type Cluster, connect, eventually, logLines, login, startCluster } from "./cluster.js";

let cluster: Cluster;

before(async () => {
  cluster = await startCluster({
    mail: [
      "limit_conn_zone $binary_remote_addr zone=addr:32k sync;",
      "limit_conn_zone $remote_addr zone=alone:32k;",
      "limit_conn_log_level warn;",
      "auth_fail_zone zone=fails:32k window=1m sync;",
      "auth_fail_log_level warn;",
    ].join("\n"),
    server: "limit_conn addr 3; auth_fail_throttle fails delay_after=50 refuse_after=3;",
    auth: (backend) => (r) =>
      r.header("Auth-Pass") === "secret"
        ? {
            headers: [
              ["Auth-Status", "OK"],
              ["Auth-Server", "127.0.0.1"],
              ["Auth-Port", String(backend.port)],
            ],
          }
        : { headers: [["Auth-Status", "Invalid login or password"]] },
  });
});

after(async () => {
  await cluster?.close();
});

test("limit_conn sync: connections held on node A count on node B; released ones free a slot anywhere", async () => {
  const [a, b] = cluster.nodes as [(typeof cluster.nodes)[0], (typeof cluster.nodes)[0]];
  const open: MailClient[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const { client, first } = await connect(i < 2 ? a : b);
      assert.match(first, /^\* OK/, `client ${i} admitted`);
      open.push(client);
    }
    // the 4th from the same address: refused on either node, though neither holds 3 alone
    const onB = await connect(b);
    assert.equal(onB.first + (await onB.client.expectClosed(3000)), "* BYE Too many connections\r\n");
    const onA = await connect(a);
    assert.equal(onA.first + (await onA.client.expectClosed(3000)), "* BYE Too many connections\r\n");
    await eventually(() => logLines(b, /\[warn\] .*limiting connections by zone "addr", client: 127\.0\.0\.1/).length === 1, 3000, "node B's limit line");
    await eventually(() => logLines(a, /\[warn\] .*limiting connections by zone "addr", client: 127\.0\.0\.1/).length === 1, 3000, "node A's limit line");

    // no address in clear in Redis: every key is an opaque HMAC name
    const keys = await cluster.inspect.keys("*");
    assert.ok(keys.length >= 2, keys.join(" "));
    for (const k of keys) assert.match(k, /^postern:limit:[A-Za-z0-9_-]{43}$/);
    for (const k of keys) assert.equal(k.includes("127.0.0.1") || k.includes("7f000001"), false);

    // a client leaving node A frees a slot that node B sees
    open.shift()!.close();
    await eventually(
      async () => {
        const next = await connect(b);
        if (!next.first.startsWith("* OK")) {
          next.client.close();
          return false;
        }
        open.push(next.client);
        return true;
      },
      3000,
      "a slot freed on A to be usable on B",
    );
  } finally {
    for (const c of open) c.close();
  }
});

test("auth_fail_zone sync: failures of one login on node A and B throttle it on node B, from a fourth address", async () => {
  const [a, b] = cluster.nodes as [(typeof cluster.nodes)[0], (typeof cluster.nodes)[0]];
  // each failure from another address: only the login's count reaches 3
  assert.match(await login(a, "victim", "wrong1", "127.0.0.11"), /^a1 NO /);
  assert.match(await login(b, "victim", "wrong2", "127.0.0.12"), /^a1 NO /);
  assert.match(await login(a, "victim", "wrong3", "127.0.0.13"), /^a1 NO /);
  const asked = cluster.auth.parsed.filter((r) => r.header("Auth-User") === "victim").length;
  assert.equal(asked, 3);
  // node B itself saw one failure of this login: the other two are node A's, through Redis
  assert.equal(await login(b, "victim", "secret", "127.0.0.14"), "a1 NO [UNAVAILABLE] Too many authentication failures, try later\r\n");
  assert.equal(cluster.auth.parsed.filter((r) => r.header("Auth-User") === "victim").length, asked, "auth_http not asked");
  await eventually(() => logLines(b, /\[warn\] .*limiting authentication, failures: 3 by zone "fails"/).length >= 1, 3000, "node B's throttle line");
  // no login in clear in Redis
  for (const k of await cluster.inspect.keys("*")) assert.equal(k.includes("victim"), false);
  // another login from the same fourth address is not throttled: its address saw no failure
  assert.match(await login(b, "other", "secret", "127.0.0.14"), /^a1 OK/);
});

test("garbage under the limits' keys (non-numbers, forged node fields, wrong types) is discarded: no crash, the next client is served", async () => {
  const [a, b] = cluster.nodes as [(typeof cluster.nodes)[0], (typeof cluster.nodes)[0]];
  const open: MailClient[] = [];
  try {
    const { client, first } = await connect(a, "127.0.0.41");
    assert.match(first, /^\* OK/);
    open.push(client);
    for (const k of await cluster.inspect.keys("postern:limit:*")) {
      const type = await cluster.inspect.type(k);
      if (type === "hash") {
        // a field of no live node (a forged count) and a garbage count of a real node's field
        await cluster.inspect.hset(k, "forged-node", "65535");
        for (const f of await cluster.inspect.hkeys(k)) if (f !== "forged-node") await cluster.inspect.hset(k, f, "not a number");
      } else if (type === "string") await cluster.inspect.set(k, "99999999999999999999 garbage");
      else if (type === "zset") await cluster.inspect.zadd(k, "9999999999999", "forged-node");
    }
    // the forged field counts for nothing: a second client of that address is admitted on B
    const second = await connect(b, "127.0.0.41");
    assert.match(second.first, /^\* OK/);
    open.push(second.client);
    // wrong types under every key: the scripts delete them, logins and sessions go on
    for (const k of await cluster.inspect.keys("postern:limit:*")) {
      await cluster.inspect.del(k);
      await cluster.inspect.lpush(k, "x");
    }
    for (const node of [a, b]) assert.match(await login(node, "after-garbage", "secret", "127.0.0.42"), /^a1 OK/);
    for (const node of [a, b]) assert.equal(logLines(node, /shared store .* unavailable|\[(alert|crit|emerg)\]|exited on signal/).length, 0);
  } finally {
    for (const c of open) c.close();
  }
});

/**
 * Several auth services (auth_http URL URL ... max_fails= fail_timeout=):
 * round robin, failover without a failed login, nginx upstream's failure
 * accounting. Real sockets; a closed port stands for a server that is down.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { authenticate } from "../../../src/mail/auth-http/client.js";
import { closeIdle } from "../../../src/mail/auth-http/pool.js";
import { AuthPeerGroup } from "../../../src/mail/auth-http/peers.js";
import { parseAuthHttpTarget, targetPeers } from "../../../src/mail/auth-http/target.js";
import { okTo, startFakeAuth, type FakeAuth } from "../../support/fake-auth.js";
import { freePorts } from "../../support/ports.js";
import { makeSetup } from "./helpers.js";

const fakes: FakeAuth[] = [];
after(async () => {
  closeIdle();
  for (const f of fakes) await f.close();
});
async function fake(backend: number, keepAlive = false): Promise<FakeAuth> {
  const f = await startFakeAuth(okTo(backend), 0, { keepAlive });
  fakes.push(f);
  return f;
}

test("two live auth services share the logins round robin", async () => {
  const a = await fake(1001);
  const b = await fake(1002);
  const { params, lines } = makeSetup([a.url, b.url]);
  const backends: number[] = [];
  for (let i = 0; i < 4; i++) {
    const out = await authenticate(params());
    assert.equal(out.kind, "ok");
    if (out.kind === "ok") backends.push(out.backend.port);
  }
  assert.deepEqual(backends, [1001, 1002, 1001, 1002]);
  assert.deepEqual(lines(), []);
});

for (const keepAlive of [false, true]) {
  test(`one auth service down costs no login: failover logged at error, the peer disabled for fail_timeout${keepAlive ? " (keep-alive)" : ""}`, async () => {
    const [downPort] = await freePorts(1);
    const live = await fake(1002, keepAlive);
    const { params, lines } = makeSetup(
      [`127.0.0.1:${downPort}/auth`, live.url, "max_fails=1", "fail_timeout=30s"],
      keepAlive ? { keepalive: 4, keepaliveTimeout: 5000 } : {},
    );
    for (let i = 0; i < 4; i++) assert.equal((await authenticate(params())).kind, "ok", `login ${i}`);
    assert.equal(live.parsed.length, 4);
    const refused = keepAlive ? `connect() to 127.0.0.1:${downPort} failed (111: Connection refused)` : "recv() failed (111: Connection refused)";
    // tried once, then left out: one error line and one warning in four logins
    assert.deepEqual(lines(), [
      `[error] ${refused} while in http auth state`,
      `[warn] auth http server 127.0.0.1:${downPort} temporarily disabled while in http auth state`,
    ]);
  });
}

test("every auth service down: the client gets the temporary failure, each failure logged", async () => {
  const [p1, p2] = await freePorts(2);
  const { params, lines } = makeSetup([`127.0.0.1:${p1}`, `127.0.0.1:${p2}`, "max_fails=3"]);
  assert.deepEqual(await authenticate(params()), { kind: "error" });
  assert.deepEqual(lines(), [
    "[error] recv() failed (111: Connection refused) while in http auth state",
    "[error] recv() failed (111: Connection refused) while in http auth state",
  ]);
});

test("a refusal (Auth-Status) is an answer, not a failure: no failover, nothing disabled", async () => {
  const a = await startFakeAuth(() => ({ headers: [["Auth-Status", "Invalid login or password"]] }));
  fakes.push(a);
  const b = await fake(1002);
  const { params } = makeSetup([a.url, b.url, "max_fails=1"]);
  assert.equal((await authenticate(params())).kind, "refused");
  assert.equal(b.parsed.length, 0);
  assert.equal((await authenticate(params())).kind, "ok");
  assert.equal((await authenticate(params())).kind, "refused", "a is still in the rotation");
});

test("max_fails/fail_timeout follow nginx upstream: out after max_fails, one trial after fail_timeout, cleared by a success", () => {
  const target = parseAuthHttpTarget(["127.0.0.1:1", "127.0.0.1:2", "max_fails=2", "fail_timeout=10s"]);
  const [p1, p2] = targetPeers(target);
  const g = new AuthPeerGroup([p1!, p2!], 2, 10_000);
  assert.equal(g.failed(p1!, 1000), false);
  assert.equal(g.failed(p1!, 2000), true, "the second failure takes it out");
  assert.deepEqual(g.order(3000), [p2]);
  assert.deepEqual(g.order(11_000), [p2], "fail_timeout counts from the last failure");
  const trial = g.order(12_001);
  assert.ok(trial.includes(p1!), "after fail_timeout it may be tried");
  g.tried(p1!, 12_001);
  g.succeeded(p1!);
  assert.ok(g.order(12_002).includes(p1!));
  assert.equal(g.failed(p1!, 12_003), false, "the success cleared the count");
  // max_fails=0: never taken out
  const never = new AuthPeerGroup([p1!], 0, 10_000);
  for (let i = 0; i < 5; i++) never.failed(p1!, i);
  assert.deepEqual(never.order(10), [p1]);
});

test("a name resolving to several addresses makes one peer per address in a group, the first only without one", () => {
  const single = parseAuthHttpTarget(["localhost:9000/auth"]);
  assert.equal(targetPeers(single).length, 1);
  const fakeMulti = { ...single, grouped: true, urls: [{ ...single, addresses: [single.address, { kind: "inet" as const, host: "127.0.0.2", port: 9000 }] }] };
  assert.deepEqual(
    targetPeers(fakeMulti).map((p) => p.address),
    [
      { kind: "inet", host: "127.0.0.1", port: 9000 },
      { kind: "inet", host: "127.0.0.2", port: 9000 },
    ],
  );
});

/**
 * A binary upgrade (USR2) with `metrics_listen`: the old master hands the
 * endpoint's socket to the new one, so /health is answered `ready`
 * throughout the upgrade and after the old master's QUIT, and a rollback
 * gives the endpoint back to the old master
 * (docs/behaviour/cli.md#cli-9-binary-upgrade). Before, the new master could
 * not bind the address and the upgrade failed.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { PosternNode, alive } from "../support/cluster.js";
import { freePorts } from "../support/ports.js";

function conf(imap: number, metrics: number): string {
  return [
    "daemon on;",
    "worker_processes 1;",
    "pid nginx.pid;",
    "error_log error.log notice;",
    "events { worker_connections 64; }",
    `mail { auth_http 127.0.0.1:9/auth; metrics_listen 127.0.0.1:${metrics}; server { listen 127.0.0.1:${imap}; protocol imap; } }`,
    "",
  ].join("\n");
}

async function startNode(): Promise<PosternNode> {
  const [imap, metrics] = (await freePorts(2)) as [number, number];
  const node = new PosternNode("u", { imap, pop3: 0, smtp: 0, imaps: 0 }, { imaps: 0, imap: 0 }, metrics, conf(imap, metrics));
  await node.start();
  return node;
}

/** Polls /health every 20 ms until stop(); every answer, in order (status 0: refused or no answer). */
function watchHealth(node: PosternNode): { stop(): Promise<string[]> } {
  const seen: string[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const h = await node.health();
      seen.push(`${h.status} ${h.body}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return seen;
    },
  };
}

test("USR2 with metrics_listen: the new master takes over /health, answered ready throughout and after the old master's QUIT", async () => {
  const node = await startNode();
  try {
    const old = node.pid()!;
    const watch = watchHealth(node);
    const next = await node.upgrade(true);
    await new Promise((r) => setTimeout(r, 300));
    const seen = await watch.stop();
    assert.notEqual(next, old);
    assert.equal(alive(old), false);
    assert.deepEqual([...new Set(seen)], ["200 ready"]);
    assert.match(
      node.log(),
      new RegExp(`${next}#${next}: using inherited sockets from "127\\.0\\.0\\.1:\\d+;metrics_listen 127\\.0\\.0\\.1:${node.metricsPort};"`),
    );
  } finally {
    await node.cleanup();
  }
});

test("USR2 then a rollback (TERM to the new master): the old master serves /health again", async () => {
  const node = await startNode();
  try {
    const old = node.pid()!;
    node.signal("SIGUSR2", old);
    const deadline = Date.now() + 20_000;
    let next: number | undefined;
    while (Date.now() < deadline && !(next = node.pid() !== old ? node.pid() : undefined)) await new Promise((r) => setTimeout(r, 50));
    assert.ok(next);
    while (Date.now() < deadline && !new RegExp(`${next}#\\d+: start worker process`).test(node.log())) await new Promise((r) => setTimeout(r, 50));
    node.signal("SIGTERM", next);
    while (Date.now() < deadline && !/new binary process \d+ exited/.test(node.log())) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(await node.health(), { status: 200, body: "ready" });
    assert.equal(node.pid(), old);
  } finally {
    await node.cleanup();
  }
});

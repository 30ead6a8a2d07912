/**
 * Pre-authentication memory stays bounded while the limits are active:
 * 300 idle connections held under limit_conn (exactly at the limit, so the
 * next one is refused) and an auth_fail_throttle zone; the worker's RSS
 * grows by a bounded amount per connection, and the master, which holds
 * the counters, by little at all.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { MailClient } from "../../support/client.js";
import { assertHealthy, connectTo, goodSession, rssBytes, sleep, startBed, workerPids } from "../../hostile/env.js";

const HELD = 300;

test("idle connections under limit_conn and auth_fail_throttle: bounded worker RSS per connection, the master's counters small, the next client refused", async () => {
  const extra = [
    "  limit_conn_zone $binary_remote_addr zone=addr:1m;",
    "  limit_conn_zone $server_addr zone=servers:64k;",
    `  limit_conn addr ${HELD};`,
    "  limit_conn servers 10000;",
    "  auth_fail_zone zone=fails:1m;",
    "  auth_fail_throttle fails refuse_after=20;",
  ].join("\n");
  const bed = await startBed({ extra, proxyOptions: { events: "worker_connections 2048;" } });
  const held: MailClient[] = [];
  try {
    const [worker] = workerPids(bed.proxy.pid);
    assert.ok(worker !== undefined, "one worker");
    for (const name of ["imap", "pop3s", "smtp"] as const) await goodSession(bed, name);
    await sleep(300);
    const base = rssBytes(worker);
    const masterBase = rssBytes(bed.proxy.pid);
    const opens: Array<Promise<MailClient>> = [];
    for (let i = 0; i < HELD; i++) opens.push(connectTo(bed, (["imap", "pop3", "smtp"] as const)[i % 3]!, 10000));
    for (const c of await Promise.all(opens)) held.push(c);
    const greetings = await Promise.all(held.map((c) => c.readLine(10000)));
    assert.equal(greetings.filter((g) => /^(\* OK|\+OK|220 )/.test(g)).length, HELD);
    await sleep(500);
    const perConnection = (rssBytes(worker) - base) / HELD;
    const master = rssBytes(bed.proxy.pid) - masterBase;
    console.log(
      `# ${HELD} idle connections under limits: +${(perConnection / 1024).toFixed(1)} KiB per connection (worker), master +${(master / 1024).toFixed(0)} KiB`,
    );
    assert.ok(perConnection < 256 * 1024, `${(perConnection / 1024).toFixed(1)} KiB per idle connection`);
    assert.ok(master < 16 * 1048576, `the master grew by ${(master / 1048576).toFixed(1)} MiB`);
    // the limit is exact: the next one is refused
    const next = await connectTo(bed, "imap");
    assert.equal(await next.expectClosed(3000), "* BYE Too many connections\r\n");
    next.close();
    assertHealthy(bed);
  } finally {
    for (const c of held) c.close();
    await bed.stop();
  }
});

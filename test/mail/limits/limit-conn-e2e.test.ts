/**
 * limit_conn against a running Postern with two workers: the N+1th client
 * from one address gets its protocol's refusal and the close, the line
 * `limiting connections by zone "addr"` is logged at limit_conn_log_level;
 * the count spans both workers, is given back on close, is given back when
 * a worker is killed, and survives a reload (the master keeps the zone).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import type { MailClient } from "../../support/client.js";
import { socketInodesOf } from "../../process/harness.js";
import { GREETING, connectTo, eventually, logLines, processAlive, startBed, workerPids, type Bed, type PortName } from "../../hostile/env.js";

const LIMIT = 8;
const LIMITS = `  limit_conn_zone $binary_remote_addr zone=addr:32k;\n  limit_conn addr ${LIMIT};\n  limit_conn_log_level warn;`;

/** Opens a client and reads its greeting; the client stays open. */
async function admitted(bed: Bed, name: PortName): Promise<MailClient> {
  const c = await connectTo(bed, name);
  const protocol = name.replace(/s$/, "") as "imap" | "pop3" | "smtp";
  assert.match(await c.readLine(), GREETING[protocol], c.transcriptText());
  return c;
}

/** A client refused: what it got before the close. */
async function refused(bed: Bed, name: PortName): Promise<string> {
  const c = await connectTo(bed, name);
  try {
    return await c.expectClosed(3000);
  } finally {
    c.close();
  }
}

/**
 * The worker holding each client's connection, by the client's port: from
 * the kernel (which worker has the socket open), not from the log's
 * `connected` lines, which a reused client port can make name the wrong
 * worker (a CI run counted one client on the wrong side).
 */
function owners(bed: Bed): Map<number, number> {
  const inodes = new Map<string, number>();
  for (const pid of workerPids(bed.proxy.pid)) for (const inode of socketInodesOf(pid)) inodes.set(inode, pid);
  const owner = new Map<number, number>();
  // /proc/net/tcp: "sl local rem st ... inode"; the server side's remote port is the client's
  for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    const pid = f[9] === undefined ? undefined : inodes.get(f[9]);
    if (pid !== undefined && f[3] === "01") owner.set(parseInt(f[2]!.split(":")[1]!, 16), pid);
  }
  return owner;
}

/** How many more clients are admitted before one is refused (the clients admitted are returned open). */
async function fillUp(bed: Bed, into: MailClient[]): Promise<number> {
  for (let n = 0; n <= LIMIT; n++) {
    const c = await connectTo(bed, "imap");
    const first = await c.readLine().catch(() => "");
    if (!GREETING.imap.test(first)) {
      c.close();
      return n;
    }
    into.push(c);
  }
  throw new Error("no client was refused");
}

test("limit_conn with 2 workers: the N+1th is refused per protocol and logged; counted across workers; released on close, on a killed worker; kept across reload", async () => {
  const bed = await startBed({ extra: LIMITS, proxyOptions: { workerProcesses: 2 } });
  const open: MailClient[] = [];
  try {
    await eventually(() => workerPids(bed.proxy.pid).length === 2, 5000, "two workers");
    for (let i = 0; i < LIMIT; i++) open.push(await admitted(bed, (["imap", "pop3", "smtp"] as const)[i % 3]!));
    // the N clients were served by both workers: neither alone holds N
    const owner = owners(bed);
    const spread = new Set(open.map((c) => owner.get(c.localPort!)));
    assert.equal(spread.size, 2, `all ${LIMIT} clients on one worker: the shared count cannot be judged`);

    assert.equal(await refused(bed, "imap"), "* BYE Too many connections\r\n");
    assert.equal(await refused(bed, "pop3"), "-ERR Too many connections\r\n");
    assert.equal(await refused(bed, "smtp"), "421 4.7.0 Too many connections\r\n");
    // an ssl listener: no TLS spoken yet, so nothing but the close
    await assert.rejects(connectTo(bed, "imaps", 3000));
    await eventually(
      () => logLines(bed, "warn", /limiting connections by zone "addr", client: 127\.0\.0\.1, server: 127\.0\.0\.1:\d+$/).length === 4,
      3000,
      "4 warn lines",
    );
    assert.equal(logLines(bed, "error", "limiting connections").length, 0);

    // released on close: the next client gets in once one leaves
    open.shift()!.close();
    let back: MailClient | undefined;
    for (let i = 0; i < 50 && !back; i++) {
      const c = await connectTo(bed, "imap");
      if (GREETING.imap.test(await c.readLine().catch(() => ""))) back = c;
      else c.close();
    }
    assert.ok(back, "a slot came back after a close");
    open.push(back);

    // a killed worker gives its connections back
    const byOwner = owners(bed);
    const [victim] = workerPids(bed.proxy.pid) as [number, number];
    const held = open.filter((c) => byOwner.get(c.localPort!) === victim);
    process.kill(victim, "SIGKILL");
    await eventually(() => !processAlive(victim), 3000, "the victim to die");
    await eventually(() => workerPids(bed.proxy.pid).length === 2, 5000, "a replacement worker");
    for (const c of held) await c.expectClosed(3000);
    const survivors = open.filter((c) => !held.includes(c));
    open.length = 0;
    open.push(...survivors);
    assert.equal(await fillUp(bed, open), held.length, `the killed worker held ${held.length}`);
    assert.equal(open.length, LIMIT);

    // a reload keeps the zone and its counts: still full
    const generation = logLines(bed, "notice", "start worker process").length;
    bed.proxy.signal("SIGHUP");
    await eventually(() => logLines(bed, "notice", "start worker process").length >= generation + 2, 5000, "new workers");
    assert.equal(await refused(bed, "pop3"), "-ERR Too many connections\r\n");
    // the clients that hold the count are still there, served by the old worker
    const imapClient = open[open.length - 1]!;
    await imapClient.send("n1 NOOP\r\n");
    assert.match(await imapClient.read(/^n1 .*\r\n/m), /^n1 OK/m);
    for (const c of open.splice(0)) c.close();
    let fresh: MailClient | undefined;
    for (let i = 0; i < 50 && !fresh; i++) {
      const c = await connectTo(bed, "pop3");
      if (GREETING.pop3.test(await c.readLine().catch(() => ""))) fresh = c;
      else c.close();
    }
    assert.ok(fresh, "the old workers' clients gave their counts back after the reload");
    open.push(fresh);
    assert.deepEqual(logLines(bed, "crit", ""), []);
  } finally {
    for (const c of open) c.close();
    await bed.stop();
  }
});

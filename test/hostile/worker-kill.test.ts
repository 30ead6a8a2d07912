/**
 * Process faults: with two workers, one is killed with SIGKILL while
 * sessions are proxied on both. The master logs the death and starts a
 * replacement (nginx: `[alert] worker process PID exited on signal 9`, then
 * `start worker process PID`); the sessions on the other worker go on
 * untouched; new clients are served.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { MailClient } from "../support/client.js";
import { USER, PASSWORD, eventually, goodSession, logLines, processAlive, sleep, startBed, workerPids } from "./env.js";

test("a worker killed with SIGKILL mid-session is replaced; sessions on the other worker continue", async () => {
  const bed = await startBed({ proxyOptions: { workerProcesses: 2 } });
  const sessions: Array<{ client: MailClient; localPort: number; tag: number }> = [];
  try {
    await eventually(() => workerPids(bed.proxy.pid).length === 2, 5000, "two workers");
    const workers = workerPids(bed.proxy.pid);
    // logged-in IMAP sessions, proxied to the fake backend; spread over both workers by the kernel
    for (let i = 0; i < 16; i++) {
      const client = await MailClient.connect({ port: bed.ports.imap });
      await client.readLine();
      await client.send(`l${i} LOGIN ${USER} ${PASSWORD}\r\n`);
      assert.match(await client.read(/^l\d+ .*\r\n/m), /OK/);
      sessions.push({ client, localPort: client.localPort!, tag: i });
    }
    // which worker serves which session: `PID#TID: *N client 127.0.0.1:PORT connected` (info)
    const owner = new Map<number, number>();
    for (const line of logLines(bed, "info", / client 127\.0\.0\.1:\d+ connected to /)) {
      const m = / (\d+)#\d+: \*\d+ client 127\.0\.0\.1:(\d+) connected/.exec(line);
      if (m) owner.set(Number(m[2]), Number(m[1]));
    }
    const byWorker = new Map<number, typeof sessions>();
    for (const s of sessions) {
      const pid = owner.get(s.localPort);
      assert.ok(pid !== undefined && workers.includes(pid), `session from port ${s.localPort} has no known worker (${pid})`);
      byWorker.set(pid, [...(byWorker.get(pid) ?? []), s]);
    }
    assert.equal(byWorker.size, 2, `all 16 sessions landed on one worker (${[...byWorker.keys()].join(",")}): the kill cannot be judged`);
    const [victim, survivor] = workers as [number, number];
    process.kill(victim, "SIGKILL");
    await eventually(() => !processAlive(victim), 3000, "the victim to die");
    // the replacement
    await eventually(() => workerPids(bed.proxy.pid).length === 2 && !workerPids(bed.proxy.pid).includes(victim), 5000, "a replacement worker");
    await eventually(() => logLines(bed, "alert", `worker process ${victim} exited on signal 9`).length === 1, 3000, "the alert line for the killed worker");
    const replacement = workerPids(bed.proxy.pid).find((p) => p !== survivor)!;
    await eventually(
      () => logLines(bed, "notice", `start worker process ${replacement}`).length === 1,
      3000,
      "the `start worker process` line of the replacement",
    );
    // the victim's sessions are gone, the survivor's go on
    for (const s of byWorker.get(victim)!) await s.client.expectClosed(3000);
    for (const s of byWorker.get(survivor)!) {
      await s.client.send(`n${s.tag} NOOP\r\n`);
      assert.match(await s.client.read(/^n\d+ .*\r\n/m), new RegExp(`^n${s.tag} OK`, "m"));
      await s.client.send(`o${s.tag} LOGOUT\r\n`);
      assert.match(await s.client.read(/^o\d+ .*\r\n/m), new RegExp(`^o${s.tag} OK`, "m"));
    }
    await sleep(100);
    for (let i = 0; i < 6; i++) await goodSession(bed, (["imap", "pop3s", "smtp"] as const)[i % 3]!);
    // the only alert is the one for the killed worker
    assert.deepEqual(
      bed.proxy
        .errorLog()
        .split("\n")
        .filter((l) => / \[(alert|crit|emerg)\] /.test(l) && !l.includes(`worker process ${victim} exited on signal 9`)),
      [],
    );
    assert.equal(processAlive(bed.proxy.pid), true);
  } finally {
    for (const s of sessions) s.client.close();
    await bed.stop();
  }
});

test("rapid reloads (6 HUPs 300 ms apart) during logins: no worker dies on a signal, every session succeeds", async () => {
  const bed = await startBed({ proxyOptions: { workerProcesses: 2 } });
  try {
    let stop = false;
    let sessions = 0;
    const failures: string[] = [];
    const load = (async () => {
      for (let i = 0; !stop; i++) {
        try {
          await goodSession(bed, (["imap", "pop3s", "smtp"] as const)[i % 3]!);
          sessions++;
        } catch (e) {
          failures.push((e as Error).message.split("\n")[0]!);
        }
      }
    })();
    for (let i = 0; i < 6; i++) {
      bed.proxy.signal("SIGHUP");
      await sleep(300);
    }
    await sleep(1500);
    stop = true;
    await load;
    assert.deepEqual(failures, []);
    assert.ok(sessions > 0);
    // nginx: old workers get QUIT and leave with `exited with code 0` (notice); a death by signal is an [alert]
    assert.deepEqual(
      bed.proxy
        .errorLog()
        .split("\n")
        .filter((l) => / \[(alert|crit|emerg)\] /.test(l)),
      [],
    );
    assert.equal(processAlive(bed.proxy.pid), true);
  } finally {
    await bed.stop();
  }
});

/** Graceful and fast shutdown, bind failures (compared with nginx), daemon mode, master_process off. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import net from "node:net";
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { Client, Instance, START_WAIT_MS, config, freePort, waitFor } from "./harness.js";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** True once a connection to `port` is refused, trying for up to a second (the last close is a moment behind its log line). */
async function refusedSoon(port: number): Promise<boolean> {
  for (let i = 0; i < 20; i++) {
    const refused = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(false);
      });
      s.once("error", (err: NodeJS.ErrnoException) => resolve(err.code === "ECONNREFUSED"));
    });
    if (refused) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

test("QUIT: held session keeps working, new connections refused, then exit 0 and pid file removed", async () => {
  const inst = new Instance();
  try {
    const port = await freePort();
    inst.write(config({ ports: [port], workers: 2 }));
    const pid = await inst.up();
    await waitFor("workers", () => (inst.log().match(/start worker process \d/g) ?? []).length === 2);
    const held = await Client.connect(port);
    assert.equal(await held.line(), "* OK IMAP4 ready");
    process.kill(pid, "SIGQUIT");
    // each worker logs the line, then closes its listening socket
    await waitFor("both workers shutting down", () => (inst.log().match(/gracefully shutting down/g) ?? []).length === 2);
    assert.equal(await refusedSoon(port), true, "new connections are refused");
    assert.equal(await held.command("q NOOP"), "q OK completed");
    assert.ok(inst.pidText() !== undefined, "the master waits for the session");
    assert.deepEqual(await held.tagged("z", "LOGOUT"), { untagged: ["* BYE"], reply: "z OK completed" });
    assert.equal(await inst.exit, 0);
    assert.equal(inst.pidText(), undefined);
    assert.match(inst.log(), /signal 3 \(SIGQUIT\) received, shutting down\n/);
    assert.match(inst.log(), /\[notice\] \d+#\d+: exit\n$/);
  } finally {
    await inst.cleanup();
  }
});

test("QUIT with worker_shutdown_timeout cuts a session that does not end", async () => {
  const inst = new Instance();
  try {
    const port = await freePort();
    inst.write(config({ ports: [port], workers: 1, extra: "worker_shutdown_timeout 300ms;" }));
    const pid = await inst.up();
    await waitFor("worker", () => /start worker process \d/.test(inst.log()));
    const held = await Client.connect(port);
    await held.line();
    const t0 = Date.now();
    process.kill(pid, "SIGQUIT");
    assert.equal(await inst.exit, 0);
    assert.ok(Date.now() - t0 < 4000);
    await waitFor("client closed", () => held.closed);
  } finally {
    await inst.cleanup();
  }
});

test("TERM: fast shutdown drops sessions, exit 0, pid file removed", async () => {
  const inst = new Instance();
  try {
    const port = await freePort();
    inst.write(config({ ports: [port], workers: 2 }));
    const pid = await inst.up();
    await waitFor("workers", () => (inst.log().match(/start worker process \d/g) ?? []).length === 2);
    const held = await Client.connect(port);
    await held.line();
    process.kill(pid, "SIGTERM");
    assert.equal(await inst.exit, 0);
    await waitFor("session dropped", () => held.closed);
    assert.equal(inst.pidText(), undefined);
    assert.match(inst.log(), /signal 15 \(SIGTERM\) received, exiting\n/);
  } finally {
    await inst.cleanup();
  }
});

test("bind failure: same messages as nginx (5 tries, still could not bind), exit 1", async () => {
  const blocker = net.createServer();
  const port = await freePort();
  await new Promise<void>((r) => blocker.listen(port, "127.0.0.1", r));
  const inst = new Instance();
  const nginxDir = new Instance();
  try {
    inst.write(config({ ports: [port] }));
    inst.start();
    const code = await inst.exit;
    // nginx on the same configuration (its -e log in its own directory)
    writeFileSync(join(nginxDir.dir, "nginx.conf"), config({ ports: [port] }));
    const n = spawnSync("/usr/sbin/nginx", ["-p", nginxDir.dir + "/", "-c", "nginx.conf", "-e", "error.log"], { encoding: "utf8", timeout: 15000 });
    assert.equal(code, 1);
    assert.equal(n.status, 1);
    const want = `nginx: [emerg] bind() to 127.0.0.1:${port} failed (98: Address already in use)\n`;
    assert.equal(inst.stderr, want.repeat(5) + "nginx: [emerg] still could not bind()\n");
    assert.equal(inst.stderr, n.stderr);
    assert.equal(inst.pidText(), undefined);
  } finally {
    blocker.close();
    await inst.cleanup();
    await nginxDir.cleanup();
  }
});

test("daemon on: the launcher exits 0, the pid file names the detached master", async () => {
  const inst = new Instance();
  try {
    const port = await freePort();
    inst.write(config({ ports: [port], daemon: true, workers: 1 }));
    inst.start();
    assert.equal(await inst.exit, 0);
    const pid = Number((await waitFor("pid file", () => inst.pidText() || undefined, START_WAIT_MS)).trim());
    assert.notEqual(pid, inst.child!.pid);
    assert.ok(alive(pid));
    const c = await Client.connect(port);
    assert.equal(await c.line(), "* OK IMAP4 ready");
    c.close();
    const stop = await inst.command(["-s", "stop"]);
    assert.equal(stop.code, 0);
    await waitFor("daemon gone", () => !alive(pid));
    assert.equal(inst.pidText(), undefined);
  } finally {
    await inst.cleanup();
  }
});

test("daemon on with a bind failure: the launcher prints the errors and exits 1", async () => {
  const blocker = net.createServer();
  const port = await freePort();
  await new Promise<void>((r) => blocker.listen(port, "127.0.0.1", r));
  const inst = new Instance();
  try {
    inst.write(config({ ports: [port], daemon: true }));
    inst.start();
    assert.equal(await inst.exit, 1);
    assert.match(inst.stderr, /nginx: \[emerg\] still could not bind\(\)\n$/);
  } finally {
    blocker.close();
    await inst.cleanup();
  }
});

test("master_process off: one process serves, reloads and quits", async () => {
  const inst = new Instance();
  try {
    const port = await freePort();
    inst.write(config({ ports: [port], master: false, capability: "XONE" }));
    const pid = await inst.up();
    const held = await Client.connect(port);
    assert.equal(await held.line(), "* OK IMAP4 ready");
    assert.match(await held.capability(), /\bXONE\b/);
    assert.doesNotMatch(inst.log(), /start worker process/);
    inst.write(config({ ports: [port], master: false, capability: "XTWO" }));
    process.kill(pid, "SIGHUP");
    await waitFor("reconfigured", () => /reconfiguring/.test(inst.log()));
    await new Promise((r) => setTimeout(r, 300));
    const c = await Client.connect(port);
    await c.line();
    assert.match(await c.capability(), /\bXTWO\b/);
    c.close();
    assert.equal(await held.command("a NOOP"), "a OK completed");
    process.kill(pid, "SIGQUIT");
    await assert.rejects(async () => {
      await new Promise((r) => setTimeout(r, 100));
      (await Client.connect(port)).close();
    }, /ECONNREFUSED/);
    held.close();
    assert.equal(await inst.exit, 0);
    assert.equal(inst.pidText(), undefined);
  } finally {
    await inst.cleanup();
  }
});

test("TERM escalates to KILL for a worker that does not exit", async () => {
  const inst = new Instance();
  try {
    const port = await freePort();
    inst.write(config({ ports: [port], workers: 1 }));
    const pid = await inst.up();
    const w = Number(await waitFor("worker", () => /start worker process (\d+)/.exec(inst.log())?.[1]));
    process.kill(w, "SIGSTOP"); // a stopped worker cannot react to TERM
    const t0 = Date.now();
    process.kill(pid, "SIGTERM");
    assert.equal(await inst.exit, 0);
    const took = Date.now() - t0;
    assert.ok(took >= 1000 && took < 5000, `took ${took} ms`);
    assert.match(inst.log(), new RegExp(`\\[alert\\] \\d+#\\d+: worker process ${w} exited on signal 9\\n`));
    assert.equal(inst.pidText(), undefined);
  } finally {
    await inst.cleanup();
  }
});

/** Master/worker start, reload (good and bad), worker respawn, log reopening, -s through the pid file. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, renameSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { Client, Instance, config, freePort, waitFor, workerPids } from "./harness.js";

test("start with 2 workers: notices, pid file, process titles, clients served", async () => {
  const inst = new Instance();
  try {
    const port = await freePort();
    inst.write(config({ ports: [port], workers: 2 }));
    const pid = await inst.up();
    assert.equal(inst.pidText(), `${pid}\n`);
    assert.equal(pid, inst.child!.pid, "daemon off: the foreground process is the master");
    const log = await waitFor("two workers", () => (workerPids(inst.log()).length === 2 ? inst.log() : undefined));
    // nginx's notice is `nginx/1.22.1`; Postern adds what is really running, as -v does
    assert.match(log, new RegExp(`\\[notice\\] ${pid}#${pid}: nginx/1\\.22\\.1 \\(postern/0\\.1\\.0\\)\\n`));
    assert.equal(/\[notice\] \d+#\d+: nginx\/([0-9.]+)/.exec(log)?.[1], "1.22.1", "what tooling matches on nginx's notice");
    assert.match(log, /\[notice\] \d+#\d+: OS: Linux \S+\n/);
    assert.match(log, /\[notice\] \d+#\d+: getrlimit\(RLIMIT_NOFILE\): \d+:\d+\n/);
    assert.match(log, /\[notice\] \d+#\d+: start worker processes\n/);
    assert.match(readFileSync(`/proc/${pid}/cmdline`, "latin1"), /^postern: master process -p /);
    for (const w of workerPids(log)) assert.match(readFileSync(`/proc/${w}/cmdline`, "latin1"), /^postern: worker process/);
    const c = await Client.connect(port);
    assert.equal(await c.line(), "* OK IMAP4 ready");
    assert.equal(await c.command("a NOOP"), "a OK completed");
    c.close();
  } finally {
    await inst.cleanup();
  }
});

test("HUP with a changed config: held session keeps working, new connections see the new config, pid unchanged", async () => {
  const inst = new Instance();
  try {
    const [p1, p2, p3] = [await freePort(), await freePort(), await freePort()];
    inst.write(config({ ports: [p1, p2], capability: "XOLD" }));
    const pid = await inst.up();
    await waitFor("workers", () => workerPids(inst.log()).length === 2);
    const held = await Client.connect(p1);
    assert.equal(await held.line(), "* OK IMAP4 ready");
    assert.match(await held.capability(), /\bXOLD\b/);

    inst.write(config({ ports: [p1, p3], capability: "XNEW" }));
    // connect continuously across the switch: no attempt may be refused
    let probing = true;
    const failures: string[] = [];
    let attempts = 0;
    const prober = (async () => {
      while (probing) {
        attempts++;
        try {
          const c = await Client.connect(p1);
          await c.line();
          c.close();
        } catch (err) {
          failures.push(String(err));
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    process.kill(pid, "SIGHUP");
    await waitFor("new workers", () => workerPids(inst.log()).length === 4);
    assert.match(inst.log(), /\[notice\] \d+#\d+: signal 1 \(SIGHUP\) received, reconfiguring\n.*\[notice\] \d+#\d+: reconfiguring\n/s);

    // every connection during and after the switch is accepted
    let newSeen = false;
    for (let i = 0; i < 20 && !newSeen; i++) {
      const c = await Client.connect(p1);
      await c.line();
      newSeen = /\bXNEW\b/.test(await c.capability());
      c.close();
    }
    assert.ok(newSeen, "new connections reach the new workers");
    // the old worker without the held session has gone (the other waits for it)
    await waitFor("an old worker gone", () => (inst.log().match(/exited with code 0/g) ?? []).length >= 1);
    await new Promise((r) => setTimeout(r, 300));
    probing = false;
    await prober;
    assert.deepEqual(failures, []);
    assert.ok(attempts > 5, `${attempts} attempts`);
    const c3 = await Client.connect(p3);
    await c3.line();
    assert.match(await c3.capability(), /\bXNEW\b/);
    c3.close();
    await assert.rejects(async () => {
      for (let i = 0; i < 40; i++) {
        (await Client.connect(p2)).close();
        await new Promise((r) => setTimeout(r, 50));
      }
    }, /ECONNREFUSED/);
    assert.equal(await held.command("h1 NOOP"), "h1 OK completed", "the held session survives the reload");
    assert.match(await held.capability(), /\bXOLD\b/, "and keeps its old configuration");
    assert.equal(inst.pidText(), `${pid}\n`);
    assert.match(inst.log(), /gracefully shutting down/);
    held.close();
    await waitFor("both old workers gone", () => (inst.log().match(/exited with code 0/g) ?? []).length === 2);
  } finally {
    await inst.cleanup();
  }
});

test("HUP with a broken config: [emerg] logged, old workers keep serving", async () => {
  const inst = new Instance();
  try {
    const port = await freePort();
    inst.write(config({ ports: [port], capability: "XFIRST" }));
    const pid = await inst.up();
    await waitFor("workers", () => workerPids(inst.log()).length === 2);
    inst.write(config({ ports: [port], capability: "XSECOND", extra: "bogus_directive;" }));
    process.kill(pid, "SIGHUP");
    await waitFor("emerg", () => /\[emerg\] \d+#\d+: unknown directive "bogus_directive" in \S+nginx\.conf:7\n/.test(inst.log()));
    const c = await Client.connect(port);
    assert.equal(await c.line(), "* OK IMAP4 ready");
    assert.match(await c.capability(), /\bXFIRST\b/);
    c.close();
    assert.equal(workerPids(inst.log()).length, 2, "no new workers");
    assert.doesNotMatch(inst.log(), /gracefully shutting down/);
  } finally {
    await inst.cleanup();
  }
});

for (const master of [true, false]) {
  test(`HUP adding a listen on a busy port (master_process ${master ? "on" : "off"}): nginx's bind() lines and nothing more at emerg, the old configuration keeps serving`, async () => {
    const blocker = net.createServer();
    const busy = await freePort();
    await new Promise<void>((r) => blocker.listen(busy, "127.0.0.1", r));
    const inst = new Instance();
    try {
      const port = await freePort();
      inst.write(config({ ports: [port], capability: "XFIRST", master, workers: 1 }));
      const pid = await inst.up();
      if (master) await waitFor("worker", () => workerPids(inst.log()).length === 1);
      inst.write(config({ ports: [port, busy], capability: "XSECOND", master, workers: 1 }));
      process.kill(pid, "SIGHUP");
      // five tries 500 ms apart: 2.5 s idle, much longer on a loaded CI machine
      await waitFor("bind given up", () => /still could not bind\(\)/.test(inst.log()), 20_000);
      // as nginx's ngx_open_listening_sockets: five tries, then the summary line; the
      // failure is not reported a second time by whoever started the reload
      const emerg = inst
        .log()
        .split("\n")
        .filter((l) => l.includes("[emerg]"))
        .map((l) => l.replace(/^.*\[emerg\] \d+#\d+: /, ""));
      assert.deepEqual(emerg, [...Array<string>(5).fill(`bind() to 127.0.0.1:${busy} failed (98: Address already in use)`), "still could not bind()"]);
      const c = await Client.connect(port);
      assert.equal(await c.line(), "* OK IMAP4 ready");
      assert.match(await c.capability(), /\bXFIRST\b/);
      c.close();
      if (master) assert.equal(workerPids(inst.log()).length, 1, "no new workers");
    } finally {
      blocker.close();
      await inst.cleanup();
    }
  });
}

test("a killed worker is logged and replaced; the socket stays open meanwhile", async () => {
  const inst = new Instance();
  try {
    const port = await freePort();
    inst.write(config({ ports: [port], workers: 1 }));
    await inst.up();
    const [w] = await waitFor("worker", () => (workerPids(inst.log()).length === 1 ? workerPids(inst.log()) : undefined));
    process.kill(w!, "SIGKILL");
    // connecting right away must not be refused: the master keeps the listening socket
    const c = await Client.connect(port);
    await waitFor("respawn", () => workerPids(inst.log()).length === 2);
    assert.equal(await c.line(), "* OK IMAP4 ready");
    c.close();
    assert.match(inst.log(), new RegExp(`\\[alert\\] \\d+#\\d+: worker process ${w} exited on signal 9\\n`));
  } finally {
    await inst.cleanup();
  }
});

test("USR1 after renaming the log creates a new log (master and workers)", async () => {
  const inst = new Instance();
  try {
    const port = await freePort();
    inst.write(config({ ports: [port], workers: 2 }));
    const pid = await inst.up();
    await waitFor("workers", () => workerPids(inst.log()).length === 2);
    renameSync(join(inst.dir, "error.log"), join(inst.dir, "error.log.1"));
    process.kill(pid, "SIGUSR1");
    await waitFor("new log", () => existsSync(join(inst.dir, "error.log")));
    const oldLog = await waitFor("workers reopen", () => {
      const t = readFileSync(join(inst.dir, "error.log.1"), "utf8");
      return (t.match(/reopening logs/g) ?? []).length >= 3 ? t : undefined;
    });
    assert.match(oldLog, new RegExp(`\\[notice\\] ${pid}#${pid}: signal 10 \\(SIGUSR1\\) received, reopening logs\\n`));
    const c = await Client.connect(port);
    await c.line();
    c.close();
    await waitFor("worker writes to the new log", () => /client 127\.0\.0\.1:\d+ connected/.test(inst.log()));
  } finally {
    await inst.cleanup();
  }
});

test("-s reload and -s quit through the pid file; -s without a running master fails", async () => {
  const inst = new Instance();
  try {
    const port = await freePort();
    inst.write(config({ ports: [port], capability: "XBEFORE" }));
    const pid = await inst.up();
    await waitFor("workers", () => workerPids(inst.log()).length === 2);
    inst.write(config({ ports: [port], capability: "XAFTER" }));
    const r = await inst.command(["-s", "reload"]);
    assert.equal(r.code, 0);
    assert.equal(r.stderr, "");
    assert.match(inst.log(), /\[notice\] \d+#\d+: signal process started\n/);
    await waitFor("reloaded", () => workerPids(inst.log()).length === 4);
    const q = await inst.command(["-s", "quit"]);
    assert.equal(q.code, 0);
    assert.equal(await inst.exit, 0);
    assert.equal(inst.pidText(), undefined, "pid file removed");
    const again = await inst.command(["-s", "stop"]);
    assert.equal(again.code, 1);
    assert.equal(again.stderr, `nginx: [error] open() "${inst.pidPath}" failed (2: No such file or directory)\n`);
    assert.ok(pid > 0);
  } finally {
    await inst.cleanup();
  }
});

test("user nobody (started as root): workers run as nobody, the master stays root", async () => {
  const inst = new Instance();
  try {
    const port = await freePort();
    inst.write(config({ ports: [port], workers: 1, extra: "user nobody nogroup;" }));
    const pid = await inst.up();
    const [w] = await waitFor("worker", () => (workerPids(inst.log()).length === 1 ? workerPids(inst.log()) : undefined));
    const uid = (p: number): string => /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${p}/status`, "utf8"))![1]!;
    const nobody = /^nobody:[^:]*:(\d+):/m.exec(readFileSync("/etc/passwd", "utf8"))![1]!;
    assert.equal(uid(w!), nobody);
    assert.equal(uid(pid), "0");
    const c = await Client.connect(port);
    assert.equal(await c.line(), "* OK IMAP4 ready");
    c.close();
  } finally {
    await inst.cleanup();
  }
});

test("worker_rlimit_nofile is applied to workers, not to the master", async () => {
  const inst = new Instance();
  try {
    const port = await freePort();
    inst.write(config({ ports: [port], workers: 1, extra: "worker_rlimit_nofile 777;" }));
    const pid = await inst.up();
    const [w] = await waitFor("worker", () => (workerPids(inst.log()).length === 1 ? workerPids(inst.log()) : undefined));
    const nofile = (p: number): string =>
      /^Max open files\s+(\d+)\s+(\d+)/m
        .exec(readFileSync(`/proc/${p}/limits`, "utf8"))!
        .slice(1)
        .join(":");
    await waitFor("limit applied", () => nofile(w!) === "777:777");
    assert.notEqual(nofile(pid), "777:777");
    assert.doesNotMatch(inst.log(), /\[alert\]/);
  } finally {
    await inst.cleanup();
  }
});

/**
 * No Postern process ever opens the Node.js inspector (issue 10, item 3).
 *
 * Node opens an unauthenticated inspector on 127.0.0.1:9229 when a process
 * gets SIGUSR1 before it has a handler for it; the master forwards USR1 to
 * its workers, so HUP (new workers) then USR1 raced into it. `--inspect`
 * in NODE_OPTIONS or on node's command line must not reach workers either.
 * The check: every TCP port in LISTEN state held by the master or a worker
 * (from /proc/PID/fd and /proc/net/tcp) is a configured mail port.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { readFileSync } from "node:fs";
import { Client, Instance, childPids, config, freePort, listeningPortsOf, waitFor, workerPids } from "./harness.js";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Ports the master and its children listen on, besides the configured ones. */
function strayPorts(master: number, configured: readonly number[]): number[] {
  return [...listeningPortsOf([master, ...childPids(master)])].filter((p) => !configured.includes(p));
}

/** True when something accepts a TCP connection on 127.0.0.1:port. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** Clients that connect, read the greeting and leave, until stopped. */
function load(port: number, clients: number): { stop: () => Promise<void>; served: () => number } {
  let running = true;
  let served = 0;
  const loops = Array.from({ length: clients }, async () => {
    while (running) {
      try {
        const c = await Client.connect(port);
        await c.line();
        served++;
        c.close();
      } catch {
        // a connection caught by a reload: try again
      }
      await sleep(5);
    }
  });
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
    served: () => served,
  };
}

test("HUP then USR1 repeated under load: no process ever listens on an inspector port", async () => {
  const inst = new Instance();
  try {
    const port = await freePort();
    inst.write(config({ ports: [port], workers: 2 }));
    const master = await inst.up();
    await waitFor("two workers", () => workerPids(inst.log()).length === 2);
    const clients = load(port, 3);
    const seen: string[] = [];
    try {
      for (let i = 0; i < 12; i++) {
        process.kill(master, "SIGHUP");
        process.kill(master, "SIGUSR1");
        // the new workers are starting now: probe while they do and once they are up
        for (const wait of [20, 60, 150]) {
          await sleep(wait);
          const stray = strayPorts(master, [port]);
          if (stray.length > 0) seen.push(`round ${i}: ports ${stray.join(",")}`);
          if (await accepts(9229)) seen.push(`round ${i}: 127.0.0.1:9229 accepts`);
        }
      }
    } finally {
      await clients.stop();
    }
    assert.deepEqual(seen, []);
    assert.doesNotMatch(inst.stderr, /Debugger listening|inspector/i);
    assert.ok(clients.served() > 0, "the load reached the server");
    // still serving after all that
    const c = await Client.connect(port);
    assert.equal(await c.line(), "* OK IMAP4 ready");
    c.close();
  } finally {
    await inst.cleanup();
  }
});

test("--inspect in NODE_OPTIONS, on node's command line or passed by `env`: workers never get it, no inspector stays open", async () => {
  const inst = new Instance();
  try {
    const port = await freePort();
    // port 0: every process that opened an inspector would hold its own port
    inst.write(config({ ports: [port], workers: 2, extra: "env NODE_OPTIONS; env NODE_DEBUG=net;" }));
    const env = { ...process.env, NODE_OPTIONS: "--inspect=127.0.0.1:0" };
    const master = await inst.up([], { env, nodeArgs: ["--inspect=127.0.0.1:0"] });
    const workers = await waitFor("two workers", () => (workerPids(inst.log()).length === 2 ? workerPids(inst.log()) : undefined));
    await waitFor("the workers listening", () => {
      try {
        return workers.every((w) => listeningPortsOf([w]).has(port));
      } catch {
        return false;
      }
    });
    for (const w of workers) {
      const environ = readFileSync(`/proc/${w}/environ`, "latin1").split("\0");
      assert.deepEqual(
        environ.filter((e) => e.startsWith("NODE_") && !e.startsWith("NODE_CHANNEL_")),
        [],
        `worker ${w} environment`,
      );
      assert.doesNotMatch(readFileSync(`/proc/${w}/cmdline`, "latin1"), /--inspect/);
      assert.deepEqual(strayPorts(w, [port]).length, 0, `worker ${w} listens on an inspector port`);
    }
    await waitFor("the master's inspector closed", () => strayPorts(master, [port]).length === 0, 3000);
    // the operator is told why their switches had no effect
    assert.match(inst.log(), /\[warn\] .*"env NODE_OPTIONS" ignored: Node\.js runtime variables never reach workers/);
    assert.match(inst.log(), /\[warn\] .*the Node\.js inspector opened by --inspect or NODE_OPTIONS is closed/);
    const c = await Client.connect(port);
    assert.equal(await c.line(), "* OK IMAP4 ready");
    c.close();
  } finally {
    await inst.cleanup();
  }
});

test("daemon on, started with --inspect in NODE_OPTIONS and on node's command line: the daemon (master) and its workers get neither", async () => {
  const inst = new Instance();
  try {
    const port = await freePort();
    inst.write(config({ ports: [port], workers: 2, daemon: true }));
    const env = { ...process.env, NODE_OPTIONS: "--inspect=127.0.0.1:0 --max-old-space-size=256" };
    const master = await inst.up([], { env, nodeArgs: ["--inspect=127.0.0.1:0"] });
    assert.notEqual(master, inst.child!.pid, "the daemon is a new process");
    await waitFor("two workers", () => childPids(master).length === 2);
    const environ = readFileSync(`/proc/${master}/environ`, "latin1").split("\0");
    // memory settings stay, debugger switches go
    assert.deepEqual(
      environ.filter((e) => e.startsWith("NODE_OPTIONS=")),
      ["NODE_OPTIONS=--max-old-space-size=256"],
    );
    for (const p of [master, ...childPids(master)]) assert.doesNotMatch(readFileSync(`/proc/${p}/cmdline`, "latin1"), /--inspect/);
    await waitFor("the workers listening", () => childPids(master).every((w) => listeningPortsOf([w]).has(port)));
    assert.deepEqual(strayPorts(master, [port]), []);
    const c = await Client.connect(port);
    assert.equal(await c.line(), "* OK IMAP4 ready");
    c.close();
  } finally {
    await inst.cleanup();
  }
});

/**
 * A real Redis from Debian's redis-server package on a loopback port, in a
 * temp dir, with no persistence: the shared store of the cluster tests.
 * stop() and start() again on the same port simulate an outage (the data
 * is gone afterwards, as after a restart without persistence); pause()
 * and resume() (SIGSTOP/SIGCONT) simulate a store that hangs. Tests read
 * and write it with ioredis (`new Redis(port, "127.0.0.1")`).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { freePort } from "./ports.js";

export interface RedisServer {
  readonly port: number;
  readonly dir: string;
  stop(): Promise<void>;
  /** Starts it again on the same port (after stop()). */
  start(): Promise<void>;
  pause(): void;
  resume(): void;
  /** Stops it and removes its dir. */
  close(): Promise<void>;
}

export interface RedisOptions {
  /** `requirepass`: clients must AUTH. */
  password?: string;
  /** Extra `--name value` arguments (e.g. TLS settings). */
  extraArgs?: string[];
}

function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve();
      });
      s.once("error", () => {
        s.destroy();
        if (Date.now() > deadline) reject(new Error(`redis-server did not listen on ${port}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

export async function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), "postern-redis-"));
  let child: ChildProcess | undefined;
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    dir,
    "--daemonize",
    "no",
    "--logfile",
    path.join(dir, "redis.log"),
    ...(options.password ? ["--requirepass", options.password] : []),
    ...(options.extraArgs ?? []),
  ];
  const start = async (): Promise<void> => {
    child = spawn("/usr/bin/redis-server", args, { stdio: "ignore" });
    await waitForPort(port, 10_000);
  };
  const stop = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once("exit", () => resolve()));
    c.kill("SIGCONT");
    c.kill("SIGKILL");
    await exited;
  };
  await start();
  return {
    port,
    dir,
    stop,
    start,
    pause: () => child?.kill("SIGSTOP"),
    resume: () => child?.kill("SIGCONT"),
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

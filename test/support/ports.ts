/** Free loopback TCP ports for tests. */
import { existsSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Returns one free TCP port on 127.0.0.1, claimed for this process. */
export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port!;
}

/**
 * Returns `count` distinct free TCP ports on 127.0.0.1, each claimed for
 * this test process until it exits.
 *
 * Not listen(0): a port the kernel picks that way lies in its ephemeral
 * range, from which every outgoing connect() of a concurrent test file also
 * takes its local port, so between our close and the server's bind another
 * file's client may hold it (CI saw nginx fail to bind such a port). These
 * ports come from below that range instead, and test files, which run as
 * parallel processes, claim each one with an exclusive file in a shared
 * directory; a claim whose process is gone is taken over. A port is also
 * bound once here, so one some other program listens on is never given.
 */
export async function freePorts(count: number): Promise<number[]> {
  const [low, high] = claimRange();
  if (high <= low) return kernelPorts(count);
  const ports: number[] = [];
  const span = high - low;
  const first = Math.floor(Math.random() * span);
  for (let i = 0; i < span && ports.length < count; i++) {
    const port = low + ((first + i) % span);
    if (!claim(port)) continue;
    if (await bindable(port)) ports.push(port);
    else release(port);
  }
  if (ports.length < count) throw new Error(`no ${count} free ports in ${low}-${high - 1}`);
  return ports;
}

/** The range claims come from: 10000 up to the kernel's ephemeral range (empty if that starts lower). */
function claimRange(): [number, number] {
  let ephemeral = 32768;
  try {
    ephemeral = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]) || ephemeral;
  } catch {
    // not Linux: the usual start of the range
  }
  return [10000, Math.min(ephemeral, 65536)];
}

const CLAIMS = join(tmpdir(), "postern-test-ports");
const claimed = new Set<number>();
let releaseOnExit = false;

function claim(port: number): boolean {
  if (claimed.has(port)) return false;
  mkdirSync(CLAIMS, { recursive: true });
  const file = join(CLAIMS, String(port));
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: "wx" });
      if (!releaseOnExit) process.once("exit", releaseAll);
      releaseOnExit = true;
      claimed.add(port);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST" || alive(file)) return false;
      try {
        unlinkSync(file); // its process is gone
      } catch {
        return false;
      }
    }
  }
  return false;
}

/** Whether the process named in a claim file still runs (an unreadable claim counts as alive). */
function alive(file: string): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(file, "utf8"));
  } catch {
    return true;
  }
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function release(port: number): void {
  claimed.delete(port);
  try {
    unlinkSync(join(CLAIMS, String(port)));
  } catch {
    // already gone
  }
}

function releaseAll(): void {
  for (const port of [...claimed]) release(port);
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** listen(0) ports, all held open until every one is known (outside Linux's range rules only). */
async function kernelPorts(count: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    const ports: number[] = [];
    while (ports.length < count) {
      const server = net.createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => resolve());
      });
      const address = server.address();
      if (address === null || typeof address === "string") throw new Error("no TCP address");
      if (!ports.includes(address.port)) ports.push(address.port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

/**
 * `count` ports on 127.0.0.1 where nothing listens, for "server down" cases.
 * A port from `freePorts` is free only for a moment: a concurrent test file
 * may listen on it next (the kernel hands out the same ephemeral range), and
 * a "down" auth server then answers. Ports below 1024 come from no listen(0)
 * and no connect(), so one that nothing listens on now stays refused.
 */
export function closedPorts(count: number): number[] {
  const listening = listeningPorts();
  const ports: number[] = [];
  for (let p = 987; p < 1024 && ports.length < count; p++) if (!listening.has(p)) ports.push(p);
  if (ports.length < count) throw new Error(`no ${count} closed ports below 1024`);
  return ports;
}

/** Ports in LISTEN state on any local address, read from /proc (no connection is made, so no session is logged). */
export function listeningPorts(): Set<number> {
  const ports = new Set<number>();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    if (!existsSync(file)) continue;
    for (const line of readFileSync(file, "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] === "0A" && f[1]) ports.add(parseInt(f[1].split(":")[1] ?? "0", 16));
    }
  }
  return ports;
}

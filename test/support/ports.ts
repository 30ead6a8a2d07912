/** Free loopback TCP ports for tests. */
import { existsSync, readFileSync } from "node:fs";
import net from "node:net";

/** Returns one free TCP port on 127.0.0.1 (bound with port 0, read, then released). */
export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port!;
}

/**
 * Returns `count` distinct free TCP ports on 127.0.0.1.
 * All sockets are held open until every port is known, so the kernel cannot
 * hand out the same port twice within one call.
 */
export async function freePorts(count: number): Promise<number[]> {
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

/**
 * Idle kept-alive connections to auth services, per worker process, as
 * nginx's upstream `keepalive` cache: at most `max` idle connections per
 * pool (the least recently used is closed to make room), each closed after
 * its idle time. An idle connection that receives anything or is closed by
 * the server leaves the pool at once, so it is never handed out.
 * Idle sockets are unref'd: they never keep a worker alive at shutdown.
 */
import type { Socket } from "node:net";

interface Idle {
  readonly socket: Socket;
  readonly timer: NodeJS.Timeout;
  readonly drop: () => void;
}

const pools = new Map<string, Idle[]>();

/** An idle connection of the pool, taken out of it (ref'd again), or undefined. */
export function takeIdle(key: string): Socket | undefined {
  const list = pools.get(key);
  while (list && list.length > 0) {
    const idle = list.pop()!;
    release(idle);
    // a connection half-closed or destroyed since it was parked is not usable
    if (idle.socket.destroyed || !idle.socket.writable || idle.socket.readableEnded) {
      idle.socket.destroy();
      continue;
    }
    idle.socket.ref();
    return idle.socket;
  }
  return undefined;
}

/** Parks a connection after a complete response; closes one if the pool is full. */
export function putIdle(key: string, socket: Socket, max: number, idleMs: number): void {
  if (max <= 0 || idleMs <= 0 || socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  let list = pools.get(key);
  if (!list) pools.set(key, (list = []));
  while (list.length >= max) {
    const oldest = list.shift()!;
    release(oldest);
    oldest.socket.destroy();
  }
  const drop = (): void => {
    const l = pools.get(key);
    const at = l ? l.findIndex((x) => x.socket === socket) : -1;
    if (l && at >= 0) {
      release(l[at]!);
      l.splice(at, 1);
      if (l.length === 0) pools.delete(key);
    }
    socket.destroy();
  };
  const timer = setTimeout(drop, idleMs);
  timer.unref();
  socket.on("data", drop);
  socket.on("end", drop);
  socket.on("close", drop);
  socket.on("error", drop);
  socket.setTimeout(0);
  socket.unref();
  list.push({ socket, timer, drop });
}

function release(idle: Idle): void {
  clearTimeout(idle.timer);
  idle.socket.off("data", idle.drop);
  idle.socket.off("end", idle.drop);
  idle.socket.off("close", idle.drop);
  idle.socket.off("error", idle.drop);
}

/** How many idle connections a pool holds (for tests and debug lines). */
export function idleCount(key: string): number {
  return pools.get(key)?.length ?? 0;
}

/** Closes every idle connection (worker shutdown, tests). */
export function closeIdle(): void {
  for (const list of pools.values()) for (const idle of list) idle.drop();
  pools.clear();
}

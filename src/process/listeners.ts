/**
 * Listening sockets, opened by the master. The master binds each address
 * (nginx's retry rule: 5 rounds 500 ms apart) and keeps the bound handle;
 * it never calls listen() itself, so it never accepts. Each worker
 * receives the handle over its IPC channel, calls listen() on it and
 * accepts directly from the shared socket: no per-connection handoff.
 *
 * Node exposes no public "bind without listening" call; the internal one
 * node:cluster uses is wrapped in event/node-internals.ts.
 */
import { existsSync } from "node:fs";
import net from "node:net";
import { dirname } from "node:path";
import { getSystemErrorName } from "node:util";
import { describeSystemError } from "../core/errors.js";
import { type BoundHandle, createServerHandle, UV_TCP_IPV6ONLY } from "../event/node-internals.js";
import type { ListenEndpoint } from "../mail/runtime.js";

export type { BoundHandle };

/**
 * Binding failed and every failure is already logged at emerg (nginx's
 * `bind() to ... failed` lines, `still could not bind()`): the caller stops
 * without logging anything more.
 */
export class BindFailedError extends Error {
  static readonly code = "ERR_BIND_FAILED";
  readonly code = BindFailedError.code;
  constructor() {
    super("bind failed");
    this.name = "BindFailedError";
  }
}

/**
 * libuv defers EADDRINUSE from bind() to listen(), and the master must not
 * listen (it would then accept too). So the address is first tried with a
 * short-lived probe server: listen, then close at once. A client connecting
 * in that instant would be reset; nobody can know the address yet at start,
 * and at reload only new addresses are probed.
 */
function probe(e: ListenEndpoint): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const s = net.createServer({ pauseOnConnect: true }, (c) => c.destroy());
    s.once("error", (err: NodeJS.ErrnoException) => resolve(e.path !== undefined ? pipeError(err, e.path) : err));
    const opts = e.path !== undefined ? { path: e.path } : { host: e.host, port: e.port, ipv6Only: e.ipv6Only, exclusive: true };
    s.listen(opts, () => s.close(() => resolve(undefined)));
  });
}

/**
 * libuv reports a `unix:` path in a missing directory as EACCES (for
 * Windows' sake); bind() said ENOENT, and nginx prints that.
 */
function pipeError(err: NodeJS.ErrnoException, path: string): NodeJS.ErrnoException {
  if (err.code !== "EACCES" || existsSync(dirname(path))) return err;
  const enoent: NodeJS.ErrnoException = new Error("ENOENT");
  enoent.errno = -2;
  enoent.code = "ENOENT";
  return enoent;
}

/** Binds one endpoint; returns the handle or a system error. */
export async function bindEndpoint(e: ListenEndpoint): Promise<BoundHandle | NodeJS.ErrnoException> {
  const failed = await probe(e);
  if (failed) return failed;
  const r =
    e.path !== undefined
      ? createServerHandle(e.path, -1, -1, 0)
      : createServerHandle(e.host, e.port, net.isIPv6(e.host) ? 6 : 4, e.ipv6Only ? UV_TCP_IPV6ONLY : 0);
  if (typeof r !== "number") return r;
  const code = getSystemErrorName(r);
  const err: NodeJS.ErrnoException = new Error(code);
  err.errno = -r;
  err.code = code;
  return err;
}

/**
 * Binds every endpoint not already in `existing`, with nginx's retries.
 * Logs each failure at emerg through `emerg`; throws after the last round.
 */
export async function bindAll(
  endpoints: readonly ListenEndpoint[],
  existing: ReadonlyMap<string, BoundHandle>,
  emerg: (msg: string) => void,
): Promise<Map<string, BoundHandle>> {
  const opened = new Map<string, BoundHandle>();
  for (let round = 0; round < 5; round++) {
    let failed = false;
    for (const e of endpoints) {
      if (existing.has(e.key) || opened.has(e.key)) continue;
      const r = await bindEndpoint(e);
      if (r instanceof Error) {
        emerg(`bind() to ${e.text} failed ${describeSystemError(r)}`);
        failed = true;
        // only "address in use" is worth retrying, as in nginx
        if (r.code !== "EADDRINUSE") {
          for (const h of opened.values()) h.close();
          throw new BindFailedError();
        }
      } else {
        opened.set(e.key, r);
      }
    }
    if (!failed) return opened;
    if (round < 4) await new Promise((r) => setTimeout(r, 500));
  }
  for (const h of opened.values()) h.close();
  emerg("still could not bind()");
  throw new BindFailedError();
}

/**
 * What `-t` does with the listening addresses, as nginx -t: each one is
 * bound and listened on, then closed again (a `unix:` socket file is
 * removed with it). "Address in use" passes, silently: the running server
 * (or anyone else) may hold the address, and nginx -t says nothing then.
 * Any other failure is nginx's `bind() to ADDR failed (...)`, thrown at
 * the first one.
 */
export async function tryBindForTest(endpoints: readonly ListenEndpoint[]): Promise<void> {
  for (const e of endpoints) {
    const failed = await probe(e);
    if (failed && failed.code !== "EADDRINUSE") throw new Error(`bind() to ${e.text} failed ${describeSystemError(failed)}`);
  }
}

/**
 * Reads the PROXY header of an accepted connection (`listen ... proxy_protocol`).
 * nginx peeks once: the header must be in the first bytes
 * readable, and only the first 4096 of them are looked at. Node cannot peek,
 * so the first chunk is read and whatever follows the header is handed back
 * (unshift it before wrapping the socket in TLS).
 *
 * Rule: docs/behaviour/session.md#session-1-stages.
 */
import type { Socket } from "node:net";
import { describeSystemError } from "../core/errors.js";
import type { ConnectionLog } from "../core/log.js";
import { type ProxyProtocolAddresses, parseProxyHeader, PROXY_PROTOCOL_READ_SIZE } from "./proxy-protocol.js";

/** The outcome: go on (with addresses unless UNKNOWN/LOCAL, and the bytes after the header), or close. */
export type ProxyReadOutcome =
  | { readonly kind: "ok"; readonly addresses?: ProxyProtocolAddresses | undefined; readonly tlvs?: Buffer | undefined; readonly rest: Buffer }
  | { readonly kind: "close" };

/**
 * Waits for the first chunk (at most `timeoutMs`), parses it, logs as nginx
 * does (`broken header: ...`, `client timed out`) and leaves the socket paused.
 * On "close" the caller closes the connection without a reply.
 */
export function readProxyProtocol(socket: Socket, timeoutMs: number, log: ConnectionLog): Promise<ProxyReadOutcome> {
  log.action = "reading PROXY protocol";
  return new Promise<ProxyReadOutcome>((resolve) => {
    const done = (r: ProxyReadOutcome): void => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("error", onError);
      socket.off("end", onEnd);
      socket.off("close", onClose);
      socket.pause();
      resolve(r);
    };
    const onData = (chunk: Buffer): void => {
      const r = parseProxyHeader(chunk.subarray(0, PROXY_PROTOCOL_READ_SIZE));
      if (r.kind === "error") {
        if (r.message !== undefined) log.error(r.message);
        done({ kind: "close" });
        return;
      }
      const rest = chunk.subarray(r.length);
      done(r.kind === "proxy" ? { kind: "ok", addresses: r.addresses, tlvs: r.tlvs, rest } : { kind: "ok", rest });
    };
    const onError = (err: NodeJS.ErrnoException): void => {
      log.info(`recv() failed ${describeSystemError(err)}`);
      done({ kind: "close" });
    };
    // EOF before any byte: nginx's peek returns 0 and the empty header is broken.
    const onEnd = (): void => {
      log.error('broken header: ""');
      done({ kind: "close" });
    };
    // destroyed meanwhile (worker shutdown): nothing to log, and no timer left to report a timeout later
    const onClose = (): void => done({ kind: "close" });
    const timer = setTimeout(() => {
      log.info("client timed out (110: Connection timed out)");
      done({ kind: "close" });
    }, timeoutMs);
    socket.on("data", onData);
    socket.on("error", onError);
    socket.on("end", onEnd);
    socket.on("close", onClose);
    socket.resume();
  });
}

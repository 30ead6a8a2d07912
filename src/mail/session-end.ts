/**
 * Ending a client connection once its session has closed (QUIT, a refusal,
 * too many errors): on the next event-loop turn, so that a TLS 1.3 socket
 * that has just finished its handshake still sends close_notify (ending at
 * once skips it; nginx does not), after the replies already queued. A
 * client that reads no more would hold the connection for good with those
 * replies unsent: as nginx's send timer does, it gets `timeout` to read
 * them, then `expired` runs.
 * Rule: docs/behaviour/session.md#session-4-pipelining.
 */
import type { Socket } from "node:net";

/** Ends `socket`; returns what cancels the wait for unsent replies (the connection closed by itself). */
export function endConnection(socket: Socket, timeoutMs: number, expired: () => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  let cancelled = false;
  setImmediate(() => {
    const unsent = socket.writableLength > 0;
    socket.end();
    socket.destroySoon?.();
    if (unsent && !socket.destroyed && !cancelled) timer = setTimeout(expired, timeoutMs);
  });
  return () => {
    cancelled = true;
    clearTimeout(timer);
  };
}

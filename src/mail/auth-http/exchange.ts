/**
 * One request on a connection of its own, as nginx does it: connect, send,
 * read the header block, close (docs/behaviour/auth-http.md#ah-1-the-exchange).
 * The keep-alive variant is keep-alive.ts.
 */
import type { Socket } from "node:net";
import { describeSystemError } from "../../core/errors.js";
import type { ConnectionLog } from "../../core/log.js";
import type { CancelSignal } from "../cancel.js";
import { armTimer, debugAuthResponse, disarmTimer } from "../debug-log.js";
import { type AuthTlsClient, openPeerSocket, tlsFailureMessage } from "./connect.js";
import type { DecisionLog } from "./decision.js";
import { AuthResponseParser, type AuthResponse, responseErrorMessage } from "./response.js";
import type { AuthHttpPeer } from "./target.js";
import { peerName } from "./url.js";

export type ExchangeResult =
  | { readonly kind: "response"; readonly response: AuthResponse }
  /**
   * `log` is the line to write, if any; `fault`: the auth service failed
   * (connect error, timeout, bad answer), which counts toward max_fails and
   * moves a group on to its next peer. A client that went away is no fault.
   */
  | { readonly kind: "failed"; readonly log: DecisionLog | undefined; readonly fault: boolean };

/** What one exchange needs besides the request. */
export interface ExchangeParams {
  readonly peer: AuthHttpPeer;
  readonly request: Buffer;
  /** auth_http_timeout, ms: one deadline for connect, send and receive. */
  readonly timeout: number;
  readonly tls: AuthTlsClient | undefined;
  readonly signal: CancelSignal | undefined;
  readonly log: ConnectionLog;
}

/** The timeout line nginx writes. */
export function timedOut(peer: string): DecisionLog {
  return { level: "error", message: `auth http server ${peer} timed out ${describeSystemError({ errno: 110, code: "ETIMEDOUT" })}` };
}

/** One connection: send the request, read the header block, close. */
export function exchangeOnce(p: ExchangeParams): Promise<ExchangeResult> {
  const { peer: target, request, signal, log } = p;
  const address = target.address;
  const peer = peerName(address);
  return new Promise((resolve) => {
    const parser = new AuthResponseParser();
    let connected = false;
    let settled = false;
    const { socket, readyEvent }: { socket: Socket; readyEvent: string } = openPeerSocket(target, p.tls);

    const finish = (result: ExchangeResult): void => {
      if (settled) return;
      settled = true;
      disarmTimer(log, "auth_http_timeout", timer);
      signal?.removeEventListener("abort", onAbort);
      socket.destroy();
      resolve(result);
    };
    const onAbort = (): void => finish({ kind: "failed", log: undefined, fault: false });
    // One deadline for connect, send and receive: partial reads do not extend it.
    const timer = armTimer(log, "auth_http_timeout", p.timeout, () => finish({ kind: "failed", log: timedOut(peer), fault: true }));
    signal?.addEventListener("abort", onAbort, { once: true });

    socket.on(readyEvent, () => {
      connected = true;
      socket.write(request);
    });
    socket.on("data", (chunk: Buffer) => {
      const state = parser.push(chunk);
      if (state.kind === "done") {
        debugAuthResponse(log, parser.received);
        finish({ kind: "response", response: state.response });
      } else if (state.kind === "error") {
        const message = responseErrorMessage(state.error, peer);
        finish({ kind: "failed", log: message === undefined ? undefined : { level: "error", message }, fault: true });
      }
    });
    socket.on("end", () => finish({ kind: "failed", log: undefined, fault: true }));
    socket.on("close", () => finish({ kind: "failed", log: undefined, fault: true }));
    socket.on("error", (err: NodeJS.ErrnoException) => {
      const tlsMessage = target.url.https ? tlsFailureMessage(err, target, p.tls) : undefined;
      if (tlsMessage !== undefined) {
        finish({ kind: "failed", log: { level: "error", message: tlsMessage }, fault: true });
      } else if (address.kind === "unix" && !connected) {
        // nginx's TCP connect is non-blocking, so a refusal surfaces on the
        // first read ("recv() failed"); a unix-socket connect fails at once.
        const level = err.code === "ECONNREFUSED" || err.code === "EAGAIN" ? "error" : "crit";
        finish({ kind: "failed", log: { level, message: `connect() to ${peer} failed ${describeSystemError(err)}` }, fault: true });
      } else {
        finish({ kind: "failed", log: { level: "error", message: `recv() failed ${describeSystemError(err)}` }, fault: true });
      }
    });
  });
}

/**
 * One request over a kept-alive HTTP/1.1 connection (auth_http_keepalive):
 * an idle connection of the pool if there is one, else a new one. The
 * answer's meaning is read as nginx reads it (response.ts: a 1024-byte
 * header block), and the login goes on as soon as that block is in, as in
 * nginx; framing.ts decides where the message ends, and the body is read
 * meanwhile (within auth_http_timeout) only to decide the connection's
 * fate: a complete, well-framed message lets it back into the pool, a
 * slow, broken or oversized body closes it.
 *
 * Retrying: a pooled connection found closed before anything was written
 * is replaced by a fresh one (takeIdle skips it); once the request was
 * written the exchange is never repeated on that peer, because the auth
 * service may already have counted the login attempt.
 *
 * Docs: docs/auth-http-path.md#keep-alive.
 */
import type { Socket } from "node:net";
import { describeSystemError } from "../../core/errors.js";
import { armTimer, debugAuthResponse, disarmTimer } from "../debug-log.js";
import { openPeerSocket, poolKey, tlsFailureMessage } from "./connect.js";
import { type ExchangeParams, type ExchangeResult, timedOut } from "./exchange.js";
import { AUTH_BODY_LIMIT, BodyReader, responseFraming } from "./framing.js";
import { putIdle, takeIdle } from "./pool.js";
import { AUTH_RESPONSE_LIMIT, type AuthResponse, parseAuthResponse } from "./response.js";
import { peerName } from "./url.js";

/** The pool bounds: auth_http_keepalive and auth_http_keepalive_timeout. */
export interface KeepAliveLimits {
  readonly max: number;
  readonly idleMs: number;
}

/** Sends the request on a pooled or new connection and reads one complete response. */
export function exchangeKeepAlive(p: ExchangeParams, limits: KeepAliveLimits): Promise<ExchangeResult> {
  const { peer: target, request, signal, log } = p;
  const peer = peerName(target.address);
  const key = poolKey(target, p.tls);
  return new Promise((resolve) => {
    const reused = takeIdle(key);
    const opened = reused ? undefined : openPeerSocket(target, p.tls);
    const socket: Socket = reused ?? opened!.socket;
    let written = false;
    let settled = false; // the connection is done with: pooled or destroyed
    let answered = false; // the login has its result (the body may still be read)
    let received: Buffer = Buffer.alloc(0);
    let answer: AuthResponse | undefined;
    let body: BodyReader | undefined;
    let reusable = false;
    let idleMs = limits.idleMs;

    const fail = (message: string | undefined, level: "error" | "crit" = "error"): void =>
      finish({ kind: "failed", log: message === undefined ? undefined : { level, message }, fault: true });
    /** The login's result; once given, later failures only close the connection (their lines are not logged). */
    const deliver = (result: ExchangeResult): void => {
      if (answered) return;
      answered = true;
      signal?.removeEventListener("abort", onAbort);
      resolve(result);
    };
    const finish = (result: ExchangeResult, keep = false): void => {
      deliver(result);
      if (settled) return;
      settled = true;
      disarmTimer(log, "auth_http_timeout", timer);
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", onEnd);
      socket.off("error", onError);
      if (opened) socket.off(opened.readyEvent, send);
      if (keep) putIdle(key, socket, limits.max, idleMs);
      else socket.destroy();
    };
    const onAbort = (): void => finish({ kind: "failed", log: undefined, fault: false });
    const timer = armTimer(log, "auth_http_timeout", p.timeout, () => finish({ kind: "failed", log: timedOut(peer), fault: true }));
    signal?.addEventListener("abort", onAbort, { once: true });

    const send = (): void => {
      written = true;
      socket.write(request);
    };
    const onData = (chunk: Buffer): void => {
      if (!written) return fail(`auth http server ${peer} sent data before the request`);
      if (body) return afterBody(body.push(chunk));
      received = join(received, chunk);
      const state = parseAuthResponse(received.subarray(0, AUTH_RESPONSE_LIMIT));
      if (state.kind === "incomplete") {
        if (received.length >= AUTH_RESPONSE_LIMIT) fail(`auth http server ${peer} sent too large response`);
        return;
      }
      if (state.kind === "error") return fail(`auth http server ${peer} sent invalid ${state.error.kind === "invalidHeader" ? "header in " : ""}response`);
      debugAuthResponse(log, received.subarray(0, state.end));
      answer = state.response;
      const framing = responseFraming(received.subarray(0, state.end));
      switch (framing.kind) {
        case "invalid":
          return fail(`auth http server ${peer} sent invalid response`);
        case "tooLarge":
          return fail(`auth http server ${peer} sent too large response`);
        case "close":
          // the body runs to the close: the answer counts, the connection goes
          return finish({ kind: "response", response: answer });
        default:
          reusable = framing.reusable;
          if (framing.idleMs !== undefined) idleMs = Math.min(idleMs, Math.max(0, framing.idleMs - 1000));
          body = new BodyReader(framing);
          // the header block decides the login, as in nginx: a slow body never holds it up
          deliver({ kind: "response", response: answer });
          return afterBody(body.push(received.subarray(state.end)));
      }
    };
    const afterBody = (state: ReturnType<BodyReader["push"]>): void => {
      if (state.kind === "more") return;
      if (state.kind === "invalid") return fail(`auth http server ${peer} sent invalid response`);
      if (state.kind === "tooLarge") return fail(`auth http server ${peer} sent too large response (over ${AUTH_BODY_LIMIT} bytes of body)`);
      // bytes past the message: the connection is out of step, never reused
      finish({ kind: "response", response: answer! }, reusable && state.extra === 0);
    };
    const onEnd = (): void => {
      if (answer !== undefined) return fail(`auth http server ${peer} closed the connection in the middle of the response`);
      fail(written ? `auth http server ${peer} closed the connection without a response` : undefined);
    };
    const onError = (err: NodeJS.ErrnoException): void => {
      const tlsMessage = target.url.https ? tlsFailureMessage(err, target, p.tls) : undefined;
      if (tlsMessage !== undefined) return fail(tlsMessage);
      if (!written)
        return fail(`connect() to ${peer} failed ${describeSystemError(err)}`, err.code === "ECONNREFUSED" || err.code === "ETIMEDOUT" ? "error" : "crit");
      fail(`recv() failed ${describeSystemError(err)}`);
    };

    socket.on("data", onData);
    socket.on("end", onEnd);
    socket.on("close", onEnd);
    socket.on("error", onError);
    if (opened) socket.on(opened.readyEvent, send);
    else send();
  });
}

function join(a: Buffer, b: Buffer): Buffer {
  if (a.length === 0) return b;
  const out = Buffer.allocUnsafe(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

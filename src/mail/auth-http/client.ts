/**
 * One authentication through auth_http: connect to the auth server, send
 * the request, read the header block, close; repeat after `Auth-Status:
 * WAIT`; return the outcome. Failures are logged here with nginx's wording
 * (action `in http auth state`); the session only sends the reply.
 *
 * Rules: docs/behaviour/auth-http.md#ah-1-the-exchange, #ah-6-auth-status-wait,
 * #ah-7-errors.
 */
import type { ConnectionLog } from "../../core/log.js";
import type { CancelSignal } from "../cancel.js";
import type { AuthOutcome, Credentials, SessionInfo } from "../types.js";
import { decide } from "./decision.js";
import { applySaslError } from "./oauth-outcome.js";
import { type ExchangeResult, exchangeOnce } from "./exchange.js";
import { exchangeKeepAlive } from "./keep-alive.js";
import { peerGroup } from "./peers.js";
import type { AuthHttpPeer } from "./target.js";
import type { AuthHttpSettings } from "./module.js";
import { UnsafeHeaderError, buildAuthRequest, joinBuffers, sendsSalt } from "./request.js";
import { startAuthWait } from "../auth-wait.js";
import { debugAuthRequest } from "../debug-log.js";
import { type AuthHttpAddress, type AuthHttpUrl, peerName } from "./url.js";

/** Everything one authentication needs. */
export interface AuthenticateParams {
  readonly settings: AuthHttpSettings;
  /** The resolved auth server address (authHttpAddress(settings.url)). */
  readonly address: AuthHttpAddress;
  readonly session: SessionInfo;
  readonly credentials: Credentials;
  /** The session's attempt number, 1 for the first. */
  readonly attempt: number;
  readonly log: ConnectionLog;
  /** Aborted when the client goes away: the request is dropped, nothing is logged. */
  readonly signal?: CancelSignal | undefined;
}

/** The action nginx names while talking to the auth server. */
export const AUTH_HTTP_ACTION = "in http auth state";

/** Runs the auth_http exchange (with WAIT repeats) and returns what to do with the client. */
export async function authenticate(params: AuthenticateParams): Promise<AuthOutcome> {
  const { settings, session, log, signal } = params;
  const firstPeer = peerName(params.address);
  log.action = AUTH_HTTP_ACTION;
  const method = params.credentials.method;
  let login = params.credentials.login;
  // What nginx holds as the password: nothing for EXTERNAL and none.
  let password: Buffer | undefined = method === "external" || method === "none" ? undefined : params.credentials.password;

  for (;;) {
    if (signal?.aborted) return { kind: "error" };
    const credentials = { ...params.credentials, login, password: password ?? Buffer.alloc(0) };
    // Each URL of a group has its own request line and Host; the rest is the same.
    const build = (url: AuthHttpUrl): Buffer =>
      buildAuthRequest({
        session,
        credentials,
        attempt: params.attempt,
        uri: url.uri,
        hostHeader: url.hostHeader,
        headers: settings.headers,
        passClientCert: settings.passClientCert,
      });
    let request: Buffer;
    try {
      request = build(settings.url);
    } catch (err) {
      if (!(err instanceof UnsafeHeaderError)) throw err;
      log.error(`refused to send ${err.header} header with CR, LF or NUL to auth http server ${firstPeer}`);
      return { kind: "error" };
    }
    // Sending the salt withdraws the digest (or a WAIT reply's Auth-Pass),
    // as nginx does: a repeat sends an empty Auth-Pass, and success then
    // needs Auth-Pass from the auth server.
    if (sendsSalt(params.credentials)) password = undefined;
    const cache = settings.cache;
    const cached = cache ? await cache.lookup(request, log) : undefined;
    if (signal?.aborted) return { kind: "error" };
    const result = cached?.response ? { kind: "response" as const, response: cached.response, peer: firstPeer } : await send(params, build, request);
    if (result.kind === "failed") {
      if (result.log !== undefined) log.write(result.log.level, result.log.message);
      cached?.sealKey.fill(0);
      return { kind: "error" };
    }
    const decision = decide(result.response, { protocol: session.protocol, login, password, peer: result.peer });
    if (decision.kind === "final") {
      if (decision.log) log.write(decision.log.level, decision.log.message);
      const outcome = applySaslError(decision.outcome, method, result.peer, log);
      // kept once the outcome is known whole, its checks included: a hit then gives the same outcome, and an error is never kept
      if (cache && cached && !cached.response) cache.store(cached, result.response, outcome, session.protocol);
      return outcome;
    }
    cached?.sealKey.fill(0); // a WAIT is never kept
    login = decision.login;
    password = decision.password;
    if (decision.sleep > 0 && !(await sleep(decision.sleep, signal))) return { kind: "error" };
  }
}

type SendResult = Exclude<ExchangeResult, { kind: "response" }> | (Extract<ExchangeResult, { kind: "response" }> & { readonly peer: string });

/**
 * Sends one request to the auth service: nginx's single peer, or the peers
 * of a group in round-robin order, moving on after a failure (connect
 * error, timeout, bad answer) and counting it toward max_fails.
 */
async function send(params: AuthenticateParams, build: (url: AuthHttpUrl) => Buffer, first: Buffer): Promise<SendResult> {
  const { settings, signal, log } = params;
  const target = settings.target;
  const exchange = async (peer: AuthHttpPeer, request: Buffer): Promise<SendResult> => {
    const name = peerName(peer.address);
    const keepalive = settings.keepalive ?? 0;
    const wire = keepalive > 0 ? keepAliveRequest(request) : request;
    debugAuthRequest(log, name, wire);
    const p = { peer, request: wire, timeout: settings.timeout, tls: settings.tls, signal, log };
    const result = keepalive > 0 ? await exchangeKeepAlive(p, { max: keepalive, idleMs: settings.keepaliveTimeout ?? 0 }) : await exchangeOnce(p);
    return result.kind === "response" ? { ...result, peer: name } : result;
  };
  if (target === undefined || !target.grouped) {
    return exchange({ url: target?.urls[0] ?? settings.url, address: params.address }, first);
  }
  const group = peerGroup(target);
  let last: SendResult = { kind: "failed", log: undefined, fault: false };
  for (const peer of group.order(Date.now())) {
    if (signal?.aborted) break;
    group.tried(peer, Date.now());
    last = await exchange(peer, peer.url === target.urls[0] ? first : build(peer.url));
    if (last.kind === "response") {
      group.succeeded(peer);
      return last;
    }
    if (!last.fault) return last;
    // the failure is logged now, at error as nginx logs it, and the next peer tried
    if (last.log !== undefined) log.write(last.log.level, last.log.message);
    if (group.failed(peer, Date.now())) log.write("warn", `auth http server ${peerName(peer.address)} temporarily disabled`);
    last = { kind: "failed", log: undefined, fault: true };
  }
  return last;
}

/** The request as HTTP/1.1 with `Connection: keep-alive` (the rest is byte for byte nginx's). */
export function keepAliveRequest(request: Buffer): Buffer {
  const head = request.subarray(0, request.length - 2);
  const lineEnd = head.indexOf("\r\n");
  const line = head
    .subarray(0, lineEnd)
    .toString("latin1")
    .replace(/ HTTP\/1\.0$/, " HTTP/1.1");
  return joinBuffers([Buffer.from(line, "latin1"), head.subarray(lineEnd), Buffer.from("Connection: keep-alive\r\n\r\n", "latin1")]);
}

/** Waits `seconds` (an Auth-Wait); false when aborted first. */
function sleep(seconds: number, signal: CancelSignal | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve(false);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = startAuthWait(seconds, () => {
      signal?.removeEventListener("abort", onAbort);
      resolve(true);
    });
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

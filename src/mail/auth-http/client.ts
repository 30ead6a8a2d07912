/**
 * One authentication through auth_http: connect to the auth server, send
 * the request, read the header block, close; repeat after `Auth-Status:
 * WAIT`; return the outcome. Failures are logged here with nginx's wording
 * (action `in http auth state`); the session only sends the reply.
 *
 * Rules: docs/behaviour/auth-http.md#ah-1-the-exchange, #ah-6-auth-status-wait,
 * #ah-7-errors.
 */
import { connect, type Socket } from "node:net";
import { describeSystemError } from "../../core/errors.js";
import type { ConnectionLog } from "../../core/log.js";
import type { CancelSignal } from "../cancel.js";
import type { AuthOutcome, Credentials, SessionInfo } from "../types.js";
import { type DecisionLog, decide } from "./decision.js";
import type { AuthHttpSettings } from "./module.js";
import { UnsafeHeaderError, buildAuthRequest, sendsSalt } from "./request.js";
import { startAuthWait } from "../auth-wait.js";
import { armTimer, debugAuthRequest, debugAuthResponse, disarmTimer } from "../debug-log.js";
import { AuthResponseParser, type AuthResponse, responseErrorMessage } from "./response.js";
import { type AuthHttpAddress, peerName } from "./url.js";

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
  const peer = peerName(params.address);
  log.action = AUTH_HTTP_ACTION;
  const method = params.credentials.method;
  let login = params.credentials.login;
  // What nginx holds as the password: nothing for EXTERNAL and none.
  let password: Buffer | undefined = method === "external" || method === "none" ? undefined : params.credentials.password;

  for (;;) {
    if (signal?.aborted) return { kind: "error" };
    let request: Buffer;
    try {
      request = buildAuthRequest({
        session,
        credentials: { ...params.credentials, login, password: password ?? Buffer.alloc(0) },
        attempt: params.attempt,
        uri: settings.url.uri,
        hostHeader: settings.url.hostHeader,
        headers: settings.headers,
        passClientCert: settings.passClientCert,
      });
    } catch (err) {
      if (!(err instanceof UnsafeHeaderError)) throw err;
      log.error(`refused to send ${err.header} header with CR, LF or NUL to auth http server ${peer}`);
      return { kind: "error" };
    }
    // Sending the salt withdraws the digest (or a WAIT reply's Auth-Pass),
    // as nginx does: a repeat sends an empty Auth-Pass, and success then
    // needs Auth-Pass from the auth server.
    if (sendsSalt(params.credentials)) password = undefined;
    debugAuthRequest(log, peer, request);
    const result = await exchange(params.address, peer, request, settings.timeout, signal, log);
    if (result.kind === "failed") {
      if (result.log !== undefined) log.write(result.log.level, result.log.message);
      return { kind: "error" };
    }
    const decision = decide(result.response, { protocol: session.protocol, login, password, peer });
    if (decision.kind === "final") {
      if (decision.log) log.write(decision.log.level, decision.log.message);
      return decision.outcome;
    }
    login = decision.login;
    password = decision.password;
    if (decision.sleep > 0 && !(await sleep(decision.sleep, signal))) return { kind: "error" };
  }
}

type ExchangeResult =
  | { readonly kind: "response"; readonly response: AuthResponse }
  /** `log` is the line to write, if any. */
  | { readonly kind: "failed"; readonly log: DecisionLog | undefined };

/** One connection: send `request`, read the header block, close. */
function exchange(
  address: AuthHttpAddress,
  peer: string,
  request: Buffer,
  timeout: number,
  signal: CancelSignal | undefined,
  log: ConnectionLog,
): Promise<ExchangeResult> {
  return new Promise((resolve) => {
    const parser = new AuthResponseParser();
    let connected = false;
    let settled = false;
    const socket: Socket = address.kind === "unix" ? connect({ path: address.path }) : connect({ host: address.host, port: address.port });

    const finish = (result: ExchangeResult): void => {
      if (settled) return;
      settled = true;
      disarmTimer(log, "auth_http_timeout", timer);
      signal?.removeEventListener("abort", onAbort);
      socket.destroy();
      resolve(result);
    };
    const onAbort = (): void => finish({ kind: "failed", log: undefined });
    // One deadline for connect, send and receive: partial reads do not extend it.
    const timer = armTimer(log, "auth_http_timeout", timeout, () => {
      finish({
        kind: "failed",
        log: { level: "error", message: `auth http server ${peer} timed out ${describeSystemError({ errno: 110, code: "ETIMEDOUT" })}` },
      });
    });
    signal?.addEventListener("abort", onAbort, { once: true });

    socket.on("connect", () => {
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
        finish({ kind: "failed", log: message === undefined ? undefined : { level: "error", message } });
      }
    });
    socket.on("end", () => finish({ kind: "failed", log: undefined }));
    socket.on("close", () => finish({ kind: "failed", log: undefined }));
    socket.on("error", (err: NodeJS.ErrnoException) => {
      // nginx's TCP connect is non-blocking, so a refusal surfaces on the
      // first read ("recv() failed"); a unix-socket connect fails at once.
      if (address.kind === "unix" && !connected) {
        const level = err.code === "ECONNREFUSED" || err.code === "EAGAIN" ? "error" : "crit";
        finish({ kind: "failed", log: { level, message: `connect() to ${peer} failed ${describeSystemError(err)}` } });
      } else {
        finish({ kind: "failed", log: { level: "error", message: `recv() failed ${describeSystemError(err)}` } });
      }
    });
  });
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

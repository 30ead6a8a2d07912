/**
 * The backend half of a mail session: connect to the
 * backend auth_http named, send a PROXY header if configured, replay the
 * login, give the client its final reply and relay bytes until one side
 * closes. `timeout` bounds connect + login together.
 * Rules: docs/behaviour/session.md#session-9-backend-login, #session-10-relay.
 */
import { connect } from "node:net";
import { addressWithPort } from "../../core/inet.js";
import { describeSystemError } from "../../core/errors.js";
import { buildProxyHeaderV1, buildProxyHeaderV2 } from "../../event/proxy-protocol.js";
import type { ProxyHandoff } from "../session-services.js";
import type { BackendAddress } from "../types.js";
import { runLogin, type LoginResult } from "./login-driver.js";
import { type LoginStep, UnsafeLineError } from "./login-step.js";
import { proxyBuffer, proxyPassErrorMessage, proxyProtocol, proxyTimeout } from "./module.js";
import { relay } from "./relay.js";
import { armTimer, debugClose, debugLine, disarmTimer } from "../debug-log.js";

/** Everything proxySession needs from the session that authenticated (the session core's hand-off). */
export type ProxySessionParams = ProxyHandoff;

/** The upstream as nginx names it in logs. */
export function upstreamName(b: BackendAddress): string {
  return addressWithPort(b.host, b.port);
}

/** The PROXY header for the backend, or null with `proxy_protocol off`. */
function proxyHeader(p: ProxySessionParams): Buffer | null {
  const mode = p.conf.get(proxyProtocol);
  if (mode === "off") return null;
  const s = p.session;
  const client = { addr: s.unixClient ? undefined : s.clientAddr, port: s.clientPort };
  const local = { addr: s.localAddr.startsWith("unix:") ? undefined : s.localAddr, port: s.localPort };
  return mode === "on" ? buildProxyHeaderV1(client, local) : buildProxyHeaderV2(client, local);
}

/** Connects, logs in and relays; resolves when the session is over (never rejects). */
export async function proxySession(p: ProxySessionParams): Promise<void> {
  const { client, log } = p;
  log.context.upstream = upstreamName(p.backend);
  log.action = "connecting to upstream";
  // The client is not read during login; keep its errors from going unhandled.
  const ignore = (): void => {};
  client.on("error", ignore);
  client.setNoDelay(true);
  // The login lines are built before connecting: a value with CR, LF or NUL
  // (from the auth server's Auth-User/Auth-Pass, say) never reaches the backend.
  let steps: LoginStep[];
  try {
    steps = p.loginSteps();
  } catch (err) {
    if (!(err instanceof UnsafeLineError)) throw err;
    log.action = "sending login to upstream";
    log.error(`refused to send ${err.what} with CR, LF or NUL to upstream`);
    debugClose(log, "unsafe login line");
    p.events?.setEnd("error");
    p.internalError();
    return;
  }

  if (log.enabled("debug")) debugLine(log, `connect to ${log.context.upstream}`);
  p.events?.backendStart();
  const backend = connect({ host: p.backend.host, port: p.backend.port, noDelay: true });
  backend.pause();
  let timedOut = false;
  const timer = armTimer(log, "timeout", p.timeoutMs, () => {
    timedOut = true;
    log.info("upstream timed out (110: Connection timed out)");
    backend.destroy();
  });

  const outcome = await new Promise<LoginResult>((resolve) => {
    const onConnectError = (err: Error): void => {
      if (!timedOut) log.error(`connect() failed ${describeSystemError(err)}`);
      resolve({ kind: "failed" });
    };
    const onCloseEarly = (): void => resolve({ kind: "failed" });
    backend.once("error", onConnectError);
    backend.once("close", onCloseEarly);
    backend.once("connect", () => {
      backend.off("error", onConnectError);
      backend.off("close", onCloseEarly);
      p.events?.backendConnected();
      const header = proxyHeader(p);
      if (header) {
        log.action = "sending PROXY protocol header to upstream";
        debugLine(log, "mail proxy send PROXY protocol header");
        backend.write(header);
      }
      runLogin({
        socket: backend,
        steps,
        bufferSize: p.conf.get(proxyBuffer),
        passErrorMessage: p.conf.get(proxyPassErrorMessage),
        log,
      }).then(resolve, () => resolve({ kind: "failed" }));
    });
  });
  disarmTimer(log, "timeout", timer);
  p.events?.backendDone(outcome.kind !== "failed");

  if (outcome.kind === "failed") {
    debugClose(log, "upstream login failed");
    // The error listener stays: the client may still reset while we close it.
    backend.destroy();
    const reply = outcome.toClient;
    if (reply && !client.destroyed) {
      await new Promise<void>((resolve) => {
        client.once("close", () => resolve());
        client.end(reply);
        setTimeout(() => client.destroy(), p.timeoutMs).unref();
      });
    } else if (!reply) {
      p.internalError();
    }
    return;
  }

  client.off("error", ignore);
  log.action = undefined;
  log.write("info", "client logged in", { action: false });
  await relay(
    {
      client,
      backend,
      clientPending: p.pending,
      backendPending: Buffer.concat([outcome.toClient, outcome.backendPending]),
      timeoutMs: p.conf.get(proxyTimeout),
      log,
      events: p.events,
    },
    p.shutdown,
  );
}

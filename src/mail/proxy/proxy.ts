/**
 * The backend half of a mail session: connect to the
 * backend auth_http named, send a PROXY header if configured, replay the
 * login, give the client its final reply and relay bytes until one side
 * closes. `timeout` bounds connect + login together.
 * Rules: docs/behaviour/session.md#session-9-backend-login, #session-10-relay.
 */
import { connect, type Socket } from "node:net";
import { addressWithPort } from "../../core/inet.js";
import { describeSystemError } from "../../core/errors.js";
import { buildProxyHeaderV1, buildProxyHeaderV2 } from "../../event/proxy-protocol.js";
import type { ProxyHandoff } from "../session-services.js";
import type { BackendAddress } from "../types.js";
import { runLogin, type LoginResult } from "./login-driver.js";
import { type LoginStep, UnsafeLineError } from "./login-step.js";
import { proxyBuffer, proxyPassErrorMessage, proxyProtocol, proxyTimeout } from "./module.js";
import { relay } from "./relay.js";
import { withStarttls } from "./login-starttls.js";
import { serverName } from "../core-module.js";
import { backendHandshake } from "../proxy-ssl/handshake.js";
import { planBackendTls } from "../proxy-ssl/plan.js";
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

  // TLS to the backend (docs/backend-tls.md): the server's proxy_ssl, or auth_http's choice for this login.
  const tls = planBackendTls(p.conf, p.backend, log.context.upstream);
  if (tls.kind === "invalid") {
    log.error(tls.message);
    p.internalError();
    return;
  }
  if (tls.kind === "tls" && tls.mode === "starttls") steps = withStarttls(p.session.protocol, serverName(p.conf), steps);

  if (log.enabled("debug")) debugLine(log, `connect to ${log.context.upstream}`);
  p.events?.backendStart();
  const backend = connect({ host: p.backend.host, port: p.backend.port, noDelay: true });
  backend.pause();
  /** The socket the login talks on: the TLS one once there is one. */
  let current: Socket = backend;
  let timedOut = false;
  // The handshake has its own deadline (within `timeout` and proxy_timeout) and logs its own failure.
  let handshaking = false;
  let expiredInHandshake = false;
  const loginDeadline = Date.now() + p.timeoutMs;
  const secure = async (plain: Socket): Promise<Socket | null> => {
    if (tls.kind !== "tls") return null;
    handshaking = true;
    const ms = Math.max(1, Math.min(p.conf.get(proxyTimeout), loginDeadline - Date.now()));
    const socket = await backendHandshake(plain, tls.setup, tls.target, log, ms);
    handshaking = false;
    if (!socket) return null;
    current = socket;
    if (expiredInHandshake) {
      expire();
      return null;
    }
    return socket;
  };
  const expire = (): void => {
    timedOut = true;
    log.info("upstream timed out (110: Connection timed out)");
    current.destroy();
    backend.destroy();
  };
  const timer = armTimer(log, "timeout", p.timeoutMs, () => {
    // the handshake ends by the same deadline; a login that outlives it expires right after
    if (handshaking) expiredInHandshake = true;
    else expire();
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
      const ready = tls.kind === "tls" && tls.mode === "on" ? secure(backend) : Promise.resolve(backend);
      ready
        .then((socket) =>
          socket
            ? runLogin({
                socket,
                steps,
                bufferSize: p.conf.get(proxyBuffer),
                passErrorMessage: p.conf.get(proxyPassErrorMessage),
                log,
                startTls: tls.kind === "tls" ? secure : undefined,
              })
            : ({ kind: "failed" } as const),
        )
        .then(resolve, () => resolve({ kind: "failed" }));
    });
  });
  disarmTimer(log, "timeout", timer);
  p.events?.backendDone(outcome.kind !== "failed");

  if (outcome.kind === "failed") {
    debugClose(log, "upstream login failed");
    // The error listener stays: the client may still reset while we close it.
    current.destroy();
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
      backend: outcome.socket,
      clientPending: p.pending,
      backendPending: Buffer.concat([outcome.toClient, outcome.backendPending]),
      timeoutMs: p.conf.get(proxyTimeout),
      log,
      events: p.events,
    },
    p.shutdown,
  );
}

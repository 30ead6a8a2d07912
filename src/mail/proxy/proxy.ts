/**
 * The backend half of a mail session: connect to the
 * backend auth_http named, send a PROXY header if configured, replay the
 * login, give the client its final reply and relay bytes until one side
 * closes. `timeout` bounds connect + login together.
 */
import { connect, type Socket } from "node:net";
import type { ServerConf } from "../../conf/directive.js";
import { describeSystemError } from "../../core/errors.js";
import type { ConnectionLog } from "../../core/log.js";
import { buildProxyHeaderV1, buildProxyHeaderV2, type ProxyV2Tls } from "../../event/proxy-protocol.js";
import type { AuthMethod, BackendAddress, SessionInfo } from "../types.js";
import type { CancelSignal } from "../cancel.js";
import { imapLoginSteps } from "./login-imap.js";
import { runLogin, type LoginResult } from "./login-driver.js";
import { pop3LoginSteps } from "./login-pop3.js";
import { smtpLoginSteps } from "./login-smtp.js";
import { type LoginStep, UnsafeLineError } from "./login-step.js";
import { proxyBuffer, proxyPassErrorMessage, proxyProtocol, proxySmtpAuth, proxyTimeout, xclient } from "./module.js";
import { relay } from "./relay.js";

/** Everything proxySession needs from the session that authenticated. */
export interface ProxySessionParams {
  /** The client socket, paused, with nothing read but `pending`. */
  readonly client: Socket;
  /** Client bytes already read and not consumed (pipelined after the auth command). */
  readonly pending: Buffer;
  readonly session: SessionInfo;
  /** How the client authenticated; `none` = SMTP session started by RCPT TO. */
  readonly authMethod: AuthMethod;
  /** Credentials after auth_http's Auth-User / Auth-Pass overrides. */
  readonly login: Buffer;
  /** Empty when there is none (EXTERNAL without Auth-Pass). */
  readonly password: Buffer;
  readonly backend: BackendAddress;
  /** The merged server configuration (proxy module directives are read from it). */
  readonly conf: ServerConf;
  /** `server_name` of this server. */
  readonly serverName: string;
  /** The `timeout` directive, in ms: the deadline for connect + login. */
  readonly timeoutMs: number;
  readonly log: ConnectionLog;
  /** Sends the protocol's internal-error line to the client and closes it. */
  internalError(): void;
  /** Aborted on worker shutdown: a proxied session then closes with `shutdown timeout`. */
  readonly shutdown?: CancelSignal | undefined;
  /** TLS facts for a `proxy_protocol v2` header (TLS clients only). */
  readonly proxyV2Tls?: ProxyV2Tls | undefined;
}

/** `ip:port`, with brackets for IPv6, as nginx names the upstream in logs. */
export function upstreamName(b: BackendAddress): string {
  return b.host.includes(":") ? `[${b.host}]:${b.port}` : `${b.host}:${b.port}`;
}

/** The login step list for the session's protocol. */
export function loginSteps(p: ProxySessionParams): LoginStep[] {
  const s = p.session;
  switch (s.protocol) {
    case "pop3":
      return pop3LoginSteps({ login: p.login, password: p.password });
    case "imap":
      return imapLoginSteps({ tag: s.imapTag ?? "", login: p.login, password: p.password });
    case "smtp": {
      const smtp = s.smtp;
      return smtpLoginSteps({
        serverName: p.serverName,
        xclient: p.conf.get(xclient),
        smtpAuth: p.conf.get(proxySmtpAuth),
        helo: smtp?.helo ?? "",
        esmtp: smtp?.esmtp ?? false,
        authNone: p.authMethod === "none",
        from: smtp?.from ?? "",
        to: smtp?.to ?? "",
        clientAddr: s.unixClient ? "unix:" : s.clientAddr,
        clientIpv6: !s.unixClient && s.clientAddr.includes(":"),
        clientHost: smtp?.clientHost ?? "[UNAVAILABLE]",
        login: p.login,
        password: p.password,
      });
    }
  }
}

/** The PROXY header for the backend, or null with `proxy_protocol off`. */
function proxyHeader(p: ProxySessionParams): Buffer | null {
  const mode = p.conf.get(proxyProtocol);
  if (mode === "off") return null;
  const s = p.session;
  const client = { addr: s.unixClient ? undefined : s.clientAddr, port: s.clientPort };
  const local = { addr: s.localAddr.startsWith("unix:") ? undefined : s.localAddr, port: s.localPort };
  return mode === "on" ? buildProxyHeaderV1(client, local) : buildProxyHeaderV2(client, local, p.proxyV2Tls);
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
    steps = loginSteps(p);
  } catch (err) {
    if (!(err instanceof UnsafeLineError)) throw err;
    log.action = "sending login to upstream";
    log.error(`refused to send ${err.what} with CR, LF or NUL to upstream`);
    p.internalError();
    return;
  }

  const backend = connect({ host: p.backend.host, port: p.backend.port, noDelay: true });
  backend.pause();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    log.info("upstream timed out (110: Connection timed out)");
    backend.destroy();
  }, p.timeoutMs);

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
      const header = proxyHeader(p);
      if (header) {
        log.action = "sending PROXY protocol header to upstream";
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
  clearTimeout(timer);

  if (outcome.kind === "failed") {
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
  await relay({
    client,
    backend,
    clientPending: p.pending,
    backendPending: Buffer.concat([outcome.toClient, outcome.backendPending]),
    timeoutMs: p.conf.get(proxyTimeout),
    log,
  }, p.shutdown);
}

/**
 * The hand-off (ngx_mail_proxy_init): auth_http said OK, the session has let
 * go of the client socket, and the proxy (proxy/) takes it with the bytes
 * pipelined after the auth command, the backend auth_http chose and the
 * backend login the front end builds from the answer.
 * Rules: docs/behaviour/session.md#session-8-authentication-and-its-outcomes.
 */
import type { Socket } from "node:net";
import type { ConnectionLog } from "../core/log.js";
import type { Cancellation } from "./cancel.js";
import { timeoutDirective } from "./core-module.js";
import type { FrontEnd, ProtocolReplies } from "./front-end.js";
import type { MailServer } from "./server.js";
import type { SessionEvents } from "./session-events.js";
import type { SessionServices } from "./session-services.js";
import type { AuthMethod, AuthOutcome, SessionInfo } from "./types.js";

/** What the session hands over: its socket (paused, listeners off), its unread bytes and its state. */
export interface HandOff {
  readonly client: Socket;
  readonly pending: Buffer;
  readonly outcome: Extract<AuthOutcome, { kind: "ok" }>;
  readonly info: SessionInfo;
  readonly server: MailServer;
  /** How the client authenticated (the backend login depends on it: `none` is an SMTP session started by RCPT TO). */
  readonly authMethod: AuthMethod;
  readonly frontEnd: FrontEnd;
  readonly replies: ProtocolReplies;
  readonly log: ConnectionLog;
  readonly events: SessionEvents | undefined;
  readonly shutdown: Cancellation;
}

/** Runs the proxy to its end; an unexpected exception is logged and closes the client, never crosses the socket. */
export async function handOffToProxy(services: SessionServices, h: HandOff): Promise<void> {
  const { client, server, outcome } = h;
  h.log.context.login = outcome.login.toString("latin1");
  const { login: user, password, backendMechanism } = outcome;
  const login = { login: user, password, authMethod: h.authMethod, backendMechanism, conf: server.conf, session: h.info };
  try {
    await services.proxy({
      client,
      pending: h.pending,
      session: h.info,
      backend: outcome.backend,
      conf: server.conf,
      timeoutMs: server.conf.get(timeoutDirective),
      log: h.log,
      events: h.events,
      shutdown: h.shutdown,
      loginSteps: () => h.frontEnd.backendLogin(login),
      internalError: () => {
        if (!client.destroyed) client.end(h.replies.internalError);
      },
    });
  } catch (err) {
    h.log.write("alert", `unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    client.destroy();
  }
}

/**
 * Connects the session core to the modules that serve it: the protocol
 * front ends, auth_http, TLS, the PROXY protocol reader, realip and the
 * proxy. The core depends only on the interfaces; this is the one place
 * that names the implementations.
 */
import type { ConnectionLog } from "../core/log.js";
import type { CancelSignal } from "./cancel.js";
import { authenticate } from "./auth-http/client.js";
import { authHttpAddress, authHttpSettings } from "./auth-http/module.js";
import type { MailProtocol } from "./front-end.js";
import { imapProtocol } from "./imap/protocol.js";
import { pop3Protocol } from "./pop3/protocol.js";
import type { MailServer } from "./server.js";
import { smtpProtocol } from "./smtp/protocol.js";
import { tlsForServer } from "./ssl/server-tls.js";
import { tlsForGroup } from "./ssl/sni.js";
import { sniGroupOf } from "./sni-groups.js";
import { readProxyProtocol } from "../event/proxy-protocol-reader.js";
import { proxySession } from "./proxy/proxy.js";
import { realClientAddress } from "./realip/module.js";
import { admitConnection } from "./limits/admission.js";
import { throttled } from "./limits/auth-throttle.js";
import type { SessionServices } from "./session.js";
import type { AuthOutcome, Credentials, MailProtocolName, SessionInfo } from "./types.js";

/** The front ends, by protocol name. */
export const MAIL_PROTOCOLS: ReadonlyMap<MailProtocolName, MailProtocol> = new Map<MailProtocolName, MailProtocol>([
  ["imap", imapProtocol],
  ["pop3", pop3Protocol],
  ["smtp", smtpProtocol],
]);

function runAuthHttp(
  server: MailServer,
  info: SessionInfo,
  credentials: Credentials,
  attempt: number,
  log: ConnectionLog,
  signal: CancelSignal,
): Promise<AuthOutcome> {
  const settings = authHttpSettings(server.conf);
  const address = authHttpAddress(settings.url);
  return authenticate({ settings, address, session: info, credentials, attempt, log, signal });
}

/** The services every session of this process uses. */
export function sessionServices(): SessionServices {
  return {
    tls: (server, listen) => {
      const shared = listen ? sniGroupOf(listen) : undefined;
      return shared ? tlsForGroup(shared) : tlsForServer(server);
    },
    authenticate: throttled(runAuthHttp),
    readProxyProtocol,
    realClientAddress: (server, peer, unix, header) => realClientAddress(server.conf, peer, unix, header),
    admit: admitConnection,
    proxy: proxySession,
  };
}

/**
 * The ssl module's per-server step: builds each TLS server's context when
 * the mail block closes (so `-t` reports certificate problems), and gives
 * the session core its view of TLS for that server.
 *
 * Rule: docs/behaviour/tls.md#tls-1-which-servers-use-tls.
 */
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { readClientHello } from "./read-hello.js";
import { authHttpPassClientCert } from "../auth-http/module.js";
import type { MailServer, MailModule } from "../server.js";
import type { SessionTls } from "../session.js";
import { clientCertificateCheck, clientTlsInfo, serverTicketsSent, startTls, TlsHandshakeError } from "./accept.js";
import { type TlsServerSetup, buildTlsContext } from "./context.js";
import { sslModule, starttls } from "./module.js";

/**
 * The handshake. A server whose sessions or ticket keys come from the
 * shared store reads the ClientHello first: its ticket's key name picks
 * the context (ticket-ring.ts), and a ClientHello going to TLS 1.3 spares
 * the store a session-id lookup that cannot hit.
 */
async function handshake(socket: Socket, setup: TlsServerSetup, initial: Buffer | undefined): Promise<TLSSocket> {
  const sessions = setup.sessions;
  if (!sessions.ticketContexts && !sessions.expectTls13) return startTls(socket, setup, { initialData: initial });
  const hello = await readClientHello(socket, initial);
  if (!hello) throw new TlsHandshakeError("peer closed connection in SSL handshake");
  const r = hello.resumption;
  if (r?.sessionId && r.offersTls13 && setup.tls13) sessions.expectTls13?.(r.sessionId);
  const context = sessions.ticketContexts?.select(r?.ticketKeyName);
  return startTls(socket, setup, { initialData: hello.bytes, ...(context ? { context } : {}) });
}

const setups = new WeakMap<MailServer, SessionTls | null>();

function sessionTls(server: MailServer, setup: TlsServerSetup): SessionTls {
  const mode = server.conf.get(starttls);
  const passCert = server.conf.get(authHttpPassClientCert);
  return {
    starttls: mode,
    handshake: (socket, initial) =>
      // the session log adds the action (`while SSL handshaking`) itself
      handshake(socket, setup, initial).catch((err: unknown) => {
        throw new Error(err instanceof TlsHandshakeError ? err.reason : String(err));
      }),
    checkClientCertificate(socket: TLSSocket) {
      const r = clientCertificateCheck(socket, setup);
      if (r.result === "ok") return { result: "ok" };
      return { result: r.result, log: r.logMessage ?? "client SSL certificate verify error" };
    },
    ticketsSent: (socket) => serverTicketsSent(socket, setup),
    describe: (socket) => clientTlsInfo(socket, setup, passCert),
  };
}

/** ngx_mail_ssl_module: its directives, and TLS contexts built per server. */
export const sslMailModule: MailModule = {
  ...sslModule,
  finalize(server, cx) {
    const mode = server.conf.get(starttls);
    const sslListens = server.listens.filter((l) => l.ssl);
    const setup = buildTlsContext(server.conf, {
      protocol: server.protocol,
      usesTls: sslListens.length > 0 || mode !== "off",
      listenSslLocations: sslListens.map((l) => l.location),
      starttlsLocation: mode !== "off" ? server.conf.locationOf(starttls) : undefined,
      warn: cx.warn,
    });
    setups.set(server, setup ? sessionTls(server, setup) : null);
  },
};

/** The session's TLS for a server, or null when it uses none. */
export function tlsForServer(server: MailServer): SessionTls | null {
  return setups.get(server) ?? null;
}

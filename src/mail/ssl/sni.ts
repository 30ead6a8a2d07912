/**
 * TLS on an address several servers share: the client's server name (SNI)
 * is read from its ClientHello before OpenSSL sees a byte, the server block
 * is chosen by it, and the handshake then runs entirely in that server's
 * context: its certificates, protocols, ciphers, client-certificate policy,
 * session cache and ticket keys. A session or ticket made under one server
 * is never offered to another's context (each context has its own session
 * id context and keys), so it cannot resume there (CVE-2025-23419 class).
 *
 * Rule: docs/sni.md.
 */
import type { TLSSocket } from "node:tls";
import { validServerName } from "../../event/tls-client-hello.js";
import { readClientHello } from "./read-hello.js";
import { logEscape } from "../../core/log.js";
import { serverName } from "../core-module.js";
import type { MailServer } from "../server.js";
import type { SessionTls } from "../session-services.js";
import type { SniGroup } from "../sni-groups.js";
import { TlsHandshakeError } from "./accept.js";
import { tlsForServer } from "./server-tls.js";

/** What the handshake chose, per TLS socket. */
interface Choice {
  readonly server: MailServer;
  readonly tls: SessionTls;
  /** The validated name, for Auth-SSL-Server-Name. */
  readonly name: string | undefined;
}

function sharedTls(group: SniGroup): SessionTls {
  const choices = new WeakMap<TLSSocket, Choice>();
  const choiceOf = (socket: TLSSocket): Choice => {
    const c = choices.get(socket);
    if (!c) throw new Error("TLS socket without an SNI choice");
    return c;
  };
  const tlsOf = (server: MailServer): SessionTls => {
    const tls = tlsForServer(server);
    // sni-groups.ts admits only servers that use TLS on the address
    if (!tls) throw new Error(`server without TLS on ${group.address}`);
    return tls;
  };
  return {
    // before the handshake the default server speaks (its greeting and STARTTLS offer)
    starttls: tlsOf(group.defaultServer).starttls,
    async handshake(socket, initial, log) {
      const hello = await readClientHello(socket, initial);
      if (!hello) throw new TlsHandshakeError("peer closed connection in SSL handshake");
      const name = hello.raw ? validServerName(hello.raw) : undefined;
      if (hello.raw && name === undefined) log?.info("client sent an invalid SSL server name, the default server is used");
      const server = group.select(name);
      if (log?.enabled("debug"))
        log.plain("debug", `SSL server name ${name === undefined ? "null" : `"${name}"`} selects server "${logEscape(serverName(server.conf))}"`);
      const tls = tlsOf(server);
      const secure = await tls.handshake(socket, hello.bytes);
      choices.set(secure, { server, tls, name });
      return secure;
    },
    serverOf: (socket) => choiceOf(socket).server,
    checkClientCertificate: (socket) => choiceOf(socket).tls.checkClientCertificate(socket),
    ticketsSent: (socket) => choiceOf(socket).tls.ticketsSent(socket),
    describe(socket) {
      const c = choiceOf(socket);
      const info = c.tls.describe(socket);
      return c.name === undefined ? info : { ...info, serverName: c.name };
    },
  };
}

const built = new WeakMap<SniGroup, SessionTls>();

/** The session's TLS on a shared address (one per group, built on first use). */
export function tlsForGroup(group: SniGroup): SessionTls {
  let tls = built.get(group);
  if (!tls) built.set(group, (tls = sharedTls(group)));
  return tls;
}

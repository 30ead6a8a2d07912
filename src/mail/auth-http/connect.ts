/**
 * Opening a connection to one auth service: plain TCP or a unix socket as
 * nginx does, or TLS for `https://` URLs (auth_http_ssl_* settings,
 * ssl-client.ts). What counts as "connected" is the end of the TLS
 * handshake when there is one.
 */
import { connect, type Socket } from "node:net";
import tls from "node:tls";
import type { AuthHttpPeer } from "./target.js";
import { peerName } from "./url.js";
import { peerChainLength, verifyErrorNumberOf, verifyErrorText } from "../../event/tls-verify.js";

/** The TLS side of reaching an auth service (built once per server configuration). */
export interface AuthTlsClient {
  /** Context, verification, client certificate, protocols, ciphers: everything but the peer. */
  readonly options: tls.ConnectionOptions;
  /** The name the certificate is checked against (auth_http_ssl_name, else the URL's host). */
  readonly name: string | undefined;
  /** Send the name in SNI (auth_http_ssl_server_name). */
  readonly sendServerName: boolean;
  readonly verify: boolean;
  /** auth_http_ssl_verify_depth: the most intermediates in the server's chain. */
  readonly verifyDepth: number;
  /** Identifies these settings in pool keys: connections made with other settings are never shared. */
  readonly id: string;
}

/** A socket on its way to being usable, and the event that says it is. */
export interface OpenedSocket {
  readonly socket: Socket;
  readonly readyEvent: "connect" | "secureConnect";
}

/** Connects to `peer`; TLS when its URL is https (then `tlsClient` must be given). */
export function openPeerSocket(peer: AuthHttpPeer, tlsClient: AuthTlsClient | undefined): OpenedSocket {
  const address = peer.address;
  if (!peer.url.https || tlsClient === undefined) {
    const socket = address.kind === "unix" ? connect({ path: address.path }) : connect({ host: address.host, port: address.port });
    return { socket, readyEvent: "connect" };
  }
  const name = tlsClient.name ?? peer.url.host;
  const key = poolKey(peer, tlsClient);
  const where = address.kind === "unix" ? { path: address.path } : { host: address.host, port: address.port };
  const socket = tls.connect({
    ...tlsClient.options,
    ...where,
    // an IP literal is no SNI name (RFC 6066); the certificate check uses it as an IP SAN then
    servername: tlsClient.sendServerName && isHostName(name) ? name : undefined,
    rejectUnauthorized: tlsClient.verify,
    // Node calls this with the whole chain (not for a resumed session: that one passed these checks when it was made)
    checkServerIdentity: (_host, cert) => {
      if (!tlsClient.verify) return undefined;
      if (peerChainLength(cert) - 2 > tlsClient.verifyDepth) return chainTooDeep();
      return tls.checkServerIdentity(name, cert);
    },
    // resume the last session with this peer and these settings (a connection per login stays cheap)
    session: sessions.get(key),
  });
  socket.on("session", (session: Buffer) => rememberSession(key, session));
  return { socket, readyEvent: "secureConnect" };
}

/** A chain past auth_http_ssl_verify_depth: OpenSSL's error 20, as for proxy_ssl_verify_depth. */
function chainTooDeep(): Error {
  return Object.assign(new Error(verifyErrorText(20)), { code: "UNABLE_TO_GET_ISSUER_CERT_LOCALLY" });
}

/** The last TLS session per pool key, bounded: one per peer and settings. */
const sessions = new Map<string, Buffer>();
const MAX_SESSIONS = 256;

function rememberSession(key: string, session: Buffer): void {
  sessions.delete(key);
  if (sessions.size >= MAX_SESSIONS) sessions.delete(sessions.keys().next().value as string);
  sessions.set(key, session);
}

function isHostName(name: string): boolean {
  return !/^[0-9.]+$/.test(name) && !name.includes(":");
}

/** The pool a connection to `peer` belongs to. */
export function poolKey(peer: AuthHttpPeer, tlsClient: AuthTlsClient | undefined): string {
  return `${peerName(peer.address)}|${peer.url.https && tlsClient ? tlsClient.id : "plain"}`;
}

/** The log words for a TLS failure (verification or handshake), in the style of nginx's proxy_ssl_verify lines. */
export function tlsFailureMessage(err: NodeJS.ErrnoException, peer: AuthHttpPeer, tlsClient: AuthTlsClient | undefined): string | undefined {
  const code = err.code ?? "";
  const who = `auth http server ${peerName(peer.address)}`;
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") return `${who} SSL certificate does not match "${tlsClient?.name ?? peer.url.host}"`;
  if (/CERT|SELF_SIGNED|UNABLE_TO|VERIFY|ISSUER/.test(code)) {
    const n = verifyErrorNumberOf(err);
    return `${who} SSL certificate verify error: (${n}:${verifyErrorText(n)})`;
  }
  if (code.startsWith("ERR_SSL") || code.startsWith("ERR_TLS") || code === "ECONNRESET")
    return `SSL_do_handshake() failed (${code}) while SSL handshaking to ${who}`;
  return undefined;
}

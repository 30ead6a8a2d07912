/**
 * The TLS handshake with a backend, on a connected socket (right after the
 * connect and PROXY header for implicit TLS, or after the backend's
 * STARTTLS reply): offers the cached session, then verifies the chain, the
 * depth and the name. Nothing is sent to the backend before the result is
 * known, and a failure is never "continue anyway": it is logged at error
 * with OpenSSL's reason (the log line names the upstream) and the caller
 * gives the client the temporary-failure reply.
 *
 * Rules: docs/backend-tls.md#failures.
 */
import type { Socket } from "node:net";
import { isIP } from "node:net";
import tls from "node:tls";
import type { ConnectionLog } from "../../core/log.js";
import { logEscape } from "../../core/log.js";
import { peerChainLength, verifyErrorNumberOf, verifyErrorText } from "../../event/tls-verify.js";
import type { BackendTlsSetup } from "./context.js";

/** The log action of every handshake line, as nginx stream words it. */
export const HANDSHAKE_ACTION = "SSL handshaking to upstream";

/** Who the backend is for this login. */
export interface BackendTlsTarget {
  /** `host:port` as the log names the upstream. */
  readonly upstream: string;
  /** The name verified (and sent as SNI when configured). */
  readonly name: string;
}

/** OpenSSL's reason from a Node TLS error, without Node's prefix and source position. */
export function opensslReason(err: Error): string {
  const m = /error:[0-9A-F]{8}:[^:]*:[^:]*:([^:]+)/.exec(err.message);
  if (m) {
    const code = /error:([0-9A-F]{8})/.exec(err.message)![1];
    return `error:${code}:SSL routines::${m[1]}`;
  }
  return err.message;
}

/** The verification verdict: undefined when the backend is the one named, else the log line. */
function verdict(socket: tls.TLSSocket, setup: BackendTlsSetup, target: BackendTlsTarget): string | undefined {
  if (!setup.verify) return undefined;
  if (!socket.authorized) {
    const err = socket.authorizationError as unknown as { code?: string; message?: string } | string | null;
    const n = typeof err === "string" ? verifyErrorNumberOf({ code: err, message: err }) : verifyErrorNumberOf(err ?? {});
    return `upstream SSL certificate verify error: (${n}:${verifyErrorText(n)})`;
  }
  // A resumed session carries no certificate to look at: it was stored, under
  // this address and name, only after a full verification passed (OpenSSL
  // restores that verification's result with it, checked above).
  if (socket.isSessionReused()) return undefined;
  if (peerChainLength(socket.getPeerCertificate(true)) - 2 > setup.verifyDepth) return `upstream SSL certificate verify error: (20:${verifyErrorText(20)})`;
  const cert = socket.getPeerCertificate();
  if (tls.checkServerIdentity(target.name, cert) !== undefined) return `upstream SSL certificate does not match "${logEscape(target.name)}"`;
  return undefined;
}

/**
 * Runs the handshake; resolves the TLS socket, or null once the failure is
 * logged (the plain socket is destroyed then). `timeoutMs` bounds it.
 */
export function backendHandshake(
  plain: Socket,
  setup: BackendTlsSetup,
  target: BackendTlsTarget,
  log: ConnectionLog,
  timeoutMs: number,
): Promise<tls.TLSSocket | null> {
  log.action = HANDSHAKE_ACTION;
  const key = `${target.upstream}|${target.name}`;
  const offered = setup.sessions?.get(key);
  const options: tls.ConnectionOptions = {
    socket: plain,
    secureContext: setup.secureContext,
    // verified below, with OpenSSL's reasons in the log; never accepted unverified
    rejectUnauthorized: false,
    checkServerIdentity: () => undefined,
  };
  // RFC 6066: SNI carries host names only.
  if (setup.serverName && isIP(target.name) === 0) options.servername = target.name;
  if (offered) options.session = offered;
  const socket = tls.connect(options);
  let verified = false;
  // A TLS 1.3 ticket may be read together with the Finished message: it is kept until the verdict.
  let early: Buffer | undefined;
  socket.on("session", (session: Buffer) => {
    if (verified) setup.sessions?.set(key, session);
    else early = session;
  });
  return new Promise((resolve) => {
    let settled = false;
    const fail = (message: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // a session that led here is not offered again
      setup.sessions?.delete(key);
      log.action = HANDSHAKE_ACTION;
      log.error(message);
      socket.destroy();
      plain.destroy();
      resolve(null);
    };
    const timer = setTimeout(() => fail("upstream timed out (110: Connection timed out)"), timeoutMs);
    const onError = (err: Error): void => {
      const reset = /disconnected before secure TLS connection|ECONNRESET|socket hang up/.test(err.message);
      fail(reset ? "peer closed connection in SSL handshake" : `SSL_do_handshake() failed (SSL: ${opensslReason(err)})`);
    };
    const onClose = (): void => fail("peer closed connection in SSL handshake");
    socket.on("error", onError);
    socket.once("close", onClose);
    socket.once("secureConnect", () => {
      if (settled) return;
      const problem = verdict(socket, setup, target);
      if (problem !== undefined) {
        fail(problem);
        return;
      }
      settled = true;
      verified = true;
      clearTimeout(timer);
      socket.off("close", onClose);
      socket.off("error", onError);
      // the login driver and the relay add their own listeners; until then an error must not go unhandled
      socket.on("error", () => {});
      if (early) setup.sessions?.set(key, early);
      socket.pause();
      resolve(socket);
    });
  });
}

/**
 * Accept-time TLS, independent of the mail protocol: the handshake (implicit
 * TLS or STARTTLS), the client-certificate decision taken right after it,
 * and the values auth_http reports about the client's TLS state.
 *
 * Rules: docs/behaviour/tls.md#tls-2-the-handshake, #tls-4-client-certificates.
 */
import { createHash, X509Certificate } from "node:crypto";
import type net from "node:net";
import tls from "node:tls";
import type { ClientTlsInfo } from "../types.js";
import { errorCode } from "../../core/errors.js";
import { tlsVerifyError } from "../../event/node-internals.js";
import { ANCHOR_ERRORS, issuerPath, OPTIONAL_NO_CA_ERRORS, verifyErrorNumberOf, verifyErrorText } from "../../event/tls-verify.js";
import type { TlsServerSetup } from "./context.js";

/**
 * Options of startTls. The handshake has no deadline of its own: it runs
 * under the session's `timeout`, and the STARTTLS reply is the front end's,
 * queued before the session calls startTls in the same tick.
 */
export interface StartTlsOptions {
  /**
   * TLS bytes already read from the socket that belong to the handshake
   * (those that followed a PROXY protocol header in the same packet).
   */
  readonly initialData?: Buffer;
  /** The context to use instead of the server's (one of its ticket-key contexts). */
  readonly context?: tls.SecureContext;
}

/**
 * A failed handshake. `reason` is nginx's info line without its action (the
 * session log adds `while SSL handshaking` itself); the message is the whole line.
 */
export class TlsHandshakeError extends Error {
  static readonly code = "ERR_TLS_HANDSHAKE";
  readonly code = TlsHandshakeError.code;
  readonly reason: string;
  constructor(reason: string) {
    super(`${reason} while SSL handshaking`);
    this.name = "TlsHandshakeError";
    this.reason = reason;
  }
}

/** OpenSSL's queue line as nginx prints it: `error:0A00009C:SSL routines::http request`. */
function opensslReason(message: string): string {
  const m = /error:([0-9A-F]{8}):([^:]*):[^:]*:([^:\n]*)/.exec(message);
  return m ? `error:${m[1]}:${m[2]}::${m[3]}` : message.trim();
}

/** ALPN lists in wire form, made once per protocol name rather than per connection. */
const alpnWire = new Map<string, Buffer>();

function alpnList(name: string): Buffer {
  let wire = alpnWire.get(name);
  if (!wire) alpnWire.set(name, (wire = Buffer.concat([Buffer.from([Buffer.byteLength(name)]), Buffer.from(name)])));
  return wire;
}

/**
 * Runs the server side of a TLS handshake on `socket` (a freshly accepted
 * socket, or one whose plaintext reader the caller has stopped after
 * STARTTLS). Plaintext already buffered by the stream is discarded, never
 * fed into TLS, and no earlier `data` listener can take the ClientHello
 * (every `data`/`readable` listener is removed). Resolves after the
 * handshake, before any client-certificate decision; the caller attaches
 * its own `error` listener to the returned socket at once.
 */
export function startTls(socket: net.Socket, setup: TlsServerSetup, opts: StartTlsOptions = {}): Promise<tls.TLSSocket> {
  socket.removeAllListeners("data");
  socket.removeAllListeners("readable");
  socket.pause();
  // Bytes read before the upgrade are plaintext the client pipelined: drop them.
  while (socket.read() !== null);
  socket.setNoDelay(true);
  // TLSSocket feeds bytes buffered in the socket to OpenSSL before reading more
  if (opts.initialData && opts.initialData.length > 0) socket.unshift(opts.initialData);

  const tlsSocket = new tls.TLSSocket(socket, {
    isServer: true,
    secureContext: opts.context ?? setup.secureContext,
    requestCert: setup.verifyClient !== "off",
    rejectUnauthorized: false,
    ALPNProtocols: alpnList(setup.alpn),
    ...(setup.sessions.server ? { server: setup.sessions.server } : {}),
  });
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (err: Error | undefined): void => {
      if (settled) return;
      settled = true;
      tlsSocket.off("secure", onSecure);
      tlsSocket.off("error", onError);
      tlsSocket.off("close", onClose);
      if (err) {
        // A late error from a socket being torn down must not go unhandled.
        tlsSocket.on("error", () => undefined);
        tlsSocket.destroy();
        reject(err);
      } else {
        resolve(tlsSocket);
      }
    };
    const onSecure = (): void => {
      // The handshake timeout keeps running while a chain is checked again.
      void settleVerifyResult(tlsSocket, setup).then(() => finish(undefined));
    };
    const onError = (err: Error): void => {
      const reason = errorCode(err) === "ECONNRESET" ? "(104: Connection reset by peer)" : `(SSL: ${opensslReason(err.message)})`;
      finish(new TlsHandshakeError(`SSL_do_handshake() failed ${reason}`));
    };
    const onClose = (): void => finish(new TlsHandshakeError("peer closed connection in SSL handshake"));
    tlsSocket.once("secure", onSecure);
    tlsSocket.once("error", onError);
    tlsSocket.once("close", onClose);
  });
}

/**
 * Settles once the server's TLS 1.3 NewSessionTicket messages are on their
 * way, so that nothing the session writes next (the greeting, a reply)
 * goes out ahead of them: a client that reads the greeting and closes then
 * holds a ticket, as it does with nginx, whose SSL_do_handshake writes the
 * tickets before the greeting is sent. OpenSSL reports a TLS 1.3 handshake
 * done (Node's 'secure') from inside the read that took the client's
 * Finished, and writes the tickets only after that report, in the same
 * read; Node sends them when the read returns. A write made from 'secure',
 * or from a promise it settles, is encrypted first; one turn of the event
 * loop later the tickets are already queued on the socket.
 * Nothing to wait for with TLS 1.2 (its ticket is inside the handshake) nor
 * with tickets off (the TLS 1.3 tickets OpenSSL still sends then name a
 * session Postern never resumes: docs/compat-tls.md row 9).
 * Rule: docs/behaviour/tls.md#tls-5-sessions-and-tickets.
 */
export function serverTicketsSent(tlsSocket: tls.TLSSocket, setup: TlsServerSetup): Promise<void> {
  if (setup.tickets && tlsSocket.getProtocol() === "TLSv1.3") return new Promise((resolve) => setImmediate(resolve));
  return Promise.resolve();
}

/**
 * OpenSSL's verify result per socket (0 = verified), final once startTls
 * resolves; `rechecked` when it came from the second check against both CA lists.
 */
const verdicts = new WeakMap<tls.TLSSocket, { readonly error: number; readonly rechecked: boolean }>();

/**
 * Reads OpenSSL's verify result of the handshake (Node fills in
 * `authorized` only for sockets a tls.Server accepted itself, not for a
 * TLSSocket built on an existing socket, as STARTTLS needs). The handshake
 * trusted the ssl_client_certificate CAs only (Node's `ca` also advertises);
 * when it failed for want of a trust anchor and ssl_trusted_certificate CAs
 * exist, OpenSSL verifies the chain again with both lists
 * (event/tls-chain-check.ts): that verdict is the one nginx's single store
 * gives. Other failures come from the certificates themselves and stand
 * (the second pass sees the chain as Node links it, which drops a sent
 * certificate that cannot issue, so it would report less precisely).
 */
async function settleVerifyResult(tlsSocket: tls.TLSSocket, setup: TlsServerSetup): Promise<void> {
  if (setup.verifyClient === "off") return;
  const err = tlsVerifyError(tlsSocket);
  const n = err === undefined ? 1 : err === null ? 0 : verifyErrorNumberOf(err);
  if (setup.chainCheck && ANCHOR_ERRORS.has(n)) {
    const sent = peerChain(tlsSocket);
    if (sent.length > 0) {
      verdicts.set(tlsSocket, { error: await setup.chainCheck.verify(sent.map((c) => c.raw)), rechecked: true });
      return;
    }
  }
  verdicts.set(tlsSocket, { error: n, rechecked: false });
}

/** The decision taken right after the handshake. */
export interface ClientCertificateResult {
  readonly result: "ok" | "missing" | "failed";
  /** Auth-SSL-Verify value; absent when ssl_verify_client is off. */
  readonly verify?: string;
  /** The info-level log line for "missing" and "failed". */
  readonly logMessage?: string;
}

const checked = new WeakMap<tls.TLSSocket, ClientCertificateResult>();

/** The certificates the client sent, leaf first (Node links them via issuerCertificate). */
function peerChain(socket: tls.TLSSocket): X509Certificate[] {
  const out: X509Certificate[] = [];
  let c: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  const seen = new Set<string>();
  while (c && c.raw && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    out.push(new X509Certificate(c.raw));
    c = c.issuerCertificate;
  }
  return out;
}

/** OpenSSL's verdict, then ssl_verify_depth: intermediates between the leaf and the trusted root. */
function verifyNumber(socket: tls.TLSSocket, setup: TlsServerSetup, chain: readonly X509Certificate[]): number {
  const verdict = verdicts.get(socket) ?? { error: 1, rechecked: false };
  if (verdict.error !== 0) return verdict.error;
  // Node's linked chain already ends at the advertised CA that verified it;
  // only a chain verified by the second check needs its path through the
  // unadvertised CAs found (a few signature checks, on that path only).
  const length = verdict.rechecked ? issuerPath(chain, [...setup.clientCas, ...setup.trustedCas]).length : chain.length;
  // OpenSSL's own depth limit reports 20 (the issuer past the limit is never looked up).
  return length - 2 > setup.verifyDepth ? 20 : 0;
}

/**
 * Decides what happens after the handshake under ssl_verify_client; a
 * failure also removes the session from the caches.
 */
export function clientCertificateCheck(tlsSocket: tls.TLSSocket, setup: TlsServerSetup): ClientCertificateResult {
  const known = checked.get(tlsSocket);
  if (known) return known;
  const r = decide(tlsSocket, setup);
  checked.set(tlsSocket, r);
  if (r.result === "failed") setup.sessions.forget(tlsSocket);
  return r;
}

function decide(tlsSocket: tls.TLSSocket, setup: TlsServerSetup): ClientCertificateResult {
  if (setup.verifyClient === "off") return { result: "ok" };
  const chain = peerChain(tlsSocket);
  if (chain.length === 0) {
    if (setup.verifyClient === "on") return { result: "missing", verify: "NONE", logMessage: "client sent no required SSL certificate" };
    return { result: "ok", verify: "NONE" };
  }
  const n = verifyNumber(tlsSocket, setup, chain);
  if (n === 0) return { result: "ok", verify: "SUCCESS" };
  const text = verifyErrorText(n);
  if (setup.verifyClient === "optional_no_ca" && OPTIONAL_NO_CA_ERRORS.has(n)) return { result: "ok", verify: `FAILED:${text}` };
  return { result: "failed", verify: `FAILED:${text}`, logMessage: `client SSL certificate verify error: (${n}:${text})` };
}

/** OpenSSL's RFC 2253 form from Node's multi-line, forward-order name. */
export function rfc2253(nodeName: string): string {
  const rdns = nodeName
    .split("\n")
    .filter((l) => l.length > 0)
    .reverse();
  const out = rdns.map((rdn) =>
    rdn
      .split(/ \+ (?=[A-Za-z0-9.]+=)/)
      .reverse()
      .join("+"),
  );
  // ESC_MSB: every byte >= 0x80 of the UTF-8 text as \XX.
  return Array.from(Buffer.from(out.join(","), "utf8"))
    .map((b) => (b >= 0x80 ? `\\${b.toString(16).toUpperCase().padStart(2, "0")}` : String.fromCharCode(b)))
    .join("");
}

/** PEM text of a DER certificate: 64-column base64 and a final newline. */
export function certificatePem(der: Buffer): string {
  const b64 = der.toString("base64").replace(/.{64}(?=.)/g, "$&\n");
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

/** The Auth-SSL-* values for auth_http. */
export function clientTlsInfo(tlsSocket: tls.TLSSocket, setup: TlsServerSetup, passClientCert: boolean): ClientTlsInfo {
  const protocol = tlsSocket.getProtocol() ?? "";
  const cipher = tlsSocket.getCipher()?.name ?? "";
  if (setup.verifyClient === "off") return { protocol, cipher };
  const verify = clientCertificateCheck(tlsSocket, setup).verify;
  const peer = tlsSocket.getPeerCertificate();
  if (!peer || !peer.raw) return { protocol, cipher, verify };
  const x = new X509Certificate(peer.raw);
  return {
    protocol,
    cipher,
    verify,
    subject: rfc2253(x.subject),
    issuer: rfc2253(x.issuer),
    serial: x.serialNumber.toUpperCase(),
    fingerprint: createHash("sha1").update(peer.raw).digest("hex"),
    certPem: passClientCert ? certificatePem(peer.raw) : undefined,
  };
}

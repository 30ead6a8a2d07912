/**
 * Builds one server's TLS setup at configuration time: nginx's merge-time
 * checks (with its messages), file loading, and the mapping of every
 * ssl_* directive onto Node's secure-context options.
 *
 * Rule: docs/behaviour/tls.md#tls-1-which-servers-use-tls.
 */
import { constants, createHash, type KeyObject, type X509Certificate } from "node:crypto";
import tls from "node:tls";
import { ConfError, formatLocation, type SourceLocation } from "../../core/errors.js";
import type { ServerConf } from "../../conf/directive.js";
import { ChainCheck } from "../../event/tls-chain-check.js";
import { applyConfCommands, type TlsKnobs } from "./conf-command.js";
import { checkKeyMatches, loadCaFile, loadCertificate, loadCrl, loadDhparam, loadPrivateKey } from "./load.js";
import {
  type ProtocolName,
  sslCertificate,
  sslCertificateCompression,
  sslCertificateKey,
  sslCiphers,
  sslClientCertificate,
  sslConfCommand,
  sslCrl,
  sslDhparam,
  sslEcdhCurve,
  sslPasswordFile,
  sslPreferServerCiphers,
  sslProtocols,
  sslTrustedCertificate,
  sslVerifyClient,
  sslVerifyDepth,
} from "./module.js";
import { type SessionResumption, setupResumption, ticketSettings } from "./sessions.js";

/** Everything accept-time code needs for one TLS server. */
export interface TlsServerSetup {
  readonly protocol: "imap" | "pop3" | "smtp";
  readonly secureContext: tls.SecureContext;
  /** The only ALPN protocol offered: the mail protocol's name. */
  readonly alpn: string;
  readonly verifyClient: "off" | "on" | "optional" | "optional_no_ca";
  readonly verifyDepth: number;
  /** CAs from ssl_client_certificate (advertised and trusted by OpenSSL). */
  readonly clientCas: readonly X509Certificate[];
  /** CAs from ssl_trusted_certificate (trusted, not advertised). */
  readonly trustedCas: readonly X509Certificate[];
  /** OpenSSL verification against both CA lists; present when ssl_trusted_certificate is. */
  readonly chainCheck: ChainCheck | undefined;
  readonly sessionIdContext: string;
  readonly sessions: SessionResumption;
  /**
   * OpenSSL issues stateless (resumable) tickets: ssl_session_tickets on,
   * unless ssl_conf_command turned them off.
   */
  readonly tickets: boolean;
  /** TLS 1.3 is enabled: a client offering it gets it. */
  readonly tls13: boolean;
}

/** What the caller knows about how the server uses TLS. */
export interface BuildTlsOptions {
  readonly protocol: "imap" | "pop3" | "smtp";
  readonly usesTls: boolean;
  /** Every `listen ... ssl` of the server, in order (messages name the last). */
  readonly listenSslLocations: readonly SourceLocation[];
  /** Where the effective `starttls` was set (server or mail level). */
  readonly starttlsLocation?: SourceLocation;
  /** Receives nginx-style warnings (the caller adds ` in file:line` if it wants). */
  readonly warn?: (message: string) => void;
}

const VERSION_ORDER: readonly ProtocolName[] = ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];
const NO_VERSION_OPTION: Readonly<Record<string, number>> = {
  TLSv1: constants.SSL_OP_NO_TLSv1,
  "TLSv1.1": constants.SSL_OP_NO_TLSv1_1,
  "TLSv1.2": constants.SSL_OP_NO_TLSv1_2,
  "TLSv1.3": constants.SSL_OP_NO_TLSv1_3,
};

/** min/max plus SSL_OP_NO_* for gaps; SSLv2/SSLv3 cannot be enabled with OpenSSL 3. */
export function protocolOptions(enabled: ReadonlySet<ProtocolName>): { minVersion: tls.SecureVersion; maxVersion: tls.SecureVersion; secureOptions: number } {
  const on = VERSION_ORDER.filter((v) => enabled.has(v));
  if (on.length === 0) {
    // Nothing usable: every handshake fails, as with nginx.
    return { minVersion: "TLSv1.3", maxVersion: "TLSv1.3", secureOptions: constants.SSL_OP_NO_TLSv1_3 };
  }
  let secureOptions = 0;
  const lo = VERSION_ORDER.indexOf(on[0]!);
  const hi = VERSION_ORDER.indexOf(on[on.length - 1]!);
  for (let i = lo; i <= hi; i++) if (!enabled.has(VERSION_ORDER[i]!)) secureOptions |= NO_VERSION_OPTION[VERSION_ORDER[i]!]!;
  return { minVersion: on[0] as tls.SecureVersion, maxVersion: on[on.length - 1] as tls.SecureVersion, secureOptions };
}

/** nginx names the last `listen ... ssl` line, else the `starttls` line. */
function which(opts: BuildTlsOptions): string {
  const at = opts.listenSslLocations[opts.listenSslLocations.length - 1];
  if (at) return `the "listen ... ssl" directive ${formatLocation(at)}`;
  if (opts.starttlsLocation) return `the "starttls" directive ${formatLocation(opts.starttlsLocation)}`;
  return `the "listen ... ssl" directive`;
}

/** nginx's curve error names the first group OpenSSL rejects. */
function checkCurves(list: string): void {
  if (list === "auto") return;
  try {
    tls.createSecureContext({ ecdhCurve: list });
    return;
  } catch {
    const bad =
      list.split(":").find((c) => {
        try {
          tls.createSecureContext({ ecdhCurve: c });
          return false;
        } catch {
          return true;
        }
      }) ?? list;
    throw ConfError.unlocated(
      `SSL_CTX_set1_curves_list("${list}") failed (SSL: error:0A080106:SSL routines::passed invalid argument:group '${bad}' cannot be set)`,
    );
  }
}

function checkCiphers(ciphers: string): void {
  try {
    tls.createSecureContext({ ciphers });
  } catch (err) {
    throw ConfError.unlocated(`SSL_CTX_set_cipher_list("${ciphers}") failed (SSL: ${(err as Error).message})`);
  }
}

/**
 * Session ID context: a digest over "MAIL", the certificates, the CA names
 * and the client-certificate policy, so a session never resumes on a server
 * with other certificates or another verification policy. Node takes at
 * most 32 bytes of text, hence hex.
 */
function sessionIdContext(certs: readonly X509Certificate[], cas: readonly X509Certificate[], policy: string): string {
  const h = createHash("sha256").update("MAIL");
  for (const c of certs) h.update(createHash("sha1").update(c.raw).digest());
  for (const c of cas) h.update(createHash("sha1").update(c.subject).digest());
  h.update(policy);
  return h.digest("hex").slice(0, 32);
}

/**
 * Builds the TLS setup of one server, or null when the server does not use
 * TLS (then nothing is loaded or checked, as in nginx). Throws ConfError.
 */
export function buildTlsContext(server: ServerConf, opts: BuildTlsOptions): TlsServerSetup | null {
  if (!opts.usesTls) return null;
  const warn = opts.warn ?? (() => undefined);
  const certRefs = server.get(sslCertificate);
  const keyRefs = server.get(sslCertificateKey);
  if (certRefs.length === 0) throw ConfError.unlocated(`no "ssl_certificate" is defined for ${which(opts)}`);
  if (keyRefs.length === 0) throw ConfError.unlocated(`no "ssl_certificate_key" is defined for ${which(opts)}`);
  if (keyRefs.length < certRefs.length) {
    throw ConfError.unlocated(`no "ssl_certificate_key" is defined for certificate "${certRefs[certRefs.length - 1]!.raw}" and ${which(opts)}`);
  }

  const passwords = server.get(sslPasswordFile);
  const certs: string[] = [];
  const keys: KeyObject[] = [];
  const leaves: X509Certificate[] = [];
  for (const [i, ref] of certRefs.entries()) {
    const cert = loadCertificate(ref);
    const key = loadPrivateKey(keyRefs[i]!, passwords);
    checkKeyMatches(cert, key, keyRefs[i]!);
    certs.push(cert.pem);
    keys.push(key);
    leaves.push(cert.leaf);
  }

  const ciphers = server.get(sslCiphers);
  checkCiphers(ciphers);

  const verifyClient = server.get(sslVerifyClient);
  const verifyDepth = server.get(sslVerifyDepth);
  const clientRef = server.get(sslClientCertificate);
  const trustedRef = server.get(sslTrustedCertificate);
  const crlRef = server.get(sslCrl);
  let clientCas: X509Certificate[] = [];
  let clientCaPem: string | undefined;
  let trustedCas: X509Certificate[] = [];
  let trustedCaPem: string | undefined;
  let crl: string[] | undefined;
  if (verifyClient !== "off") {
    if (verifyClient !== "optional_no_ca" && !clientRef && !trustedRef) {
      throw ConfError.unlocated("no ssl_client_certificate or ssl_trusted_certificate for ssl_verify_client");
    }
    if (clientRef) {
      const ca = loadCaFile(clientRef, "SSL_CTX_load_verify_locations");
      clientCas = ca.certs;
      clientCaPem = ca.pem;
    }
    if (trustedRef) {
      const ca = loadCaFile(trustedRef, "SSL_CTX_load_verify_locations");
      trustedCas = ca.certs;
      trustedCaPem = ca.pem;
    }
    if (crlRef) crl = loadCrl(crlRef);
  }

  const dhparamRef = server.get(sslDhparam);
  const dhparam = dhparamRef ? loadDhparam(dhparamRef) : undefined;
  const ecdhCurve = server.get(sslEcdhCurve);
  checkCurves(ecdhCurve);

  const compression = server.get(sslCertificateCompression) ? certificateCompression(warn) : undefined;

  const tickets = ticketSettings(server, warn);
  const proto = protocolOptions(server.get(sslProtocols));
  let knobs: TlsKnobs = {
    cert: certs,
    key: keys.map((k) => k.export({ type: "pkcs8", format: "pem" }) as string),
    protocols: new Set(server.get(sslProtocols)),
    ciphers,
    honorCipherOrder: server.get(sslPreferServerCiphers),
    ecdhCurve,
    dhparam,
    clientCaPem,
    sigalgs: undefined,
    secureOptions: constants.SSL_OP_NO_RENEGOTIATION | constants.SSL_OP_NO_COMPRESSION | tickets.secureOptions | proto.secureOptions,
  };
  knobs = applyConfCommands(knobs, server.get(sslConfCommand));
  const finalProto = protocolOptions(knobs.protocols);
  const gapOptions = Object.values(NO_VERSION_OPTION).reduce((a, b) => a | b, 0);

  const policy = `${verifyClient}:${verifyDepth}:${trustedCas.map((c) => c.fingerprint256).join(",")}:${crl ? createHash("sha1").update(crl.join("")).digest("hex") : ""}`;
  const sidContext = sessionIdContext(leaves, clientCas, policy);

  const options: tls.SecureContextOptions = {
    cert: [...knobs.cert],
    key: [...knobs.key],
    ciphers: knobs.ciphers,
    honorCipherOrder: knobs.honorCipherOrder,
    ecdhCurve: knobs.ecdhCurve,
    minVersion: finalProto.minVersion,
    maxVersion: finalProto.maxVersion,
    secureOptions: (knobs.secureOptions & ~gapOptions) | finalProto.secureOptions,
    sessionIdContext: sidContext,
    sessionTimeout: tickets.sessionTimeout,
    // An empty list keeps Node from trusting its bundled public roots.
    ca: verifyClient !== "off" && knobs.clientCaPem ? [knobs.clientCaPem] : [],
  };
  if (knobs.dhparam) options.dhparam = knobs.dhparam;
  if (knobs.sigalgs) options.sigalgs = knobs.sigalgs;
  if (crl) options.crl = crl;
  if (tickets.ticketKeys) options.ticketKeys = tickets.ticketKeys;
  if (compression) (options as { certificateCompression?: string[] }).certificateCompression = compression;
  let secureContext: tls.SecureContext;
  try {
    secureContext = tls.createSecureContext(options);
  } catch (err) {
    throw ConfError.unlocated(`SSL_CTX_new() failed (SSL: ${(err as Error).message})`);
  }
  const contextWithKey = (key: Buffer): tls.SecureContext => tls.createSecureContext({ ...options, ticketKeys: key });
  const sessions = setupResumption(server, secureContext, tickets, { sessionIdContext: sidContext, contextWithKey });
  const chainCheck =
    verifyClient !== "off" && trustedCaPem !== undefined
      ? new ChainCheck({ cert: knobs.cert, key: knobs.key, ca: [...(options.ca as string[]), trustedCaPem], crl })
      : undefined;
  return {
    protocol: opts.protocol,
    secureContext,
    alpn: opts.protocol,
    verifyClient,
    verifyDepth,
    clientCas,
    trustedCas,
    chainCheck,
    sessionIdContext: sidContext,
    sessions,
    tickets: (knobs.secureOptions & constants.SSL_OP_NO_TICKET) === 0,
    tls13: knobs.protocols.has("TLSv1.3"),
  };
}

/**
 * `ssl_certificate_compression on`: nginx calls SSL_CTX_compress_certs(ctx, 0),
 * every algorithm its OpenSSL was built with. Node 26 has the same switch
 * (`certificateCompression`, the algorithms from
 * getCertificateCompressionAlgorithms); an older Node has none, and gets
 * nginx's warning for an OpenSSL without the feature.
 */
function certificateCompression(warn: (m: string) => void): string[] | undefined {
  const available = (tls as { getCertificateCompressionAlgorithms?: () => string[] }).getCertificateCompressionAlgorithms;
  if (!available) {
    warn(`"ssl_certificate_compression" is not supported on this platform, ignored`);
    return undefined;
  }
  const algorithms = available();
  if (algorithms.length === 0) {
    warn("SSL_CTX_compress_certs() failed, ignored");
    return undefined;
  }
  return algorithms;
}

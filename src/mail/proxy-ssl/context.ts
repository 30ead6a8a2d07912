/**
 * Builds a server's backend TLS client context when the mail block closes:
 * the client certificate, the trusted CAs (the system's store by default),
 * CRLs, protocols, ciphers and conf commands, loaded with
 * ngx_mail_ssl_module's loaders and messages. The files are read through
 * the recorded configuration inputs, so workers never read the disk.
 *
 * Rules: docs/backend-tls.md#directives.
 */
import { existsSync } from "node:fs";
import { constants } from "node:crypto";
import tls from "node:tls";
import type { ServerConf } from "../../conf/directive.js";
import { confInput } from "../../core/conf-inputs.js";
import { ConfError } from "../../core/errors.js";
import { applyConfCommands, type TlsKnobs } from "../ssl/conf-command.js";
import { protocolOptions } from "../ssl/context.js";
import { checkKeyMatches, loadCaFile, loadCertificate, loadCrl, loadPrivateKey } from "../ssl/load.js";
import type { FileRef } from "../ssl/module.js";
import {
  PROXY_SSL_DIRECTIVES,
  type BackendTlsMode,
  proxySsl,
  proxySslCertificate,
  proxySslCertificateKey,
  proxySslCiphers,
  proxySslConfCommand,
  proxySslCrl,
  proxySslName,
  proxySslPasswordFile,
  proxySslProtocols,
  proxySslServerName,
  proxySslSessionReuse,
  proxySslTrustedCertificate,
  proxySslVerify,
  proxySslVerifyDepth,
} from "./module.js";
import { BackendSessionCache } from "./session-cache.js";

/** One server's backend TLS, as the proxy uses it. */
export interface BackendTlsSetup {
  readonly mode: BackendTlsMode;
  readonly verify: boolean;
  readonly verifyDepth: number;
  /** proxy_ssl_name; undefined = the backend's address. */
  readonly name: string | undefined;
  readonly serverName: boolean;
  readonly secureContext: tls.SecureContext;
  /** undefined with proxy_ssl_session_reuse off. */
  readonly sessions: BackendSessionCache | undefined;
}

/**
 * Where OpenSSL's default CA file is on the common systems (Debian first);
 * SSL_CERT_FILE overrides, as it does for OpenSSL itself.
 */
const SYSTEM_CA_FILES = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem", "/etc/ssl/ca-bundle.pem"];

/** The system CA file's path, chosen by the master and replayed to workers. */
function systemCaFile(): FileRef {
  const path = confInput("system-ca-file", () => {
    const env = process.env.SSL_CERT_FILE;
    if (env) return env;
    return SYSTEM_CA_FILES.find((f) => existsSync(f)) ?? "";
  });
  if (path === "") throw ConfError.unlocated(`no "proxy_ssl_trusted_certificate" is defined for "proxy_ssl_verify" and no system CA store was found`);
  return { raw: path, path };
}

function checkCiphers(ciphers: string): void {
  try {
    tls.createSecureContext({ ciphers });
  } catch (err) {
    throw ConfError.unlocated(`SSL_CTX_set_cipher_list("${ciphers}") failed (SSL: ${(err as Error).message})`);
  }
}

/** True when the server (or its mail block) writes any proxy_ssl directive. */
export function usesBackendTls(conf: ServerConf): boolean {
  return PROXY_SSL_DIRECTIVES.some((d) => conf.isSet(d));
}

/** Builds the setup, or null when no proxy_ssl directive is written (nothing is loaded then). Throws ConfError. */
export function buildBackendTls(conf: ServerConf): BackendTlsSetup | null {
  if (!usesBackendTls(conf)) return null;
  const certRef = conf.get(proxySslCertificate);
  const keyRef = conf.get(proxySslCertificateKey);
  const cert: string[] = [];
  const key: string[] = [];
  if (certRef) {
    if (!keyRef) throw ConfError.unlocated(`no "proxy_ssl_certificate_key" is defined for certificate "${certRef.raw}"`);
    const loaded = loadCertificate(certRef);
    const privateKey = loadPrivateKey(keyRef, conf.get(proxySslPasswordFile));
    checkKeyMatches(loaded, privateKey, keyRef);
    cert.push(loaded.pem);
    key.push(privateKey.export({ type: "pkcs8", format: "pem" }) as string);
  }

  const ciphers = conf.get(proxySslCiphers);
  checkCiphers(ciphers);
  const verify = conf.get(proxySslVerify);
  // Without verification no CA is needed; an empty list also keeps Node's bundled roots out.
  const caRef = conf.get(proxySslTrustedCertificate) ?? (verify ? systemCaFile() : undefined);
  const caPem = caRef ? loadCaFile(caRef, "SSL_CTX_load_verify_locations").pem : undefined;
  const crlRef = conf.get(proxySslCrl);
  const crl = crlRef ? loadCrl(crlRef) : undefined;

  let knobs: TlsKnobs = {
    cert,
    key,
    protocols: new Set(conf.get(proxySslProtocols)),
    ciphers,
    honorCipherOrder: false,
    ecdhCurve: "auto",
    dhparam: undefined,
    clientCaPem: caPem,
    sigalgs: undefined,
    secureOptions: constants.SSL_OP_NO_RENEGOTIATION | constants.SSL_OP_NO_COMPRESSION,
  };
  knobs = applyConfCommands(knobs, conf.get(proxySslConfCommand));
  const finalProto = protocolOptions(knobs.protocols);
  const options: tls.SecureContextOptions = {
    ciphers: knobs.ciphers,
    ecdhCurve: knobs.ecdhCurve,
    minVersion: finalProto.minVersion,
    maxVersion: finalProto.maxVersion,
    secureOptions: knobs.secureOptions | finalProto.secureOptions,
    ca: knobs.clientCaPem ? [knobs.clientCaPem] : [],
  };
  if (knobs.cert.length > 0) {
    options.cert = [...knobs.cert];
    options.key = [...knobs.key];
  }
  if (knobs.sigalgs) options.sigalgs = knobs.sigalgs;
  if (crl) options.crl = crl;
  let secureContext: tls.SecureContext;
  try {
    secureContext = tls.createSecureContext(options);
  } catch (err) {
    throw ConfError.unlocated(`SSL_CTX_new() failed (SSL: ${(err as Error).message})`);
  }
  return {
    mode: conf.get(proxySsl),
    verify,
    verifyDepth: conf.get(proxySslVerifyDepth),
    name: conf.get(proxySslName),
    serverName: conf.get(proxySslServerName),
    secureContext,
    sessions: conf.get(proxySslSessionReuse) ? new BackendSessionCache() : undefined,
  };
}

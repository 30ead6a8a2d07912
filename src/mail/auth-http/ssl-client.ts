/**
 * auth_http_ssl_*: how Postern speaks TLS to an `https://` auth service,
 * named as nginx's proxy_ssl_* directives. Unlike proxy_ssl_verify, the
 * certificate is verified by default (against the system's CAs when no
 * auth_http_ssl_trusted_certificate is given): the auth service receives
 * every password. The files are loaded when the configuration is checked,
 * with the ssl module's loaders and messages.
 */
import { createHash } from "node:crypto";
import tls from "node:tls";
import { ConfError } from "../../core/errors.js";
import type { ServerConf } from "../../conf/directive.js";
import { bitmask, custom, flag, number, string } from "../../conf/slots.js";
import { take } from "../../conf/directive.js";
import { readConfFile } from "../../core/conf-inputs.js";
import { describeSystemError } from "../../core/errors.js";
import { protocolOptions } from "../ssl/context.js";
import { checkKeyMatches, loadCaFile, loadCertificate, loadPrivateKey } from "../ssl/load.js";
import { type FileRef, PROTOCOL_NAMES, parsePasswordFile, resolveFile } from "../ssl/module.js";
import type { AuthTlsClient } from "./connect.js";

const CONTEXTS = ["mail", "server"] as const;

function file(name: string, doc: string, special = false) {
  return custom<FileRef | undefined>({
    name,
    contexts: CONTEXTS,
    args: take(1),
    syntax: "file",
    defaultValue: undefined,
    defaultText: "—",
    doc,
    parse: (args, _prev, cx) => resolveFile(args[0]!, cx, special),
  });
}

export const authHttpSslVerify = flag("auth_http_ssl_verify", true, {
  contexts: CONTEXTS,
  doc: "Postern: verifies the certificate of an https:// authentication server (on by default, unlike proxy_ssl_verify).",
});
export const authHttpSslTrustedCertificate = file(
  "auth_http_ssl_trusted_certificate",
  "Postern: CA certificates (PEM) that verify an https:// authentication server; the system's CAs when not set.",
);
export const authHttpSslName = string("auth_http_ssl_name", undefined, {
  contexts: CONTEXTS,
  syntax: "name",
  doc: "Postern: the name the authentication server's certificate is checked against (and sent in SNI); the URL's host by default.",
});
export const authHttpSslServerName = flag("auth_http_ssl_server_name", true, {
  contexts: CONTEXTS,
  doc: "Postern: sends the server name in SNI to an https:// authentication server (on by default; never for an IP address).",
});
export const authHttpSslCertificate = file("auth_http_ssl_certificate", "Postern: client certificate (PEM) presented to an https:// authentication server.");
export const authHttpSslCertificateKey = file("auth_http_ssl_certificate_key", "Postern: the key of auth_http_ssl_certificate.", true);
export const authHttpSslPasswordFile = custom<readonly Buffer[] | undefined>({
  name: "auth_http_ssl_password_file",
  contexts: CONTEXTS,
  args: take(1),
  syntax: "file",
  defaultValue: undefined,
  defaultText: "—",
  doc: "Postern: passphrases for auth_http_ssl_certificate_key, one per line, tried in order.",
  parse(args, _prev, cx) {
    const ref = resolveFile(args[0]!, cx);
    try {
      return parsePasswordFile(readConfFile(ref.path), ref.path);
    } catch (err) {
      throw new ConfError(`open() "${ref.path}" failed ${describeSystemError(err)}`);
    }
  },
});
export const authHttpSslProtocols = bitmask("auth_http_ssl_protocols", PROTOCOL_NAMES, ["TLSv1.2", "TLSv1.3"], {
  contexts: CONTEXTS,
  doc: "Postern: protocol versions offered to an https:// authentication server.",
});
export const authHttpSslCiphers = string("auth_http_ssl_ciphers", "DEFAULT", {
  contexts: CONTEXTS,
  syntax: "ciphers",
  doc: "Postern: OpenSSL cipher list (TLS 1.2 and older) offered to an https:// authentication server.",
});

export const authHttpSslVerifyDepth = number("auth_http_ssl_verify_depth", 1, {
  contexts: CONTEXTS,
  doc: "Postern: the most intermediate CAs allowed in an https:// authentication server's chain (as proxy_ssl_verify_depth).",
});

export const AUTH_HTTP_SSL_DIRECTIVES = [
  authHttpSslVerify,
  authHttpSslVerifyDepth,
  authHttpSslTrustedCertificate,
  authHttpSslName,
  authHttpSslServerName,
  authHttpSslCertificate,
  authHttpSslCertificateKey,
  authHttpSslPasswordFile,
  authHttpSslProtocols,
  authHttpSslCiphers,
];

/** Builds the TLS client of a server whose auth_http has an https:// URL (throws ConfError). */
export function buildAuthTlsClient(server: ServerConf): AuthTlsClient {
  const trusted = server.get(authHttpSslTrustedCertificate);
  const certRef = server.get(authHttpSslCertificate);
  const keyRef = server.get(authHttpSslCertificateKey);
  const options: tls.ConnectionOptions = { ...protocolOptions(server.get(authHttpSslProtocols)), ciphers: server.get(authHttpSslCiphers) };
  const id = createHash("sha256");
  const at = (d: Parameters<ServerConf["locationOf"]>[0]) => server.locationOf(d);
  try {
    if (trusted) {
      const ca = loadCaFile(trusted, "SSL_CTX_load_verify_locations");
      options.ca = ca.pem;
      id.update(ca.pem);
    }
  } catch (err) {
    throw err instanceof ConfError ? new ConfError(err.message, at(authHttpSslTrustedCertificate)) : err;
  }
  if (certRef && !keyRef) throw new ConfError(`no "auth_http_ssl_certificate_key" is defined for certificate "${certRef.raw}"`, at(authHttpSslCertificate));
  if (certRef && keyRef) {
    try {
      const cert = loadCertificate(certRef);
      const key = loadPrivateKey(keyRef, server.get(authHttpSslPasswordFile));
      checkKeyMatches(cert, key, keyRef);
      options.cert = cert.pem;
      options.key = key.export({ type: "pkcs8", format: "pem" });
      id.update(cert.pem);
    } catch (err) {
      throw err instanceof ConfError ? new ConfError(err.message, at(authHttpSslCertificate)) : err;
    }
  }
  let secureContext: tls.SecureContext;
  try {
    // one context for every connection; a bad cipher list fails here, at -t
    secureContext = tls.createSecureContext(options);
  } catch {
    throw new ConfError(`SSL_CTX_set_cipher_list("${String(options.ciphers)}") failed (SSL: no cipher match)`, at(authHttpSslCiphers));
  }
  const name = server.get(authHttpSslName);
  const verify = server.get(authHttpSslVerify);
  const sendServerName = server.get(authHttpSslServerName);
  const verifyDepth = server.get(authHttpSslVerifyDepth);
  id.update(
    `${name ?? ""}\0${verify}\0${verifyDepth}\0${sendServerName}\0${String(options.ciphers)}\0${options.minVersion}-${options.maxVersion}-${options.secureOptions}`,
  );
  return { options: { secureContext }, name, verify, verifyDepth, sendServerName, id: id.digest("hex").slice(0, 16) };
}

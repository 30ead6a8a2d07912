/**
 * TLS to the backends: the `proxy_ssl_*` directives, named and shaped as
 * nginx's stream module names its upstream TLS. The values are parsed here
 * with ngx_mail_ssl_module's own parsers (file names, password files,
 * protocols, conf commands); the files are loaded, and the context built,
 * when the mail block closes (context.ts), so `-t` reports them.
 *
 * Rules: docs/backend-tls.md.
 */
import { isIP } from "node:net";
import { ConfError } from "../../core/errors.js";
import { type ConfModule, type Context, type Directive, take } from "../../conf/directive.js";
import { bitmask, custom, enumeration, flag, list, number, string } from "../../conf/slots.js";
import { type ConfCommand, type FileRef, PROTOCOL_NAMES, resolveFile, sslPasswordFile } from "../ssl/module.js";

const both: readonly Context[] = ["mail", "server"];

/** The three ways of talking to a backend. */
export type BackendTlsMode = "off" | "on" | "starttls";

/** `proxy_ssl off | on | starttls`. */
export const proxySsl = enumeration("proxy_ssl", ["off", "on", "starttls"] as const, "off", {
  contexts: both,
  doc: "TLS to the backend: implicit (on), the protocol's STARTTLS/STLS before the backend login (starttls), or none.",
});

/** `proxy_ssl_verify` (on by default: unlike nginx stream, where it is off). */
export const proxySslVerify = flag("proxy_ssl_verify", true, {
  contexts: both,
  doc: "Verify the backend's certificate chain and name (default on, unlike nginx stream).",
});

function fileDirective(name: string, doc: string): Directive<FileRef | undefined> {
  return custom<FileRef | undefined>({
    name,
    contexts: both,
    args: take(1),
    syntax: "file",
    defaultValue: undefined,
    defaultText: "—",
    doc,
    parse: (args, _prev, cx) => resolveFile(args[0]!, cx),
  });
}

/** `proxy_ssl_trusted_certificate file` (default: the system's CA store). */
export const proxySslTrustedCertificate = custom<FileRef | undefined>({
  name: "proxy_ssl_trusted_certificate",
  contexts: both,
  args: take(1),
  syntax: "file",
  defaultValue: undefined,
  defaultText: "system CA store",
  doc: "CAs trusted for backend certificates, in PEM (default: the system's CA store).",
  parse: (args, _prev, cx) => resolveFile(args[0]!, cx),
});

/** `proxy_ssl_verify_depth`. */
export const proxySslVerifyDepth = number("proxy_ssl_verify_depth", 1, {
  contexts: both,
  doc: "Maximum number of intermediate CAs in a backend's chain.",
});

/** A host name (letters, digits, `-`, dots, an optional `*.` first label) or an IP address. */
export function isValidTlsName(name: string): boolean {
  if (isIP(name) !== 0) return true;
  if (name.length === 0 || name.length > 253) return false;
  const labels = name.replace(/\.$/, "").split(".");
  return labels.every((l, i) => (i === 0 && l === "*") || /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l));
}

/** `proxy_ssl_name name`: a literal name (variables are not supported). */
export const proxySslName = custom<string | undefined>({
  name: "proxy_ssl_name",
  contexts: both,
  args: take(1),
  syntax: "name",
  defaultValue: undefined,
  defaultText: "the Auth-Server address",
  doc: "Name the backend certificate is verified against (and sent as SNI with proxy_ssl_server_name).",
  parse(args) {
    const name = args[0]!;
    if (name.includes("$")) throw new ConfError(`variables are not supported in "proxy_ssl_name": "${name}"`);
    if (!isValidTlsName(name)) throw new ConfError(`invalid name "${name}" in "proxy_ssl_name" directive`);
    return name;
  },
});

/** `proxy_ssl_server_name`: send the name as SNI. */
export const proxySslServerName = flag("proxy_ssl_server_name", false, {
  contexts: both,
  doc: "Send the proxy_ssl_name (or Auth-Proxy-SSL-Name) as SNI; never an IP address.",
});

/** `proxy_ssl_certificate file`: a client certificate for backends that require one. */
export const proxySslCertificate = fileDirective("proxy_ssl_certificate", "Client certificate chain (PEM) presented to the backend.");
/** `proxy_ssl_certificate_key file`. */
export const proxySslCertificateKey = fileDirective("proxy_ssl_certificate_key", "Private key (PEM) of proxy_ssl_certificate.");

/** `proxy_ssl_password_file file`: read at parse time, with ssl_password_file's rules. */
export const proxySslPasswordFile = custom<readonly Buffer[] | undefined>({
  name: "proxy_ssl_password_file",
  contexts: both,
  args: take(1),
  syntax: "file",
  defaultValue: undefined,
  defaultText: "—",
  doc: "Passphrases for proxy_ssl_certificate_key, one per line, tried in order.",
  parse: (args, prev, cx) => sslPasswordFile.parse(args, prev, cx),
});

/** `proxy_ssl_protocols` (nginx's default: TLSv1.2 TLSv1.3). */
export const proxySslProtocols = bitmask("proxy_ssl_protocols", PROTOCOL_NAMES, ["TLSv1.2", "TLSv1.3"], {
  contexts: both,
  doc: "Protocol versions offered to the backend.",
});

/** `proxy_ssl_ciphers` (nginx stream's default). */
export const proxySslCiphers = string("proxy_ssl_ciphers", "DEFAULT", {
  contexts: both,
  syntax: "ciphers",
  doc: "OpenSSL cipher list offered to the backend (TLS 1.2 and older).",
});

/** `proxy_ssl_conf_command name value` (list; inherited only when the server has none). */
export const proxySslConfCommand = list<ConfCommand>("proxy_ssl_conf_command", {
  contexts: both,
  syntax: "name value",
  args: take(2),
  doc: "OpenSSL configuration commands for the backend connection, applied last.",
  entry: (args, cx) => ({ name: args[0]!, value: args[1]!, path: resolveFile(args[1]!, cx).path }),
});

/** `proxy_ssl_crl file`. */
export const proxySslCrl = fileDirective("proxy_ssl_crl", "Certificate revocation lists checked against the backend's chain.");

/** `proxy_ssl_session_reuse`. */
export const proxySslSessionReuse = flag("proxy_ssl_session_reuse", true, {
  contexts: both,
  doc: "Resume TLS sessions with the backend (one cache per server, keyed by backend address and name).",
});

/** Every directive of the module; a server with any of them set gets a backend TLS setup. */
export const PROXY_SSL_DIRECTIVES = [
  proxySsl,
  proxySslVerify,
  proxySslTrustedCertificate,
  proxySslVerifyDepth,
  proxySslName,
  proxySslServerName,
  proxySslCertificate,
  proxySslCertificateKey,
  proxySslPasswordFile,
  proxySslProtocols,
  proxySslCiphers,
  proxySslConfCommand,
  proxySslCrl,
  proxySslSessionReuse,
] as const;

/** The table, for the configuration engine. */
export const proxySslConfModule: ConfModule = {
  name: "ngx_mail_proxy_ssl_module",
  directives: [...PROXY_SSL_DIRECTIVES],
};

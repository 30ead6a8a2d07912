/**
 * ngx_mail_auth_http_module's directives: where the auth server is, extra
 * request headers, the timeout, and whether to pass the client certificate.
 *
 * The URL is parsed and its host resolved when the directive is read, as
 * nginx does.
 *
 * Behaviour: docs/behaviour/auth-http.md.
 */
import { ConfError, formatLocation } from "../../core/errors.js";
import { type ConfModule, type Directive, type ServerConf, take } from "../../conf/directive.js";
import { custom, flag, list, msec } from "../../conf/slots.js";
import { type AuthHttpAddress, type AuthHttpUrl, parseAuthHttpUrl } from "./url.js";

/** One `auth_http_header` line. */
export interface AuthHttpHeader {
  readonly name: string;
  readonly value: string;
}

const CONTEXTS = ["mail", "server"] as const;

/** `auth_http URL;` (no duplicate check: the last one wins, as in nginx). */
export const authHttp: Directive<AuthHttpUrl | undefined> = custom<AuthHttpUrl | undefined>({
  name: "auth_http",
  contexts: CONTEXTS,
  args: take(1),
  syntax: "URL",
  defaultValue: undefined,
  defaultText: "—",
  duplicates: "lastWins",
  doc: "Sets the URL of the HTTP authentication server.",
  parse: (args, _previous, cx) => parseAuthHttpUrl(args[0]!, cx.location),
});

/** `auth_http_header name value;` lines, appended to every request. */
export const authHttpHeader: Directive<readonly AuthHttpHeader[]> = list<AuthHttpHeader>("auth_http_header", {
  contexts: CONTEXTS,
  syntax: "header value",
  args: take(2),
  doc: "Appends the specified header to requests sent to the authentication server.",
  entry: (args) => ({ name: args[0]!, value: args[1]! }),
});

/** `auth_http_timeout time;` — one deadline for the whole exchange. */
export const authHttpTimeout = msec("auth_http_timeout", 60000, {
  contexts: CONTEXTS,
  defaultText: "60s",
  doc: "Sets the timeout for communication with the authentication server.",
});

/** `auth_http_pass_client_cert on|off;` */
export const authHttpPassClientCert = flag("auth_http_pass_client_cert", false, {
  contexts: CONTEXTS,
  doc: "Appends the Auth-SSL-Cert header with the client certificate in PEM format (urlencoded).",
});

/** The module's directive table. */
export const authHttpModule: ConfModule = {
  name: "ngx_mail_auth_http_module",
  directives: [authHttp, authHttpHeader, authHttpPassClientCert, authHttpTimeout],
};

/** The merged auth_http settings of one server, as the session needs them. */
export interface AuthHttpSettings {
  readonly url: AuthHttpUrl;
  readonly headers: readonly AuthHttpHeader[];
  /** Milliseconds. */
  readonly timeout: number;
  readonly passClientCert: boolean;
}

/** Merge-time check: `no "auth_http" is defined for server in FILE:LINE`. */
export function checkAuthHttp(server: ServerConf): void {
  if (server.get(authHttp) === undefined) {
    const where = formatLocation(server.location).replace(/^in /, "");
    throw ConfError.unlocated(`no "auth_http" is defined for server in ${where}`);
  }
}

/** The effective settings of a server (call after checkAuthHttp). */
export function authHttpSettings(server: ServerConf): AuthHttpSettings {
  const url = server.get(authHttp);
  if (url === undefined) throw new Error("auth_http settings read before checkAuthHttp");
  return {
    url,
    headers: server.get(authHttpHeader),
    timeout: server.get(authHttpTimeout),
    passClientCert: server.get(authHttpPassClientCert),
  };
}

/** The resolved address of a server's auth_http (after resolveAuthHttp). */
export function authHttpAddress(url: AuthHttpUrl): AuthHttpAddress {
  return url.address;
}

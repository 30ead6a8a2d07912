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
import { custom, flag, list, msec, number } from "../../conf/slots.js";
import { oneOrMore } from "../../conf/directive.js";
import type { AuthTlsClient } from "./connect.js";
import { AuthAnswerCache } from "./cache.js";
import { authHttpCache } from "./cache-conf.js";
import { AUTH_HTTP_SSL_DIRECTIVES, buildAuthTlsClient } from "./ssl-client.js";
import { authAnswerStore } from "../../event/auth-answer-ipc.js";
import { type AuthHttpTarget, parseAuthHttpTarget } from "./target.js";
import type { AuthHttpAddress, AuthHttpUrl } from "./url.js";

/** One `auth_http_header` line. */
export interface AuthHttpHeader {
  readonly name: string;
  readonly value: string;
}

const CONTEXTS = ["mail", "server"] as const;

/** `auth_http URL [URL ...] [max_fails=N] [fail_timeout=T];` (no duplicate check: the last one wins, as in nginx). */
export const authHttp: Directive<AuthHttpTarget | undefined> = custom<AuthHttpTarget | undefined>({
  name: "auth_http",
  contexts: CONTEXTS,
  args: oneOrMore,
  syntax: "URL [URL ...] [max_fails=number] [fail_timeout=time]",
  defaultValue: undefined,
  defaultText: "—",
  duplicates: "lastWins",
  doc:
    "Sets the URL of the HTTP authentication server. Postern: `https://` URLs (see the auth_http_ssl_* directives), and several URLs or " +
    "`max_fails`/`fail_timeout` (nginx upstream semantics, defaults 1 and 10s) make a group tried round robin with failover (docs/auth-http-path.md).",
  parse: (args, _previous, cx) => parseAuthHttpTarget(args, cx.location),
});

/** `auth_http_keepalive connections;` — idle kept-alive connections per worker; 0 is nginx's connection per request. */
export const authHttpKeepalive = number("auth_http_keepalive", 0, {
  contexts: CONTEXTS,
  doc:
    "Postern: talks HTTP/1.1 to the authentication server and keeps up to this many idle connections per worker process for reuse " +
    "(nginx upstream `keepalive` style); 0, the default, opens one HTTP/1.0 connection per request as nginx does.",
});

/** `auth_http_keepalive_timeout time;` */
export const authHttpKeepaliveTimeout = msec("auth_http_keepalive_timeout", 4000, {
  contexts: CONTEXTS,
  defaultText: "4s",
  doc:
    "Postern: how long an idle kept-alive connection to the authentication server stays open; shortened to one second under the server's " +
    "`Keep-Alive: timeout=N`. Keep it below the server's own idle timeout (Node.js: 5s), so the server never closes a connection Postern is reusing.",
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
  directives: [
    authHttp,
    authHttpHeader,
    authHttpPassClientCert,
    authHttpTimeout,
    authHttpKeepalive,
    authHttpKeepaliveTimeout,
    authHttpCache,
    ...AUTH_HTTP_SSL_DIRECTIVES,
  ],
};

/** The merged auth_http settings of one server, as the session needs them. */
export interface AuthHttpSettings {
  readonly url: AuthHttpUrl;
  readonly headers: readonly AuthHttpHeader[];
  /** Milliseconds. */
  readonly timeout: number;
  readonly passClientCert: boolean;
  /** The whole directive (group, max_fails); absent: the single `url`. */
  readonly target?: AuthHttpTarget | undefined;
  /** auth_http_keepalive (0 or absent: a connection per request). */
  readonly keepalive?: number | undefined;
  /** auth_http_keepalive_timeout, ms. */
  readonly keepaliveTimeout?: number | undefined;
  /** For https:// URLs. */
  readonly tls?: AuthTlsClient | undefined;
  /** auth_http_cache. */
  readonly cache?: AuthAnswerCache | undefined;
}

/** Merge-time check: `no "auth_http" is defined for server in FILE:LINE`; loads the https client files. */
export function checkAuthHttp(server: ServerConf): void {
  const target = server.get(authHttp);
  if (target === undefined) {
    const where = formatLocation(server.location).replace(/^in /, "");
    throw ConfError.unlocated(`no "auth_http" is defined for server in ${where}`);
  }
  if (target.urls.some((u) => u.https)) authHttpSettings(server);
}

/** Built once per server configuration: the TLS context, the cache and the peer state live as long as it. */
const settingsOf = new WeakMap<ServerConf, AuthHttpSettings>();

/** The effective settings of a server (call after checkAuthHttp). */
export function authHttpSettings(server: ServerConf): AuthHttpSettings {
  let s = settingsOf.get(server);
  if (!s) settingsOf.set(server, (s = buildSettings(server)));
  return s;
}

function buildSettings(server: ServerConf): AuthHttpSettings {
  const url = server.get(authHttp);
  if (url === undefined) throw new Error("auth_http settings read before checkAuthHttp");
  const cacheConf = server.get(authHttpCache);
  return {
    tls: url.urls.some((u) => u.https) ? buildAuthTlsClient(server) : undefined,
    cache: cacheConf
      ? new AuthAnswerCache(authAnswerStore(cacheConf.zone, cacheConf.size, cacheConf.sync === true), cacheConf, url.urls.map((u) => u.text).join(" "))
      : undefined,
    url,
    target: url,
    headers: server.get(authHttpHeader),
    timeout: server.get(authHttpTimeout),
    passClientCert: server.get(authHttpPassClientCert),
    keepalive: server.get(authHttpKeepalive),
    keepaliveTimeout: server.get(authHttpKeepaliveTimeout),
  };
}

/** The resolved address of a server's auth_http (after resolveAuthHttp). */
export function authHttpAddress(url: AuthHttpUrl): AuthHttpAddress {
  return url.address;
}

/**
 * The `auth_http` URL: parsed and resolved when the directive is read, as
 * nginx does (it keeps the first address; IPv4 addresses come before IPv6
 * ones), so `host not found` is reported in file order.
 *
 * Rule: docs/behaviour/auth-http.md#ah-1-the-exchange.
 */
import { isIP } from "node:net";
import { ConfError, type SourceLocation } from "../../core/errors.js";
import { resolveHostSync } from "../../core/resolve-sync.js";

/** Where the auth server listens, once known. */
export type AuthHttpAddress = { readonly kind: "inet"; readonly host: string; readonly port: number } | { readonly kind: "unix"; readonly path: string };

/** A parsed `auth_http` value. */
export interface AuthHttpUrl {
  /** The argument as written. */
  readonly text: string;
  /** The host as written (IPv6 with brackets), or the socket path. */
  readonly host: string;
  readonly port: number;
  /** Request target: the URL's path (and query) as written, `/` if none. */
  readonly uri: string;
  /** `Host:` header value: the host without the port, `localhost` for unix sockets. */
  readonly hostHeader: string;
  /** The address requests go to, resolved at parse time (nginx keeps the first). */
  readonly address: AuthHttpAddress;
  /** Every address the host resolved to (IPv4 first); a group of auth services uses them all. */
  readonly addresses: readonly AuthHttpAddress[];
  /** `https://`: the auth service is reached over TLS (a Postern addition; nginx 1.22.1 rejects it). */
  readonly https: boolean;
  /** Where the directive was, for a `host not found` error found later. */
  readonly location: SourceLocation | undefined;
}

// sockaddr_un.sun_path is 108 bytes on Linux, including the final NUL.
const MAX_UNIX_PATH = 107;

/** Parses an `auth_http` argument as nginx's ngx_parse_url does (uri allowed, default port 80). */
export function parseAuthHttpUrl(text: string, location?: SourceLocation): AuthHttpUrl {
  // nginx strips "http://" and then quotes the rest in its messages.
  // "https://" is Postern's addition (nginx 1.22.1 fails on it with "invalid port").
  const https = text.startsWith("https://");
  const url = text.startsWith("http://") ? text.slice(7) : https ? text.slice(8) : text;
  const fail = (what: string): ConfError => new ConfError(`${what} in auth_http "${url}"`);

  if (url.slice(0, 5).toLowerCase() === "unix:") {
    let path = url.slice(5);
    let uri = "";
    const colon = path.indexOf(":");
    if (colon >= 0) {
      uri = path.slice(colon + 1);
      path = path.slice(0, colon);
    }
    if (path.length === 0) throw fail("no path in the unix domain socket");
    if (Buffer.byteLength(path) > MAX_UNIX_PATH) throw fail("too long path in the unix domain socket");
    const address: AuthHttpAddress = { kind: "unix", path };
    return { text, host: path, port: 0, uri: uri || "/", hostHeader: "localhost", address, addresses: [address], https, location };
  }

  if (url.startsWith("[")) return parseInet6(url, text, location, fail, https);

  const colon = url.indexOf(":");
  let slash = url.indexOf("/");
  const query = url.indexOf("?");
  if (query >= 0 && (slash < 0 || query < slash)) slash = query;
  let end = url.length;
  let uri = "";
  let portAt = colon;
  if (slash >= 0) {
    uri = url.slice(slash);
    end = slash;
    if (slash < colon) portAt = -1;
  }
  let port = https ? 443 : 80;
  if (portAt >= 0) {
    port = parsePort(url.slice(portAt + 1, end));
    if (port < 1) throw fail("invalid port");
    end = portAt;
  }
  const host = url.slice(0, end);
  if (host.length === 0) throw fail("no host");
  const resolved = resolveHostSync(host);
  if (resolved[0] === undefined) throw fail("host not found");
  const addresses = resolved.map((ip): AuthHttpAddress => ({ kind: "inet", host: ip, port }));
  return { text, host, port, uri: uri || "/", hostHeader: host, address: addresses[0]!, addresses, https, location };
}

function parseInet6(url: string, text: string, location: SourceLocation | undefined, fail: (what: string) => ConfError, https: boolean): AuthHttpUrl {
  const close = url.indexOf("]");
  if (close < 0) throw fail("invalid host");
  const inner = url.slice(1, close);
  let rest = url.slice(close + 1);
  let port = https ? 443 : 80;
  let uri = "";
  if (rest.startsWith(":")) {
    rest = rest.slice(1);
    let cut = rest.search(/[/?]/);
    if (cut < 0) cut = rest.length;
    port = parsePort(rest.slice(0, cut));
    if (port < 1) throw fail("invalid port");
    uri = rest.slice(cut);
  } else if (rest.startsWith("/") || rest.startsWith("?")) {
    uri = rest;
  } else if (rest.length > 0) {
    throw fail("invalid host");
  }
  if (inner.length === 0 || isIP(inner) !== 6) throw fail("invalid IPv6 address");
  const address: AuthHttpAddress = { kind: "inet", host: inner, port };
  return { text, host: inner, port, uri: uri || "/", hostHeader: `[${inner}]`, address, addresses: [address], https, location };
}

/** nginx's ngx_atoi for a port: decimal digits only, 1..65535, else -1. */
function parsePort(s: string): number {
  if (!/^[0-9]+$/.test(s)) return -1;
  const n = Number(s);
  return n >= 1 && n <= 65535 ? n : -1;
}

/** How nginx names the auth server in log lines: `ip:port`, `[v6]:port` or `unix:/path`. */
export function peerName(address: AuthHttpAddress): string {
  if (address.kind === "unix") return `unix:${address.path}`;
  return address.host.includes(":") ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

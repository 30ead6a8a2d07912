/**
 * The whole `auth_http` directive: one URL as in nginx, or a group of auth
 * services (a Postern addition) written in nginx upstream's style:
 *
 *     auth_http URL [URL ...] [max_fails=N] [fail_timeout=TIME];
 *
 * One URL without parameters is nginx's directive exactly (the first
 * address of the name, no retry). Several URLs, or any parameter, make a
 * group: every address of every name is a peer, requests go round robin
 * over the live peers, and a peer that failed `max_fails` times within
 * `fail_timeout` is left out for `fail_timeout` (docs/auth-http-path.md).
 */
import { ConfError, type SourceLocation } from "../../core/errors.js";
import { parseNumber, parseTime } from "../../conf/values.js";
import { type AuthHttpAddress, type AuthHttpUrl, parseAuthHttpUrl } from "./url.js";

/** The parsed directive: the first URL's fields (as nginx knows them) plus the group. */
export interface AuthHttpTarget extends AuthHttpUrl {
  readonly urls: readonly AuthHttpUrl[];
  /** More than one URL or any parameter: failover and failure accounting apply. */
  readonly grouped: boolean;
  /** nginx upstream's max_fails (0: never taken out). */
  readonly maxFails: number;
  /** nginx upstream's fail_timeout, in milliseconds. */
  readonly failTimeout: number;
}

/** One auth service address with the URL it belongs to. */
export interface AuthHttpPeer {
  readonly url: AuthHttpUrl;
  readonly address: AuthHttpAddress;
}

/** nginx upstream's defaults. */
export const DEFAULT_MAX_FAILS = 1;
export const DEFAULT_FAIL_TIMEOUT = 10_000;

/** Parses the directive's arguments; errors use nginx's `invalid parameter` wording. */
export function parseAuthHttpTarget(args: readonly string[], location?: SourceLocation): AuthHttpTarget {
  const urls: AuthHttpUrl[] = [];
  let maxFails: number | undefined;
  let failTimeout: number | undefined;
  for (const arg of args) {
    if (arg.startsWith("max_fails=")) {
      const n = parseNumber(arg.slice(10));
      if (n === null) throw new ConfError(`invalid parameter "${arg}"`);
      maxFails = n;
    } else if (arg.startsWith("fail_timeout=")) {
      const t = parseTime(arg.slice(13), false);
      if (t === null) throw new ConfError(`invalid parameter "${arg}"`);
      failTimeout = t;
    } else {
      urls.push(parseAuthHttpUrl(arg, location));
    }
  }
  const first = urls[0];
  if (first === undefined) throw new ConfError(`invalid number of arguments in "auth_http" directive`);
  return {
    ...first,
    urls,
    grouped: urls.length > 1 || maxFails !== undefined || failTimeout !== undefined,
    maxFails: maxFails ?? DEFAULT_MAX_FAILS,
    failTimeout: failTimeout ?? DEFAULT_FAIL_TIMEOUT,
  };
}

/** The peers requests may go to: nginx's single address, or every address of a group. */
export function targetPeers(target: AuthHttpTarget): AuthHttpPeer[] {
  if (!target.grouped) return [{ url: target.urls[0] ?? target, address: target.address }];
  const peers: AuthHttpPeer[] = [];
  for (const url of target.urls) for (const address of url.addresses) peers.push({ url, address });
  return peers;
}

/**
 * The `listen` directive: address forms and parameters,
 * with nginx's error messages.
 */
import { isIP } from "node:net";
import { ConfError, type SourceLocation } from "../core/errors.js";
import { resolveHostSync } from "../core/resolve-sync.js";
import { parseNumber, parseSize, parseTime } from "../conf/values.js";

/** TCP keepalive settings of `so_keepalive=`. */
export interface KeepaliveSpec {
  readonly on: boolean;
  readonly idle?: number | undefined;
  readonly interval?: number | undefined;
  readonly count?: number | undefined;
}

/** One address a server listens on. */
export interface ListenSpec {
  /** Numeric address ("0.0.0.0", "::", "127.0.0.1"), or "" for unix sockets. */
  readonly host: string;
  readonly port: number;
  readonly unixPath?: string | undefined;
  /** As nginx prints it in logs and messages: `0.0.0.0:993`, `[::1]:143`, `unix:/p`. */
  readonly text: string;
  readonly wildcard: boolean;
  readonly ssl: boolean;
  readonly proxyProtocol: boolean;
  readonly backlog: number;
  readonly rcvbuf?: number | undefined;
  readonly sndbuf?: number | undefined;
  /** A separate socket even when a wildcard on the same port exists. */
  readonly bind: boolean;
  readonly ipv6only: boolean;
  /**
   * `default_server` (a Postern extension): the server for clients whose TLS
   * server name picks no other server on this address (docs/sni.md).
   */
  readonly defaultServer: boolean;
  readonly keepalive?: KeepaliveSpec | undefined;
  readonly location: SourceLocation;
}

/** Linux's default listen() backlog in nginx. */
export const DEFAULT_BACKLOG = 511;

interface ParsedAddress {
  readonly hosts: string[];
  readonly ports: number[];
  readonly unixPath?: string;
}

function urlError(reason: string, url: string): ConfError {
  return new ConfError(`${reason} in "${url}" of the "listen" directive`);
}

function parsePort(text: string, url: string): number[] {
  const range = /^(\d+)-(\d+)$/.exec(text);
  if (range) {
    const lo = Number(range[1]),
      hi = Number(range[2]);
    if (lo < 1 || hi > 65535 || lo > hi) throw urlError("invalid port range", url);
    return Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
  }
  const n = parseNumber(text);
  if (n === null || n < 1 || n > 65535) throw urlError("invalid port", url);
  return [n];
}

/** Parses the address argument of `listen` into hosts and ports. */
function parseAddress(url: string): ParsedAddress {
  if (url.startsWith("unix:")) {
    const path = url.slice(5);
    if (path === "") throw urlError("no path in the unix domain socket", url);
    return { hosts: [""], ports: [0], unixPath: path };
  }
  if (url.startsWith("[")) {
    const end = url.indexOf("]");
    if (end < 0) throw urlError("invalid host", url);
    const host = url.slice(1, end);
    if (isIP(host) !== 6) throw urlError("invalid IPv6 address", url);
    const rest = url.slice(end + 1);
    if (rest === "") return { hosts: [host], ports: [0] };
    if (!rest.startsWith(":")) throw urlError("invalid host", url);
    return { hosts: [host], ports: parsePort(rest.slice(1), url) };
  }
  if (url.includes("/")) throw urlError("invalid host", url);
  const colon = url.lastIndexOf(":");
  let hostPart: string;
  let ports: number[];
  if (colon >= 0) {
    hostPart = url.slice(0, colon);
    ports = parsePort(url.slice(colon + 1), url);
  } else if (/^[\d-]+$/.test(url)) {
    hostPart = "*";
    ports = parsePort(url, url);
  } else {
    hostPart = url;
    ports = [0];
  }
  if (hostPart === "") throw urlError("no host", url);
  if (hostPart === "*") return { hosts: ["0.0.0.0"], ports };
  const hosts = resolveHostSync(hostPart);
  if (hosts.length === 0) throw urlError("host not found", url);
  return { hosts, ports };
}

/** `so_keepalive=on|off|idle:intvl:cnt`. */
function parseKeepalive(value: string): KeepaliveSpec {
  if (value === "on") return { on: true };
  if (value === "off") return { on: false };
  const bad = (): never => {
    throw new ConfError(`invalid so_keepalive value: "${value}"`);
  };
  const [idleText = "", intervalText = "", countText = "", ...extra] = value.split(":");
  if (extra.length > 0) bad();
  const time = (t: string): number | undefined => {
    if (t === "") return undefined;
    const n = parseTime(t, true);
    return n === null ? bad() : n;
  };
  const idle = time(idleText);
  const interval = time(intervalText);
  const count = countText === "" ? undefined : (parseNumber(countText) ?? bad());
  if (!idle && !interval && !count) bad();
  return { on: true, idle, interval, count };
}

/** Formats an address the way nginx prints a listen address. */
export function formatListenAddress(host: string, port: number, unixPath?: string): string {
  if (unixPath !== undefined) return `unix:${unixPath}`;
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Parses the arguments of one `listen` directive into one spec per address. */
export function parseListen(args: readonly string[], location: SourceLocation): ListenSpec[] {
  const url = args[0]!;
  const address = parseAddress(url);
  let ssl = false,
    proxyProtocol = false,
    bind = false,
    defaultServer = false,
    ipv6only = true;
  let backlog = DEFAULT_BACKLOG;
  let rcvbuf: number | undefined, sndbuf: number | undefined;
  let keepalive: KeepaliveSpec | undefined;
  for (const p of args.slice(1)) {
    if (p === "bind") bind = true;
    else if (p === "default_server") defaultServer = true;
    else if (p === "ssl") ssl = true;
    else if (p === "proxy_protocol") proxyProtocol = true;
    else if (p === "multipath") bind = true;
    else if (p.startsWith("backlog=")) {
      const n = parseNumber(p.slice(8));
      if (n === null || n === 0) throw new ConfError(`invalid backlog "${p}"`);
      backlog = n;
      bind = true;
    } else if (p.startsWith("rcvbuf=") || p.startsWith("sndbuf=")) {
      const n = parseSize(p.slice(7));
      if (n === null) throw new ConfError(`invalid ${p.slice(0, 6)} "${p}"`);
      if (p.startsWith("rcvbuf=")) rcvbuf = n;
      else sndbuf = n;
      bind = true;
    } else if (p.startsWith("ipv6only=o")) {
      const v = p.slice(10);
      if (v === "n") ipv6only = true;
      else if (v === "ff") ipv6only = false;
      else throw new ConfError(`invalid ipv6only flags "${p.slice(9)}"`);
      bind = true;
    } else if (p.startsWith("so_keepalive=")) {
      keepalive = parseKeepalive(p.slice(13));
      bind = true;
    } else throw new ConfError(`invalid parameter "${p}"`);
  }
  const specs: ListenSpec[] = [];
  for (const host of address.hosts) {
    for (const port of address.ports) {
      specs.push({
        host,
        port,
        unixPath: address.unixPath,
        text: formatListenAddress(host, port, address.unixPath),
        wildcard: address.unixPath === undefined && (host === "0.0.0.0" || host === "::"),
        ssl,
        proxyProtocol,
        backlog,
        rcvbuf,
        sndbuf,
        bind,
        ipv6only,
        defaultServer,
        keepalive,
        location,
      });
    }
  }
  return specs;
}

/** True when two specs name the same socket address. */
export function sameAddress(a: ListenSpec, b: ListenSpec): boolean {
  return a.unixPath !== undefined || b.unixPath !== undefined ? a.unixPath === b.unixPath : a.host === b.host && a.port === b.port;
}

/**
 * ngx_mail_core_module: `server`, `listen`, `protocol`, `server_name`,
 * `timeout`, `resolver`, `resolver_timeout`, `max_errors`.
 * `error_log` is declared with the main error log (src/core).
 *
 * Rules: `timeout` docs/behaviour/session.md#session-2-the-timeout-deadline,
 * `max_errors` #session-6-syntax-errors-and-max_errors.
 */
import { hostname } from "node:os";
import { ConfError } from "../core/errors.js";
import { type Directive, Level, type ServerConf, noArgs, oneOrMore, take } from "../conf/directive.js";
import { custom, msec, number } from "../conf/slots.js";
import { parseTime } from "../conf/values.js";
import { resolveHostSync } from "../core/resolve-sync.js";
import { type ListenSpec, parseListen, sameAddress } from "./listen.js";
import { protocolForPort } from "./protocol-ports.js";
import type { MailModule, MailServer } from "./server.js";
import type { MailProtocolName } from "./types.js";
import type { ResolverAddress, ResolverSpec } from "../event/resolver.js";

const BOTH = ["mail", "server"] as const;

/** `listen`: repeatable, server only; value = every address of every listen line. */
export const listenDirective: Directive<readonly ListenSpec[]> = custom<readonly ListenSpec[]>({
  name: "listen",
  contexts: ["server"],
  args: oneOrMore,
  syntax:
    "address[:port] [ssl] [default_server] [proxy_protocol] [backlog=number] [rcvbuf=size] [sndbuf=size] [bind] [ipv6only=on|off] [so_keepalive=on|off|[keepidle]:[keepintvl]:[keepcnt]]",
  defaultValue: [],
  defaultText: "—",
  merge: "none",
  duplicates: "accumulate",
  doc: "Sets the address and port on which the server accepts connections; servers sharing one with TLS are chosen by the client's server name (SNI), `default_server` marking the one for other names (docs/sni.md).",
  parse(args, previous, cx) {
    const specs = parseListen(args, cx.location);
    warnUnsupported(specs[0], args, cx.warn);
    // Several servers may share an address (names chosen by SNI): that is
    // checked when the mail block closes (sni-groups.ts); one server naming
    // an address twice is nginx's error here.
    const earlier = [...(previous ?? [])];
    for (const spec of specs) {
      const dup = earlier.find((e) => sameAddress(e, spec));
      if (dup) throw new ConfError(`duplicate "${spec.text}" address and port pair`);
      earlier.push(spec);
    }
    return [...(previous ?? []), ...specs];
  },
});

/** `protocol imap | pop3 | smtp`: repeatable, the last wins. */
export const protocolDirective: Directive<MailProtocolName | undefined> = custom({
  name: "protocol",
  contexts: ["server"],
  args: take(1),
  syntax: "imap | pop3 | smtp",
  defaultValue: undefined,
  defaultText: "inferred from the port",
  merge: "none",
  duplicates: "lastWins",
  doc: "Sets the protocol of the server; without it, a listen port of 143/993, 110/995 or 25/465/587 decides.",
  parse(args) {
    const p = args[0]!;
    if (p !== "imap" && p !== "pop3" && p !== "smtp") throw new ConfError(`unknown protocol "${p}"`);
    return p;
  },
});

/** `server { ... }`: value = the server blocks of this mail block, in order. */
export const serverDirective: Directive<readonly Level[]> = custom<readonly Level[]>({
  name: "server",
  contexts: ["mail"],
  args: noArgs,
  block: true,
  syntax: "{ ... }",
  defaultValue: [],
  defaultText: "—",
  merge: "none",
  duplicates: "accumulate",
  doc: "Sets the configuration for a server.",
  parse(_args, previous, cx) {
    const level = new Level("server", cx.location, cx.level);
    cx.parseBlock("server", level);
    if (!level.has(listenDirective)) {
      throw ConfError.unlocated(`no "listen" is defined for server in ${cx.location.file}:${cx.location.line}`);
    }
    return [...(previous ?? []), level];
  },
});

/**
 * Socket options Node cannot set on a listening or accepted TCP socket are
 * reported, never silently dropped (docs/compat.md).
 */
function warnUnsupported(spec: ListenSpec | undefined, args: readonly string[], warn: (m: string) => void): void {
  if (!spec) return;
  for (const p of args.slice(1)) {
    if (p.startsWith("rcvbuf=") || p.startsWith("sndbuf="))
      warn(`the "${p.slice(0, 6)}" parameter of "listen" is not supported by Postern (Node.js cannot set it), ignored`);
    if (p === "multipath") warn("multipath is not supported on this platform, ignored");
  }
  const k = spec.keepalive;
  if (k && (k.interval !== undefined || k.count !== undefined)) {
    warn('only the keepidle part of "so_keepalive" is supported by Postern (Node.js cannot set keepintvl and keepcnt), the rest is ignored');
  }
}

/**
 * `server_name name ...`: the first name is the SMTP greeting's, HELO
 * replies' and salts' ("" means the host name); all of them are the names
 * SNI picks the server by when servers share an address (docs/sni.md).
 */
export const serverNameDirective: Directive<readonly string[]> = custom<readonly string[]>({
  name: "server_name",
  contexts: BOTH,
  args: oneOrMore,
  syntax: "name ...",
  defaultValue: [],
  defaultText: "hostname",
  doc: "Sets the server name used in the SMTP greeting, SASL challenges and the HELO sent to SMTP backends (the first name), and the names a client's TLS server name (SNI) selects the server by.",
  parse: (args) => [...args],
});
export const timeoutDirective = msec("timeout", 60_000, {
  contexts: BOTH,
  defaultText: "60s",
  doc: "Sets the timeout used before proxying to the backend starts.",
});
export const resolverTimeoutDirective = msec("resolver_timeout", 30_000, { contexts: BOTH, defaultText: "30s", doc: "Sets the timeout for DNS operations." });
export const maxErrorsDirective = number("max_errors", 5, { contexts: BOTH, doc: "Sets the number of protocol errors after which the connection is closed." });

/** `resolver address ... [valid=time] [ipv4=on|off] [ipv6=on|off] | off`. */
export const resolverDirective: Directive<ResolverSpec | null> = custom({
  name: "resolver",
  contexts: BOTH,
  args: oneOrMore,
  syntax: "address ... [valid=time] [ipv4=on|off] [ipv6=on|off] | off",
  defaultValue: null,
  defaultText: "off",
  doc: "Configures DNS servers used to resolve SMTP client names.",
  parse(args) {
    if (args.length === 1 && args[0] === "off") return null;
    const servers: ResolverAddress[] = [];
    let valid: number | undefined;
    let ipv4 = true,
      ipv6 = true;
    for (const a of args) {
      if (a.startsWith("valid=")) {
        const t = parseTime(a.slice(6), true);
        if (t === null) throw new ConfError(`invalid parameter: ${a}`);
        valid = t;
      } else if (a.startsWith("ipv4=") || a.startsWith("ipv6=")) {
        const v = a.slice(5);
        if (v !== "on" && v !== "off") throw new ConfError(`invalid parameter: ${a}`);
        if (a.startsWith("ipv4=")) ipv4 = v === "on";
        else ipv6 = v === "on";
      } else {
        servers.push(...parseResolverAddress(a));
      }
    }
    if (!ipv4 && !ipv6) throw new ConfError('"ipv4" and "ipv6" cannot both be "off"');
    return { servers, valid, ipv4, ipv6 };
  },
});

/** `host[:port]` or `[v6][:port]`; a name is resolved now, as nginx does. */
function parseResolverAddress(text: string): ResolverAddress[] {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:]+)(?::(\d+))?$/.exec(text);
  const host = m?.[1];
  const port = m?.[2] === undefined ? 53 : Number(m[2]);
  if (!host || port < 1 || port > 65535) throw new ConfError(`invalid port in "${text}"`);
  const addresses = resolveHostSync(host);
  if (addresses.length === 0) throw new ConfError(`host not found in resolver "${text}"`);
  return addresses.map((a) => ({ host: a, port }));
}

/** The effective `server_name` of a server. */
export function serverName(conf: ServerConf): string {
  return conf.get(serverNameDirective)[0] || HOSTNAME;
}

/** Every name of `server_name` (the host name without one). */
export function serverNames(conf: ServerConf): readonly string[] {
  const names = conf.get(serverNameDirective);
  return names.length > 0 ? names : [HOSTNAME];
}

/** nginx reads the host name once at start-up, lower-cased. */
const HOSTNAME = hostname().toLowerCase();

/** The protocol of a server: explicit `protocol`, else the first well-known listen port. */
function protocolOf(level: Level): MailProtocolName | undefined {
  return level.own(protocolDirective) ?? inferFromListens(level);
}

function inferFromListens(level: Level): MailProtocolName | undefined {
  for (const l of level.own(listenDirective) ?? []) {
    const p = protocolForPort(l.port);
    if (p) return p;
  }
  return undefined;
}

/** Decides a server's protocol, or fails as nginx does. */
export function resolveProtocol(level: Level): MailProtocolName {
  const p = protocolOf(level);
  if (!p) throw ConfError.unlocated(`unknown mail protocol for server in ${level.location.file}:${level.location.line}`);
  return p;
}

/** The module: its table and its finalize step. */
export const mailCoreModule: MailModule = {
  name: "ngx_mail_core_module",
  directives: [
    serverDirective,
    listenDirective,
    protocolDirective,
    serverNameDirective,
    timeoutDirective,
    resolverDirective,
    resolverTimeoutDirective,
    maxErrorsDirective,
  ],
  finalize(_server: MailServer) {
    // protocol is decided when the MailServer is built (block.ts); nothing else spans directives here
  },
};

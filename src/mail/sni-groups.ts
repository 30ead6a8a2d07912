/**
 * Several servers on one listen address, told apart by the name the client
 * sends in its TLS handshake (SNI): a Postern extension, since nginx's mail
 * module allows one server per address. Checked when the mail block closes;
 * the name rules are nginx's `server_name` rules of its http module (exact
 * name, longest `*.` wildcard, longest `.*` wildcard, else the default).
 *
 * Rule: docs/sni.md.
 */
import { ConfError } from "../core/errors.js";
import { serverNameDirective, serverNames } from "./core-module.js";
import { type ListenSpec } from "./listen.js";
import type { FinalizeContext, MailServer } from "./server.js";
import { starttls } from "./ssl/module.js";

/** The servers sharing one listen address. */
export interface SniGroup {
  /** As in logs: `127.0.0.1:993`. */
  readonly address: string;
  /** `listen ... default_server`, else the first server with this address. */
  readonly defaultServer: MailServer;
  /** The default server's listen of this address (the socket's parameters). */
  readonly defaultListen: ListenSpec;
  /** Every server of the address, in configuration order. */
  readonly servers: readonly MailServer[];
  /** The server for a client's (validated, lower-case) server name; the default without one. */
  select(name: string | undefined): MailServer;
}

const groups = new WeakMap<ListenSpec, SniGroup>();

/** The group a listen address belongs to, when servers share it. */
export function sniGroupOf(spec: ListenSpec): SniGroup | undefined {
  return groups.get(spec);
}

interface Entry {
  readonly server: MailServer;
  readonly spec: ListenSpec;
}

function addressKey(spec: ListenSpec): string {
  return spec.unixPath !== undefined ? `unix:${spec.unixPath}` : `${spec.host}|${spec.port}`;
}

/** The socket's parameters: one socket, so every server sharing it must agree. */
function socketParameters(spec: ListenSpec): string {
  const { ssl, proxyProtocol, backlog, rcvbuf, sndbuf, bind, ipv6only, keepalive } = spec;
  return JSON.stringify({ ssl, proxyProtocol, backlog, rcvbuf, sndbuf, bind, ipv6only, keepalive });
}

/** Name tables of one group, nginx's http order of precedence. */
class NameTable {
  readonly exact = new Map<string, MailServer>();
  /** `*.example.com` and `.example.com` as ".example.com", longest first once sorted. */
  readonly leading: { readonly suffix: string; readonly server: MailServer }[] = [];
  /** `mail.*` as "mail.", longest first once sorted. */
  readonly trailing: { readonly prefix: string; readonly server: MailServer }[] = [];

  add(raw: string, server: MailServer, address: string, cx: FinalizeContext): void {
    const name = raw.toLowerCase();
    const location = server.conf.locationOf(serverNameDirective);
    if (name.startsWith("~")) throw new ConfError(`regular expressions in "server_name" are not supported by Postern: "${raw}"`, location);
    let key: string;
    let kind: "exact" | "leading" | "trailing";
    if (name.startsWith("*.")) [key, kind] = [name.slice(1), "leading"];
    else if (name.startsWith(".")) [key, kind] = [name, "leading"];
    else if (name.endsWith(".*")) [key, kind] = [name.slice(0, -1), "trailing"];
    else [key, kind] = [name, "exact"];
    const bare = kind === "leading" ? key.slice(1) : kind === "trailing" ? key.slice(0, -1) : key;
    if (bare === "" || bare.includes("*") || bare.startsWith(".") || bare.endsWith(".")) {
      throw new ConfError(`invalid server name or wildcard "${raw}" on ${address}`, location);
    }
    const conflict = (): void => cx.warn(`conflicting server name "${raw}" on ${address}, ignored`);
    if (kind === "exact") {
      if (this.exact.has(key)) return conflict();
      this.exact.set(key, server);
      return;
    }
    if (kind === "leading") {
      if (this.leading.some((w) => w.suffix === key)) return conflict();
      this.leading.push({ suffix: key, server });
      // `.example.com` also names example.com itself
      if (name.startsWith(".") && !this.exact.has(bare)) this.exact.set(bare, server);
      return;
    }
    if (this.trailing.some((w) => w.prefix === key)) return conflict();
    this.trailing.push({ prefix: key, server });
  }

  sort(): void {
    this.leading.sort((a, b) => b.suffix.length - a.suffix.length);
    this.trailing.sort((a, b) => b.prefix.length - a.prefix.length);
  }

  match(name: string): MailServer | undefined {
    return (
      this.exact.get(name) ??
      this.leading.find((w) => name.endsWith(w.suffix) && name.length > w.suffix.length)?.server ??
      this.trailing.find((w) => name.startsWith(w.prefix) && name.length > w.prefix.length)?.server
    );
  }
}

/** Checks one shared address and builds its group; throws ConfError. */
function buildGroup(entries: readonly Entry[], cx: FinalizeContext): SniGroup {
  const first = entries[0]!;
  const address = first.spec.text;
  // Without TLS on every server there is no name to choose by: nginx's error.
  if (entries.some((e) => !e.spec.ssl && e.server.conf.get(starttls) === "off")) {
    throw new ConfError(`duplicate "${address}" address and port pair`, entries[1]!.spec.location);
  }
  for (const e of entries.slice(1)) {
    if (socketParameters(e.spec) !== socketParameters(first.spec)) {
      throw new ConfError(`the "listen" parameters of "${address}" differ from those of the server sharing it`, e.spec.location);
    }
    if (e.server.protocol !== first.server.protocol) {
      throw new ConfError(`the protocol of the servers sharing "${address}" differs`, e.spec.location);
    }
  }
  const defaults = entries.filter((e) => e.spec.defaultServer);
  if (defaults.length > 1) throw new ConfError(`a duplicate default server for ${address}`, defaults[1]!.spec.location);
  const chosen = defaults[0] ?? first;
  const names = new NameTable();
  for (const e of entries) for (const n of serverNames(e.server.conf)) names.add(n, e.server, address, cx);
  names.sort();
  return {
    address,
    defaultServer: chosen.server,
    defaultListen: chosen.spec,
    servers: entries.map((e) => e.server),
    select: (name) => (name === undefined ? undefined : names.match(name)) ?? chosen.server,
  };
}

/**
 * Finds the addresses several servers listen on and checks them (nginx's
 * `duplicate ... address and port pair` unless every one of them uses TLS
 * there); a configuration without shared addresses is left as it was.
 */
export function buildSniGroups(servers: readonly MailServer[], cx: FinalizeContext): void {
  const byAddress = new Map<string, Entry[]>();
  for (const server of servers) {
    for (const spec of server.listens) {
      const list = byAddress.get(addressKey(spec)) ?? [];
      list.push({ server, spec });
      byAddress.set(addressKey(spec), list);
    }
  }
  for (const entries of byAddress.values()) {
    if (entries.length < 2) continue;
    const group = buildGroup(entries, cx);
    for (const e of entries) groups.set(e.spec, group);
  }
}

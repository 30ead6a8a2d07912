/**
 * ngx_stream_limit_conn_module's directives, in `mail {}`:
 * `limit_conn_zone key zone=name:size`, `limit_conn zone number` and
 * `limit_conn_log_level`, with nginx's syntax, errors and inheritance
 * (a level with any `limit_conn` replaces the inherited ones).
 * Rules: docs/limits.md#limit_conn.
 */
import { type ConfModule, type Directive, directiveMessage, take } from "../../conf/directive.js";
import { custom, enumeration } from "../../conf/slots.js";
import { parseNumber, parseSize } from "../../conf/values.js";
import { ConfError, type SourceLocation } from "../../core/errors.js";
import { MAX_LIMITS_PER_CONNECTION } from "../../event/limit-ipc.js";
import { MIN_ZONE_SIZE } from "../../event/limit-store.js";
import type { MailModule, MailServer } from "../server.js";
import { registerSyncUser } from "../shared-store/sync-users.js";
import { type LimitKey, compileKey } from "./key.js";

/** A declared zone. */
export interface ConnZoneDecl {
  readonly name: string;
  readonly size: number;
  readonly key: LimitKey;
  /** `sync`: counted across the nodes of a cluster (docs/shared-store.md#limits). */
  readonly sync: boolean;
  /** Where it was declared, for the error when `sync` finds no shared_store. */
  readonly location: SourceLocation;
}

/** One `limit_conn zone number`. */
export interface ConnLimit {
  readonly zone: string;
  readonly conn: number;
}

/**
 * `zone=name:size` as nginx's limit modules read it; `directive` names the
 * directive in the missing-zone error. Shared with the failure zones.
 */
export function parseZoneParam(arg: string, directive: string): { name: string; size: number } {
  const spec = arg.slice(5);
  const colon = spec.indexOf(":");
  if (colon < 0) throw new ConfError(`invalid zone size "${arg}"`);
  const size = parseSize(spec.slice(colon + 1));
  if (size === null) throw new ConfError(`invalid zone size "${arg}"`);
  if (size < MIN_ZONE_SIZE) throw new ConfError(`zone "${arg}" is too small`);
  if (colon === 0) throw new ConfError(`"${directive}" must have "zone" parameter`);
  return { name: spec.slice(0, colon), size };
}

/** The shared-memory checks nginx makes when a zone name is used twice. */
export function checkZoneReuse(directive: string, name: string, size: number, previous: { size: number; what: string } | undefined): void {
  if (!previous) return;
  if (previous.size !== size) throw new ConfError(`the size ${size} of shared memory zone "${name}" conflicts with already declared size ${previous.size}`);
  throw new ConfError(`${directive} "${name}" is already bound to ${previous.what}`);
}

/** `limit_conn_zone key zone=name:size [sync]` (mail only): zones by name. */
export const limitConnZone: Directive<ReadonlyMap<string, ConnZoneDecl>> = custom<ReadonlyMap<string, ConnZoneDecl>>({
  name: "limit_conn_zone",
  contexts: ["mail"],
  args: take(2, 3),
  syntax: "key zone=name:size [sync]",
  defaultValue: new Map(),
  defaultText: "—",
  duplicates: "accumulate",
  doc:
    "Shared zone counting connections per key (e.g. $binary_remote_addr) across all workers; with `sync`, across the nodes of a cluster " +
    "through shared_store (docs/shared-store.md).",
  parse(args, previous, cx) {
    const key = compileKey(args[0]!);
    const arg = args[1]!;
    if (!arg.startsWith("zone=")) throw new ConfError(`invalid parameter "${arg}"`);
    // nginx takes exactly two arguments: a third that is not Postern's `sync` gets nginx's own error
    if (args[2] !== undefined && args[2] !== "sync") throw new ConfError(`invalid number of arguments in "limit_conn_zone" directive`);
    const { name, size } = parseZoneParam(arg, "limit_conn_zone");
    const before = previous?.get(name);
    checkZoneReuse("limit_conn_zone", name, size, before && { size: before.size, what: `key "${before.key.source}"` });
    return new Map([...(previous ?? []), [name, { name, size, key, sync: args[2] === "sync", location: cx.location }]]);
  },
});

/** `limit_conn zone number` (mail, server; several per level; a level with any replaces the inherited list). */
export const limitConn: Directive<readonly ConnLimit[]> = custom<readonly ConnLimit[]>({
  name: "limit_conn",
  contexts: ["mail", "server"],
  args: take(2),
  syntax: "zone number",
  defaultValue: [],
  defaultText: "—",
  merge: "list",
  duplicates: "accumulate",
  doc: "At most number connections per key of the zone; the next client is refused.",
  parse(args, previous) {
    const zone = args[0]!;
    if (previous?.some((l) => l.zone === zone)) throw directiveMessage("limit_conn", "is duplicate");
    // one acquire message carries every limit of a server, and the master drops a message with more
    if ((previous?.length ?? 0) >= MAX_LIMITS_PER_CONNECTION) throw new ConfError(`too many "limit_conn" directives, at most ${MAX_LIMITS_PER_CONNECTION}`);
    const n = parseNumber(args[1]!);
    if (n === null || n <= 0) throw new ConfError(`invalid number of connections "${args[1]}"`);
    if (n > 65535) throw new ConfError("connection limit must be less 65536");
    return [...(previous ?? []), { zone, conn: n }];
  },
});

/** `limit_conn_log_level info | notice | warn | error`. */
export const limitConnLogLevel = enumeration("limit_conn_log_level", ["info", "notice", "warn", "error"], "error", {
  contexts: ["mail", "server"],
  doc: "Level of the line logged when a connection is refused by limit_conn.",
});

/** A server's limits with their zones, resolved once when the configuration is read. */
export interface ResolvedConnLimit {
  readonly zone: ConnZoneDecl;
  readonly conn: number;
}
const resolved = new WeakMap<MailServer, readonly ResolvedConnLimit[]>();

/** The server's limit_conn list with zones; empty when it has none. */
export function connLimits(server: MailServer): readonly ResolvedConnLimit[] {
  return resolved.get(server) ?? [];
}

/** The module: a zone named by limit_conn must be declared (nginx: a zero-size zone). */
export const limitConnModule: MailModule & ConfModule = {
  name: "ngx_mail_limit_conn_module",
  directives: [limitConnZone, limitConn, limitConnLogLevel],
  finalize(server) {
    const zones = server.conf.get(limitConnZone);
    const list = server.conf.get(limitConn).map((l) => {
      const zone = zones.get(l.zone);
      if (!zone) throw ConfError.unlocated(`zero size shared memory zone "${l.zone}"`);
      return { zone, conn: l.conn };
    });
    if (list.length > 0) resolved.set(server, list);
  },
};

// a `sync` zone needs shared_store (checked once the whole configuration is read)
registerSyncUser((mail) =>
  [...(mail.level.own(limitConnZone)?.values() ?? [])].filter((z) => z.sync).map((z) => ({ directive: "limit_conn_zone", zone: z.name, location: z.location })),
);

/**
 * Authentication failure throttling (Postern's own, in the style of nginx's
 * limit modules; off unless configured):
 *
 *   auth_fail_zone zone=name:size [window=time];            (mail)
 *   auth_fail_throttle zone [delay_after=n] [delay=time]
 *                      [max_delay=time] [refuse_after=n] | off;  (mail, server)
 *   auth_fail_log_level info | notice | warn | error;        (mail, server)
 *
 * Failures are counted per client address and per login (a keyed hash of
 * it) in the zone, shared by all workers; a count is forgotten `window`
 * after its last failure.
 * Rules: docs/limits.md#authentication-failure-throttling.
 */
import { type ConfModule, type Directive, take } from "../../conf/directive.js";
import { custom, enumeration } from "../../conf/slots.js";
import { parseNumber, parseTime, timerMs } from "../../conf/values.js";
import { ConfError, type SourceLocation, formatLocation } from "../../core/errors.js";
import type { FailZoneRef } from "../../event/limit-store.js";
import type { MailModule, MailServer } from "../server.js";
import { registerSyncUser } from "../shared-store/sync-users.js";
import { checkZoneReuse, parseZoneParam } from "./conn-module.js";

/** `window=` when not given: ten minutes. */
export const DEFAULT_WINDOW_MS = 10 * 60 * 1000;

/** A declared failure zone, with where it was declared (for the `sync` without shared_store error). */
export interface FailZoneDecl extends FailZoneRef {
  readonly location: SourceLocation;
}

/** `auth_fail_zone zone=name:size [window=time] [sync]`: zones by name. */
export const authFailZone: Directive<ReadonlyMap<string, FailZoneDecl>> = custom<ReadonlyMap<string, FailZoneDecl>>({
  name: "auth_fail_zone",
  contexts: ["mail"],
  args: take(1, 2, 3),
  syntax: "zone=name:size [window=time] [sync]",
  defaultValue: new Map(),
  defaultText: "—",
  duplicates: "accumulate",
  doc:
    "Shared zone counting failed authentications per client address and per login; a count is forgotten window after its last failure. " +
    "With `sync`, counted across the nodes of a cluster through shared_store (docs/shared-store.md).",
  parse(args, previous, cx) {
    let zone: { name: string; size: number } | undefined;
    let windowMs = DEFAULT_WINDOW_MS;
    let sync = false;
    for (const arg of args) {
      if (arg === "sync") sync = true;
      else if (arg.startsWith("zone=")) zone = parseZoneParam(arg, "auth_fail_zone");
      else if (arg.startsWith("window=")) {
        const ms = parseTime(arg.slice(7), false);
        if (ms === null || ms === 0) throw new ConfError(`invalid window "${arg}"`);
        windowMs = ms;
      } else throw new ConfError(`invalid parameter "${arg}"`);
    }
    if (!zone) throw new ConfError('"auth_fail_zone" must have "zone" parameter');
    const before = previous?.get(zone.name);
    checkZoneReuse("auth_fail_zone", zone.name, zone.size, before && { size: before.size, what: `window ${before.windowMs}ms` });
    return new Map([...(previous ?? []), [zone.name, { ...zone, windowMs, sync, location: cx.location }]]);
  },
});

/** How a server throttles; `undefined` zone means off. */
export interface ThrottleConf {
  readonly zone: string | undefined;
  /** Failures before the first delay. */
  readonly delayAfter: number;
  readonly delayMs: number;
  readonly maxDelayMs: number;
  /** Failures from which attempts are refused without asking auth_http (0: never). */
  readonly refuseAfter: number;
}

export const THROTTLE_OFF: ThrottleConf = { zone: undefined, delayAfter: 3, delayMs: 1000, maxDelayMs: 30000, refuseAfter: 0 };

function count(arg: string, prefix: string): number {
  const n = parseNumber(arg.slice(prefix.length));
  if (n === null || n === 0) throw new ConfError(`invalid number "${arg}"`);
  return n;
}

/** delay= and max_delay=: a timer's delay (at most 24.8 days, timerMs). */
function time(arg: string, prefix: string): number {
  const ms = parseTime(arg.slice(prefix.length), false);
  if (ms === null) throw new ConfError(`invalid time "${arg}"`);
  return timerMs(ms);
}

/** `auth_fail_throttle zone [delay_after=n] [delay=time] [max_delay=time] [refuse_after=n] | off`. */
export const authFailThrottle: Directive<ThrottleConf> = custom<ThrottleConf>({
  name: "auth_fail_throttle",
  contexts: ["mail", "server"],
  args: { kind: "atLeast", min: 1 },
  syntax: "zone [delay_after=number] [delay=time] [max_delay=time] [refuse_after=number] | off",
  defaultValue: THROTTLE_OFF,
  defaultText: "off",
  doc: "Delays authentication after delay_after failures (doubling up to max_delay) and refuses it, without asking auth_http, after refuse_after.",
  parse(args) {
    if (args[0] === "off") {
      if (args.length > 1) throw new ConfError(`invalid parameter "${args[1]}"`);
      return THROTTLE_OFF;
    }
    const out = { ...THROTTLE_OFF, zone: args[0] };
    for (const arg of args.slice(1)) {
      if (arg.startsWith("delay_after=")) out.delayAfter = count(arg, "delay_after=");
      else if (arg.startsWith("delay=")) out.delayMs = time(arg, "delay=");
      else if (arg.startsWith("max_delay=")) out.maxDelayMs = time(arg, "max_delay=");
      else if (arg.startsWith("refuse_after=")) out.refuseAfter = count(arg, "refuse_after=");
      else throw new ConfError(`invalid parameter "${arg}"`);
    }
    if (out.maxDelayMs < out.delayMs) throw new ConfError(`"max_delay" must not be less than "delay"`);
    return out;
  },
});

/** `auth_fail_log_level`: refusals are logged at this level, delays one level lower (as limit_req_log_level). */
export const authFailLogLevel = enumeration("auth_fail_log_level", ["info", "notice", "warn", "error"], "error", {
  contexts: ["mail", "server"],
  doc: "Level of the line logged when authentication is refused by auth_fail_throttle; delays one level lower.",
});

/** A server's throttle with its zone, resolved when the configuration is read. */
export interface ResolvedThrottle extends ThrottleConf {
  readonly failZone: FailZoneRef;
}
const resolved = new WeakMap<MailServer, ResolvedThrottle>();

/** The server's throttle, or undefined when it has none. */
export function authThrottle(server: MailServer): ResolvedThrottle | undefined {
  return resolved.get(server);
}

/** The module: the zone a throttle names must be declared. */
export const authFailModule: MailModule & ConfModule = {
  name: "postern_mail_auth_fail_module",
  directives: [authFailZone, authFailThrottle, authFailLogLevel],
  finalize(server) {
    const conf = server.conf.get(authFailThrottle);
    if (conf.zone === undefined) return;
    const failZone = server.conf.get(authFailZone).get(conf.zone);
    if (!failZone) throw ConfError.unlocated(`unknown auth_fail_zone "${conf.zone}" for server ${formatLocation(server.conf.location)}`);
    resolved.set(server, { ...conf, failZone });
  },
};

registerSyncUser((mail) =>
  [...(mail.level.own(authFailZone)?.values() ?? [])].filter((z) => z.sync).map((z) => ({ directive: "auth_fail_zone", zone: z.name, location: z.location })),
);

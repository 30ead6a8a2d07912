/**
 * `auth_http_cache zone=NAME:SIZE [ok=TIME] [fail=TIME] [sync];` | `auth_http_cache off;`
 * A Postern addition (cache.ts; docs/auth-http-path.md#cache); `sync`
 * shares it across the nodes of a cluster (docs/shared-store.md#auth-cache).
 */
import { ConfError } from "../../core/errors.js";
import { oneOrMore } from "../../conf/directive.js";
import { custom } from "../../conf/slots.js";
import { parseSize, parseTime } from "../../conf/values.js";
import { registerSyncUser } from "../shared-store/sync-users.js";
import type { AuthCacheConf } from "./cache.js";

/** Smallest zone: 8 pages of 4k, as nginx's shared zones. */
const MIN_ZONE = 8 * 4096;

export const authHttpCache = custom<AuthCacheConf | undefined>({
  name: "auth_http_cache",
  contexts: ["mail", "server"],
  args: oneOrMore,
  syntax: "off | zone=name:size [ok=time] [fail=time] [sync]",
  defaultValue: undefined,
  defaultText: "off",
  doc:
    "Postern: caches the authentication server's final answers in a zone shared by the worker processes, keyed on a keyed hash of the whole " +
    "request; successes for `ok` (default 60s), refusals for `fail` (default 10s, 0 disables); never WAIT, Auth-Wait or temporary answers (docs/auth-http-path.md). With `sync`, shared across the nodes of a cluster through shared_store " +
    "(docs/shared-store.md).",
  parse(args, _previous, cx) {
    if (args.length === 1 && args[0] === "off") return undefined;
    let zone: string | undefined;
    let size = 0;
    let okMs = 60_000;
    let failMs = 10_000;
    let sync = false;
    for (const arg of args) {
      if (arg === "sync") {
        sync = true;
        continue;
      }
      const eq = arg.indexOf("=");
      const key = eq < 0 ? arg : arg.slice(0, eq);
      const value = arg.slice(eq + 1);
      if (key === "zone") {
        const colon = value.lastIndexOf(":");
        const n = colon > 0 ? parseSize(value.slice(colon + 1)) : null;
        if (colon <= 0 || n === null) throw new ConfError(`invalid zone size "${value}"`);
        if (n < MIN_ZONE) throw new ConfError(`zone "${value.slice(0, colon)}" is too small`);
        zone = value.slice(0, colon);
        size = n;
      } else if (key === "ok" || key === "fail") {
        const t = parseTime(value, false);
        if (eq < 0 || t === null || (key === "ok" && t === 0)) throw new ConfError(`invalid parameter "${arg}"`);
        if (key === "ok") okMs = t;
        else failMs = t;
      } else {
        throw new ConfError(`invalid parameter "${arg}"`);
      }
    }
    if (zone === undefined) throw new ConfError(`"auth_http_cache" must have "zone" parameter`);
    return { zone, size, okMs, failMs, sync, location: cx.location };
  },
});

// a `sync` cache needs shared_store, wherever it is set (mail or server)
registerSyncUser((mail) => {
  const levels = [mail.level, ...mail.servers.map((s) => s.conf.own)];
  return levels
    .map((level) => level.own(authHttpCache))
    .filter((c): c is AuthCacheConf => c?.sync === true)
    .map((c) => ({ directive: "auth_http_cache", zone: c.zone, location: c.location }));
});

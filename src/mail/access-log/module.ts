/**
 * The access log and metrics directives (ngx_stream_log_module's syntax,
 * docs/observability.md): `log_format` in `mail`, `access_log` in `mail`
 * and `server`, and `metrics_listen` in `mail` for the Prometheus and health
 * endpoint. Errors are worded as nginx's stream module words them.
 */
import type { ConfModule, Directive, Level, SetContext } from "../../conf/directive.js";
import { oneOrMore, take } from "../../conf/directive.js";
import { custom } from "../../conf/slots.js";
import { parseSize, parseTime, timerMs } from "../../conf/values.js";
import { parseSyslog } from "../../core/error-log-conf.js";
import { ConfError } from "../../core/errors.js";
import type { SyslogTarget } from "../../core/log.js";
import { prefixed } from "../../core/prefix.js";
import { parseListen } from "../listen.js";
import { type CompiledFormat, compileFormat, compileLogFormat } from "./format.js";
import type { BufferSpec } from "./writer.js";

/** One `access_log` directive. */
export type AccessLogTarget =
  | { readonly kind: "off" }
  | {
      readonly kind: "file";
      readonly path: string;
      readonly format: CompiledFormat;
      readonly buffer?: BufferSpec | undefined;
      readonly condition?: CompiledFormat | undefined;
    }
  | { readonly kind: "syslog"; readonly syslog: SyslogTarget; readonly format: CompiledFormat; readonly condition?: CompiledFormat | undefined };

/** `log_format name [escape=default|json|none] string ...;` (mail only, as stream{} has it). */
export const logFormat: Directive<ReadonlyMap<string, CompiledFormat>> = custom<ReadonlyMap<string, CompiledFormat>>({
  name: "log_format",
  contexts: ["mail"],
  args: { kind: "atLeast", min: 2 },
  syntax: "name [escape=default | json | none] string ...",
  defaultValue: new Map(),
  defaultText: "—",
  merge: "none",
  duplicates: "accumulate",
  doc: "Defines a format for `access_log`: text and variables (docs/observability.md#variables).",
  parse: (args, previous, _cx) => {
    const name = args[0]!;
    if (previous?.has(name)) throw new ConfError(`duplicate "log_format" name "${name}"`);
    const next = new Map(previous ?? []);
    next.set(name, compileLogFormat(args.slice(1)));
    return next;
  },
});

/** Buffered files seen so far per configuration, to refuse one path with two different buffers (as nginx). */
const buffersSeen = new WeakMap<Level, Map<string, string>>();

function mailLevel(level: Level): Level {
  return level.context === "server" && level.parent ? level.parent : level;
}

function parseAccessLog(args: readonly string[], cx: SetContext): AccessLogTarget {
  const target = args[0]!;
  if (target === "off") {
    if (args.length > 1) throw new ConfError(`invalid parameter "${args[1]}"`);
    return { kind: "off" };
  }
  const syslog = target.startsWith("syslog:") ? parseSyslog(target.slice(7)) : undefined;
  // nginx opens a path with variables per line; Postern's files are opened before privileges go, so a path is fixed
  if (!syslog && target.includes("$")) throw new ConfError(`variables in "access_log" path "${target}" are not supported`);
  if (args.length < 2) throw new ConfError("log format is not specified");
  const formats = mailLevel(cx.level).own(logFormat) ?? new Map<string, CompiledFormat>();
  const name = args[1]!;
  const format = [...formats].find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1];
  if (!format) throw new ConfError(`unknown log format "${name}"`);
  let size = 0;
  let flushMs = 0;
  let gzip = 0;
  let condition: CompiledFormat | undefined;
  for (const p of args.slice(2)) {
    if (p.startsWith("buffer=")) {
      const n = parseSize(p.slice(7));
      if (n === null || n === 0) throw new ConfError(`invalid buffer size "${p.slice(7)}"`);
      size = n;
    } else if (p.startsWith("flush=")) {
      const n = parseTime(p.slice(6), false);
      if (n === null || n === 0) throw new ConfError(`invalid flush time "${p.slice(6)}"`);
      flushMs = timerMs(n);
    } else if (p === "gzip" || p.startsWith("gzip=")) {
      if (size === 0) size = 64 * 1024;
      gzip = p === "gzip" ? 1 : /^[1-9]$/.test(p.slice(5)) ? Number(p.slice(5)) : 0;
      if (gzip === 0) throw new ConfError(`invalid compression level "${p.slice(5)}"`);
    } else if (p.startsWith("if=")) {
      condition = compileFormat([p.slice(3)], "none");
    } else {
      throw new ConfError(`invalid parameter "${p}"`);
    }
  }
  if (flushMs && size === 0) throw new ConfError(`no buffer is defined for access_log "${target}"`);
  if (syslog) {
    if (size) throw new ConfError("logs to syslog cannot be buffered");
    return { kind: "syslog", syslog, format, condition };
  }
  const path = prefixed(cx.prefix, target);
  if (size === 0) return { kind: "file", path, format, condition };
  const buffer: BufferSpec = { size, flushMs, gzip };
  const root = mailLevel(cx.level);
  let seen = buffersSeen.get(root);
  if (!seen) buffersSeen.set(root, (seen = new Map<string, string>()));
  const key = JSON.stringify(buffer);
  if (seen.has(path) && seen.get(path) !== key) throw new ConfError(`access_log "${target}" already defined with conflicting parameters`);
  seen.set(path, key);
  return { kind: "file", path, format, buffer, condition };
}

/** `access_log path format [buffer=size] [gzip[=level]] [flush=time] [if=condition] | syslog:... format | off;` */
export const accessLog: Directive<readonly AccessLogTarget[]> = custom<readonly AccessLogTarget[]>({
  name: "access_log",
  contexts: ["mail", "server"],
  args: oneOrMore,
  syntax: "path format [buffer=size] [gzip[=level]] [flush=time] [if=condition] | off",
  defaultValue: [],
  defaultText: "off",
  merge: "list",
  duplicates: "accumulate",
  doc: "Writes one line per session, when it ends, in a `log_format`; several at one level add logs, `off` cancels the level's logs.",
  parse: (args, previous, cx) => [...(previous ?? []), parseAccessLog(args, cx)],
});

/** The logs a server writes: none when its level says `off`. */
export function accessLogTargets(targets: readonly AccessLogTarget[]): Exclude<AccessLogTarget, { kind: "off" }>[] {
  if (targets.some((t) => t.kind === "off")) return [];
  return targets.filter((t): t is Exclude<AccessLogTarget, { kind: "off" }> => t.kind !== "off");
}

/** Where the metrics and health endpoint listens. */
export interface MetricsListen {
  readonly host: string;
  readonly port: number;
  /** As messages print it: `127.0.0.1:9145`. */
  readonly text: string;
}

/** `metrics_listen address:port;` in mail: the Prometheus page and the health check, off by default. */
export const metricsListen: Directive<MetricsListen | undefined> = custom<MetricsListen | undefined>({
  name: "metrics_listen",
  contexts: ["mail"],
  args: take(1),
  syntax: "address:port | port",
  defaultValue: undefined,
  defaultText: "—",
  merge: "none",
  doc: "Serves `/metrics` (Prometheus text format) and `/health` over HTTP on this address; meant for a private address.",
  parse: (args, _previous, cx) => {
    const [spec] = parseListen([args[0]!], cx.location);
    if (!spec || spec.unixPath !== undefined) throw new ConfError(`"metrics_listen" needs an address and port, not "${args[0]}"`);
    return { host: spec.host, port: spec.port, text: spec.text };
  },
});

/** The module's table. */
export const accessLogModule: ConfModule = { name: "access_log", directives: [logFormat, accessLog, metricsListen] };

/**
 * The `error_log` directive (nginx's ngx_errlog_module, with syslog targets
 * from ngx_syslog.c): reading its destinations and levels into `LogTarget`s,
 * and opening the sinks a list of targets describes. The main and events
 * directive tables are in core-module.ts.
 */
import { describeSystemError, ConfError } from "./errors.js";
import { ErrorLog, FileSink, LOG_LEVELS, MemorySink, StderrSink, SyslogSink, type LogLevel, type LogSink, type SyslogTarget } from "./log.js";
import { prefixed } from "./prefix.js";
import { type Directive, oneOrMore } from "../conf/directive.js";
import { custom } from "../conf/slots.js";
import { parseSize } from "../conf/values.js";
import type { ParsedConf } from "../conf/engine.js";

/** One `error_log` destination. */
export type LogTarget =
  | { readonly kind: "file"; readonly path: string; readonly level: LogLevel }
  | { readonly kind: "stderr"; readonly level: LogLevel }
  | { readonly kind: "syslog"; readonly syslog: SyslogTarget; readonly level: LogLevel }
  | { readonly kind: "memory"; readonly size: number; readonly level: LogLevel };

const DEBUG_LEVELS = ["debug_core", "debug_alloc", "debug_mutex", "debug_event", "debug_http", "debug_mail", "debug_stream"];

/** nginx's ngx_log_set_levels: one severity, or debug sub-levels (which mean debug). */
function parseLevels(words: readonly string[]): LogLevel {
  if (words.length === 0) return "error";
  let level: LogLevel | undefined;
  let debugBits = false;
  for (const w of words) {
    const sev = (LOG_LEVELS as readonly string[]).includes(w) ? (w as LogLevel) : undefined;
    if (sev !== undefined) {
      if (level !== undefined || debugBits) throw new ConfError(`duplicate log level "${w}"`);
      level = sev;
      continue;
    }
    if (DEBUG_LEVELS.includes(w)) {
      // a debug sub-level after a plain severity is refused, as nginx does
      if (level !== undefined) throw new ConfError(`invalid log level "${w}"`);
      debugBits = true;
      continue;
    }
    throw new ConfError(`invalid log level "${w}"`);
  }
  return level ?? "debug";
}

const FACILITIES = [
  "kern",
  "user",
  "mail",
  "daemon",
  "auth",
  "intern",
  "lpr",
  "news",
  "uucp",
  "clock",
  "authpriv",
  "ftp",
  "ntp",
  "audit",
  "alert",
  "cron",
  "local0",
  "local1",
  "local2",
  "local3",
  "local4",
  "local5",
  "local6",
  "local7",
];

/** `syslog:server=...,facility=...,severity=...,tag=...,nohostname`. */
export function parseSyslog(spec: string): SyslogTarget {
  let host: string | undefined;
  let port = 514;
  let facility: number | undefined;
  let severity: LogLevel | undefined;
  let tag: string | undefined;
  let nohostname = false;
  for (const part of spec.split(",")) {
    if (part.startsWith("server=")) {
      if (host !== undefined) throw new ConfError('duplicate syslog "server"');
      const addr = part.slice(7);
      const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(addr) ?? /^([^:]*)(?::(\d+))?$/.exec(addr);
      if (m && m[2] !== undefined && (Number(m[2]) < 1 || Number(m[2]) > 65535)) {
        throw new ConfError(`invalid port in syslog server "${addr}"`);
      }
      if (m && m[1] === "") throw new ConfError(`no host in syslog server "${addr}"`);
      if (!m) throw new ConfError(`invalid host in syslog server "${addr}"`);
      host = m[1] === "localhost" ? "127.0.0.1" : m[1]!;
      if (m[2] !== undefined) port = Number(m[2]);
    } else if (part.startsWith("facility=")) {
      if (facility !== undefined) throw new ConfError('duplicate syslog "facility"');
      const f = FACILITIES.indexOf(part.slice(9));
      if (f < 0) throw new ConfError(`unknown syslog facility "${part.slice(9)}"`);
      facility = f;
    } else if (part.startsWith("severity=")) {
      if (severity !== undefined) throw new ConfError('duplicate syslog "severity"');
      const s = part.slice(9);
      if (!(LOG_LEVELS as readonly string[]).includes(s)) throw new ConfError(`unknown syslog severity "${s}"`);
      severity = s as LogLevel;
    } else if (part.startsWith("tag=")) {
      if (tag !== undefined) throw new ConfError('duplicate syslog "tag"');
      const t = part.slice(4);
      if (t.length > 32) throw new ConfError("syslog tag length exceeds 32");
      if (!/^[A-Za-z0-9_]*$/.test(t)) throw new ConfError('syslog "tag" only allows alphanumeric characters and underscore');
      tag = t;
    } else if (part === "nohostname") {
      nohostname = true;
    } else {
      throw new ConfError(`unknown syslog parameter "${part}"`);
    }
  }
  if (host === undefined) throw new ConfError("no syslog server specified");
  return { host, port, facility: facility ?? 23, severity, tag: tag ?? "nginx", nohostname };
}

/** Reads one `error_log` directive's arguments into a target. */
export function parseLogTarget(args: readonly string[], prefix: string): LogTarget {
  const [target, ...levels] = args as [string, ...string[]];
  if (target === "stderr") return { kind: "stderr", level: parseLevels(levels) };
  if (target.startsWith("memory:")) {
    const size = parseSize(target.slice(7));
    // nginx needs room for its MEMLOG header line; 1k is a safe floor
    if (size === null || size < 1024) throw new ConfError(`invalid buffer size "${target.slice(7)}"`);
    return { kind: "memory", size, level: parseLevels(levels) };
  }
  if (target.startsWith("syslog:")) {
    const syslog = parseSyslog(target.slice(7));
    return { kind: "syslog", syslog, level: parseLevels(levels) };
  }
  return { kind: "file", path: prefixed(prefix, target), level: parseLevels(levels) };
}

/** `error_log file [level];` in main, mail and server: several per level add sinks. */
export const errorLog: Directive<readonly LogTarget[]> = custom<readonly LogTarget[]>({
  name: "error_log",
  contexts: ["main", "mail", "server"],
  args: oneOrMore,
  syntax: "file [level]",
  defaultValue: [],
  defaultText: "stderr error",
  merge: "list",
  duplicates: "accumulate",
  doc: "Where error messages go and from which level; several directives at one level add destinations.",
  parse: (args, previous, cx) => [...(previous ?? []), parseLogTarget(args, cx.prefix)],
});

/** Opens the sinks for a list of targets (files are created as needed). Throws with nginx's open() message. */
export function openErrorLog(targets: readonly LogTarget[]): ErrorLog {
  const sinks: LogSink[] = [];
  for (const t of targets) {
    switch (t.kind) {
      case "stderr":
        sinks.push(new StderrSink(t.level));
        break;
      case "memory":
        sinks.push(new MemorySink(t.size, t.level));
        break;
      case "syslog":
        sinks.push(new SyslogSink(t.syslog, t.level));
        break;
      case "file":
        sinks.push(new FileSink(t.path, t.level));
        break;
    }
  }
  return new ErrorLog(sinks);
}

/**
 * The main log's targets: the top-level `error_log` directives, else the
 * `-e` log (a file at level error, or stderr).
 */
export function mainLogTargets(conf: ParsedConf, fallback: LogTarget): readonly LogTarget[] {
  const own = conf.main.own(errorLog);
  return own && own.length > 0 ? own : [fallback];
}

/** The `-e` value as a target (`stderr` or a file relative to the prefix). */
export function startupLogTarget(value: string, prefix: string): LogTarget {
  return value === "stderr" ? { kind: "stderr", level: "error" } : { kind: "file", path: prefixed(prefix, value), level: "error" };
}

/** Checks that every file target can be opened: `open() "PATH" failed (...)` otherwise. */
export function checkLogFiles(targets: readonly LogTarget[]): void {
  for (const t of targets) {
    if (t.kind !== "file") continue;
    try {
      openErrorLog([t]).close();
    } catch (err) {
      throw new Error(`open() "${t.path}" failed ${describeSystemError(err)}`, { cause: err });
    }
  }
}

/** True when any target of the list is standard error (nginx then does not echo errors to stderr). */
export function logsToStderr(targets: readonly LogTarget[]): boolean {
  return targets.some((t) => t.kind === "stderr");
}

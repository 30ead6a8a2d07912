/**
 * Main-context and `events` directives (nginx's ngx_core_module,
 * ngx_events_module, ngx_event_core_module), plus the blocks Postern
 * refuses (`http`, `stream`). Values are read back through `coreSettings()`.
 * `error_log` (ngx_errlog_module) is declared in error-log-conf.ts and
 * listed in this table.
 */
import { getgrnam, getpwnam } from "./users.js";
import { availableParallelism } from "node:os";
import { ConfError } from "./errors.js";
import { errorLog } from "./error-log-conf.js";
import { prefixed } from "./prefix.js";
import { type AnyDirective, type ConfModule, Level, type SetContext, directiveMessage, noArgs, oneOrMore, take } from "../conf/directive.js";
import { custom, enumeration, flag, msec, number, string } from "../conf/slots.js";
import { parseNumber, parseSize } from "../conf/values.js";
import type { ParsedConf } from "../conf/engine.js";

/** Main levels on which a block that counts modules was opened (load_module must come before). */
const modulesUsed = new WeakSet<Level>();
/** Module names loaded with load_module, per main level. */
const loadedModules = new WeakMap<Level, Set<string>>();

/** `worker_processes number | auto` (undefined value = auto). */
const workerProcesses = custom<number | "auto">({
  name: "worker_processes",
  contexts: ["main"],
  args: take(1),
  syntax: "number | auto",
  defaultValue: 1,
  defaultText: "1",
  doc: "How many worker processes serve connections.",
  parse([arg]) {
    if (arg === "auto") return "auto";
    const n = parseNumber(arg!);
    if (n === null) throw directiveMessage("worker_processes", "invalid value");
    return n;
  },
});

const daemon = flag("daemon", true, { contexts: ["main"], doc: "Whether the master detaches from the terminal." });
const masterProcess = flag("master_process", true, { contexts: ["main"], doc: "Whether a master supervises worker processes (off: one process serves)." });
const pid = string("pid", "logs/nginx.pid", { contexts: ["main"], syntax: "file", doc: "File receiving the master's process ID." });
const workerShutdownTimeout = msec("worker_shutdown_timeout", undefined, {
  contexts: ["main"],
  defaultText: "—",
  doc: "Upper bound for a graceful shutdown; remaining sessions are then closed.",
});
const workerRlimitNofile = number("worker_rlimit_nofile", undefined, { contexts: ["main"], doc: "Open-file limit (soft and hard) of each worker process." });

/** `user user [group]`: applied only when running as root. */
export interface UserSetting {
  readonly user: string;
  readonly group: string;
  readonly uid?: number;
  readonly gid?: number;
}
const user = custom<UserSetting | undefined>({
  name: "user",
  contexts: ["main"],
  args: take(1, 2),
  syntax: "user [group]",
  defaultValue: undefined,
  defaultText: "nobody nobody",
  doc: "The user and group the workers run as when the master is root; without it nobody, with group nobody or else nogroup.",
  parse(args, _prev, cx) {
    const name = args[0]!;
    const group = args[1] ?? name;
    if (typeof process.geteuid === "function" && process.geteuid() !== 0) {
      cx.warn('the "user" directive makes sense only if the master process runs with super-user privileges, ignored');
      return undefined;
    }
    const pw = getpwnam(name);
    if (!pw) throw new ConfError(`getpwnam("${name}") failed`);
    const gid = getgrnam(group);
    if (gid === undefined) throw new ConfError(`getgrnam("${group}") failed`);
    return { user: name, group, uid: pw.uid, gid };
  },
});

/**
 * Variables Node.js itself reads (NODE_OPTIONS, NODE_DEBUG, NODE_INSPECT_*,
 * NODE_V8_COVERAGE, ...): NODE_OPTIONS=--inspect would open a debugger port
 * in every worker, so no NODE_* variable ever reaches one.
 */
export function isNodeRuntimeVariable(name: string): boolean {
  return name.startsWith("NODE_");
}

/**
 * The workers' user when the master runs as root and there is no `user`
 * directive: nginx's built-in `nobody`, with group `nobody`, or `nogroup`
 * where no `nobody` group exists (nginx's configure picks the group that
 * way on the build host; Debian's nginx 1.22.1 runs workers as
 * nobody/nogroup). Found by checkCoreConf, as nginx's init_conf does.
 */
const defaultUsers = new WeakMap<ParsedConf, UserSetting>();

function defaultUser(): UserSetting {
  const pw = getpwnam("nobody");
  if (!pw) throw ConfError.unlocated('getpwnam("nobody") failed');
  const group = getgrnam("nobody") !== undefined ? "nobody" : "nogroup";
  const gid = getgrnam(group);
  if (gid === undefined) throw ConfError.unlocated(`getgrnam("${group}") failed`);
  return { user: "nobody", group, uid: pw.uid, gid };
}

/** `env VAR[=value]`: variables the workers keep (TZ always); NODE_* are refused with a warning. */
const env = custom<readonly string[]>({
  name: "env",
  contexts: ["main"],
  args: take(1),
  syntax: "variable[=value]",
  defaultValue: [],
  defaultText: "env TZ;",
  merge: "none",
  duplicates: "accumulate",
  doc: "Environment variables the workers keep or get; all others are removed (NODE_* never reach workers).",
  parse(args, prev, cx) {
    const name = args[0]!.split("=")[0]!;
    if (isNodeRuntimeVariable(name)) {
      cx.warn(`"env ${name}" ignored: Node.js runtime variables never reach workers`);
      return prev ?? [];
    }
    return [...(prev ?? []), args[0]!];
  },
});

/** `load_module file`: Postern has the mail modules built in. */
const loadModule = custom<readonly string[]>({
  name: "load_module",
  contexts: ["main"],
  args: take(1),
  syntax: "file",
  defaultValue: [],
  defaultText: "—",
  merge: "none",
  duplicates: "accumulate",
  doc: "Accepted for ngx_mail_module.so (built in); any other module is an error.",
  parse(args, prev, cx) {
    if (modulesUsed.has(cx.level)) throw directiveMessage("load_module", "is specified too late");
    const path = prefixed(cx.prefix, args[0]!);
    if (!/(^|\/)ngx_mail_module\.so$/.test(path)) {
      throw new ConfError(`cannot load module "${path}": Postern has only the mail modules built in (ngx_mail_module.so)`);
    }
    const loaded = loadedModules.get(cx.level) ?? new Set<string>();
    loadedModules.set(cx.level, loaded);
    if (loaded.has("ngx_mail_module")) throw new ConfError('module "ngx_mail_module" is already loaded');
    loaded.add("ngx_mail_module");
    return [...(prev ?? []), path];
  },
});

/** Marks that a block counting modules was opened, so a later load_module is too late. */
export function markModulesUsed(cx: SetContext): void {
  modulesUsed.add(cx.level);
}

/** The parsed `events {}` block. */
const events = custom<Level | undefined>({
  name: "events",
  contexts: ["main"],
  args: noArgs,
  block: true,
  syntax: "{ ... }",
  defaultValue: undefined,
  defaultText: "—",
  doc: "Connection processing settings (required).",
  parse(_args, _prev, cx) {
    markModulesUsed(cx);
    const level = new Level("events", cx.location);
    cx.parseBlock("events", level);
    return level;
  },
});

/** `http {}` / `stream {}`: Postern serves mail only. */
function refusedBlock(name: string): AnyDirective {
  return custom<undefined>({
    name,
    contexts: ["main"],
    args: noArgs,
    block: true,
    syntax: "{ ... }",
    defaultValue: undefined,
    defaultText: "—",
    doc: `Refused: Postern serves mail only.`,
    parse() {
      throw new ConfError(`"${name}" directive is not supported: Postern is a mail proxy only`);
    },
  });
}

const workerConnections = custom<number>({
  name: "worker_connections",
  contexts: ["events"],
  args: take(1),
  syntax: "number",
  defaultValue: 512,
  defaultText: "512",
  doc: "Connections a worker may have open at once.",
  parse([arg]) {
    const n = parseNumber(arg!);
    if (n === null) throw new ConfError(`invalid number "${arg}"`);
    return n;
  },
});

const sslEngine = custom<undefined>({
  name: "ssl_engine",
  contexts: ["main"],
  args: take(1),
  syntax: "device",
  defaultValue: undefined,
  defaultText: "—",
  doc: "Refused: OpenSSL engines are not available to Node.js.",
  parse([arg]) {
    throw new ConfError(`ENGINE_by_id("${arg}") failed: OpenSSL engines are not available in Postern (Node.js TLS)`);
  },
});

/** A directive that is syntax-checked and otherwise has no effect in Postern (docs/compat.md). */
function accepted(
  name: string,
  contexts: ("main" | "events")[],
  args: AnyDirective["args"],
  syntax: string,
  check?: (args: readonly string[]) => void,
): AnyDirective {
  return custom<readonly string[] | undefined>({
    name,
    contexts,
    args,
    syntax,
    defaultValue: undefined,
    defaultText: "—",
    doc: "Accepted for compatibility; no effect in Postern.",
    parse(a) {
      check?.(a);
      return a;
    },
  });
}

function checkNumber(name: string, predicate = "invalid number"): (a: readonly string[]) => void {
  return (a) => {
    if (parseNumber(a[0]!) === null) throw directiveMessage(name, predicate);
  };
}

const noEffect: AnyDirective[] = [
  accepted("worker_rlimit_core", ["main"], take(1), "size", (a) => {
    // an off_t: like a size, plus g/G
    const g = /^(\d+)[gG]$/.test(a[0]!);
    if (!g && parseSize(a[0]!) === null) throw directiveMessage("worker_rlimit_core", "invalid value");
  }),
  accepted("worker_priority", ["main"], take(1), "number", (a) => {
    if (parseNumber(a[0]!.replace(/^-/, "")) === null) throw directiveMessage("worker_priority", "invalid number");
  }),
  accepted("worker_cpu_affinity", ["main"], oneOrMore, "auto [cpumask] | cpumask ...", (a) => {
    const masks = a[0] === "auto" ? a.slice(1) : a;
    if (a[0] === "auto" && masks.length > 1) throw new ConfError('invalid number of arguments in "worker_cpu_affinity" directive');
    for (const m of masks) {
      const bad = [...m].find((ch) => ch !== "0" && ch !== "1" && ch !== " ");
      if (bad !== undefined) throw new ConfError(`invalid character "${bad}" in "worker_cpu_affinity"`);
    }
  }),
  accepted("working_directory", ["main"], take(1), "directory"),
  accepted("lock_file", ["main"], take(1), "file"),
  msec("timer_resolution", undefined, { contexts: ["main"], defaultText: "—", doc: "Accepted for compatibility; no effect in Postern." }),
  flag("pcre_jit", false, { contexts: ["main"], doc: "Accepted for compatibility; no effect in Postern." }),
  accepted("thread_pool", ["main"], take(2, 3), "name threads=number [max_queue=number]"),
  enumeration("debug_points", ["stop", "abort"], "stop", { contexts: ["main"], doc: "Accepted for compatibility; no effect in Postern." }),
  accepted("use", ["events"], take(1), "method", (a) => {
    // nginx on Linux is built with epoll only (no select/poll modules)
    if (a[0] !== "epoll") throw new ConfError(`invalid event type "${a[0]}"`);
  }),
  flag("multi_accept", false, { contexts: ["events"], doc: "Accepted for compatibility; no effect in Postern." }),
  flag("accept_mutex", false, { contexts: ["events"], doc: "Accepted for compatibility; no effect in Postern." }),
  msec("accept_mutex_delay", 500, { contexts: ["events"], defaultText: "500ms", doc: "Accepted for compatibility; no effect in Postern." }),
  accepted("debug_connection", ["events"], take(1), "address | CIDR | unix:"),
  accepted("worker_aio_requests", ["events"], take(1), "number", checkNumber("worker_aio_requests")),
];

/** The core module's directive table. */
export const coreModule: ConfModule = {
  name: "ngx_core_module",
  directives: [
    daemon,
    masterProcess,
    pid,
    workerProcesses,
    user,
    workerRlimitNofile,
    workerShutdownTimeout,
    env,
    loadModule,
    errorLog,
    events,
    workerConnections,
    sslEngine,
    refusedBlock("http"),
    refusedBlock("stream"),
    ...noEffect,
  ],
};

/** What the process layer needs from the main and events blocks. */
export interface CoreSettings {
  readonly workerProcesses: number;
  readonly daemon: boolean;
  readonly masterProcess: boolean;
  /** Absolute path of the pid file. */
  readonly pidPath: string;
  readonly workerConnections: number;
  readonly workerShutdownTimeout: number | undefined;
  readonly workerRlimitNofile: number | undefined;
  readonly user: UserSetting | undefined;
  readonly env: readonly string[];
}

/** Reads the core settings of a parsed configuration. */
export function coreSettings(conf: ParsedConf): CoreSettings {
  const m = conf.main;
  const wp = m.get(workerProcesses);
  const ev = m.own(events);
  return {
    workerProcesses: wp === "auto" ? availableParallelism() : wp,
    daemon: m.get(daemon),
    masterProcess: m.get(masterProcess),
    pidPath: prefixed(conf.source.prefix, m.get(pid)),
    workerConnections: ev ? ev.get(workerConnections) : 512,
    workerShutdownTimeout: m.get(workerShutdownTimeout),
    workerRlimitNofile: m.get(workerRlimitNofile),
    user: m.get(user) ?? defaultUsers.get(conf),
    env: m.get(env),
  };
}

/** Checks done after the whole file is read (nginx's init_conf of the core and events modules). */
export function checkCoreConf(conf: ParsedConf): void {
  if (conf.main.own(events) === undefined) throw ConfError.unlocated('no "events" section in configuration');
  if (conf.main.get(user) === undefined && process.geteuid?.() === 0) defaultUsers.set(conf, defaultUser());
}

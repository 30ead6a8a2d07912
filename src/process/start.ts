/**
 * Starting the server: read the configuration, switch to its log, log the
 * start-up notices, then either detach (`daemon on`) or run the master or
 * the single process in the foreground.
 *
 * Node cannot fork(), so `daemon on` re-runs the same command line as a
 * detached process (new session, stdin/stdout closed, stderr sent to the
 * error log file as nginx does). The launcher relays the daemon's stderr
 * messages until it reports the service is up, then exits 0 (or 1 if the
 * daemon failed).
 *
 * Rules: docs/behaviour/cli.md#cli-6-processes, #cli-7-exit-codes.
 */
import { checkNodeInternals } from "../event/node-internals.js";
import { spawn } from "node:child_process";
import type { ConfSource } from "../conf/engine.js";
import { coreSettings } from "../core/core-module.js";
import { type LogTarget, checkLogFiles, logsToStderr, mainLogTargets, openErrorLog, startupLogTarget } from "../core/error-log-conf.js";
import { errorCode } from "../core/errors.js";
import { openAppend } from "../core/safe-open.js";
import { listenEndpoints } from "../mail/runtime.js";
import { VERSION_PAIR } from "../core/version.js";
import { errorText, loadConfiguration } from "./load-configuration.js";
import { type Reporter, setStderrRedirect } from "./startup-log.js";
import { inspectorWarning, nodeOptionsWithoutDebug, withoutDebugSwitches } from "./inspector.js";
import { BindFailedError } from "./listeners.js";
import { Master } from "./master.js";
import { inheritedSockets } from "./binary-upgrade.js";
import { osLine, rlimitLine } from "./os-info.js";
import { runSingle } from "./single.js";

/** Set in the environment of the re-spawned daemon. */
export const DAEMON_ENV = "POSTERN_DAEMON_CHILD";

type DaemonMessage = { t: "stderr"; text: string } | { t: "up" };

/**
 * Starts the service; resolves with the exit code when it stops. `errorLog`
 * is the log named by `-e` ("stderr" when not given): the log until the
 * configuration's own is open, and the default of `error_log`.
 */
export async function startServer(errorLog: string, source: ConfSource, reporter: Reporter, argv: readonly string[]): Promise<number> {
  const isDaemon = process.env[DAEMON_ENV] === "1" && typeof process.send === "function";
  if (isDaemon) {
    delete process.env[DAEMON_ENV];
    setStderrRedirect((text) => process.send?.({ t: "stderr", text } satisfies DaemonMessage));
  }
  // a new master started by USR2: the old one sends its listening sockets
  const inherited = isDaemon ? undefined : inheritedSockets();
  if (inherited) reporter.report("notice", `using inherited sockets from "${inherited.text}"`);
  let conf;
  let targets: readonly LogTarget[];
  try {
    checkNodeInternals();
    conf = loadConfiguration(source, (w) => reporter.report("warn", w));
    const core = coreSettings(conf);
    const n = listenEndpoints(conf).length;
    if (core.workerConnections < n) throw new Error(`${core.workerConnections} worker_connections are not enough for ${n} listening sockets`);
    targets = mainLogTargets(conf, startupLogTarget(errorLog, source.prefix));
    checkLogFiles(targets);
    reporter.use(openErrorLog(targets), logsToStderr(targets));
    const closed = inspectorWarning();
    if (closed) reporter.report("warn", closed);
  } catch (err) {
    reporter.report("emerg", errorText(err));
    return 1;
  }
  const core = coreSettings(conf);
  if (!isDaemon) {
    reporter.report("notice", VERSION_PAIR); // nginx's `nginx/1.22.1` notice, with what is really running
    reporter.report("notice", osLine());
    const rl = rlimitLine();
    if (rl) reporter.report("notice", rl);
    // a new binary is already detached from any terminal: nginx does not daemonize it again
    if (core.daemon && !inherited) return launchDaemon(argv, targets);
  }
  const up = (): void => {
    reporter.stopEcho();
    if (!isDaemon) return;
    process.send?.({ t: "up" } satisfies DaemonMessage);
    setStderrRedirect(undefined);
    process.disconnect();
  };
  try {
    if (!core.masterProcess) return await runSingle(conf, errorLog, reporter, argv, up, isDaemon);
    const handles = inherited ? await inherited.handles : undefined;
    return await new Master(conf, errorLog, reporter, isDaemon || inherited !== undefined).run(argv, up, handles);
  } catch (err) {
    if (errorCode(err) !== BindFailedError.code) reporter.report("emerg", errorText(err));
    return 1;
  }
}

/** Re-runs the command detached; resolves 0 once the daemon is up, 1 if it died first. */
function launchDaemon(argv: readonly string[], targets: readonly LogTarget[]): Promise<number> {
  const file = targets.find((t) => t.kind === "file");
  const errTarget = file?.kind === "file" ? openAppend(file.path) : logsToStderr(targets) ? "inherit" : "ignore";
  // the daemon is the master: no debugger switches, from the command line or NODE_OPTIONS
  const env: NodeJS.ProcessEnv = { ...process.env, [DAEMON_ENV]: "1" };
  const nodeOptions = nodeOptionsWithoutDebug(env.NODE_OPTIONS);
  if (nodeOptions === undefined) delete env.NODE_OPTIONS;
  else env.NODE_OPTIONS = nodeOptions;
  const child = spawn(process.execPath, [...withoutDebugSwitches(process.execArgv), process.argv[1]!, ...argv], {
    detached: true,
    stdio: ["ignore", "ignore", errTarget, "ipc"],
    env,
  });
  return new Promise<number>((resolve) => {
    let settled = false;
    const done = (code: number): void => {
      if (settled) return;
      settled = true;
      if (child.connected) child.disconnect();
      child.unref();
      resolve(code);
    };
    child.on("message", (m: DaemonMessage) => {
      if (m.t === "stderr") process.stderr.write(m.text);
      else if (m.t === "up") done(0);
    });
    child.on("exit", () => done(1));
    child.on("error", () => done(1));
  });
}

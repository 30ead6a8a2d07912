/**
 * `master_process off`: one process binds, serves and handles the signals
 * itself (nginx's single-process cycle).
 *
 * Rules: docs/behaviour/cli.md#cli-5-signals-to-the-master, #cli-6-processes.
 */
import { constants } from "node:os";
import type { ParsedConf } from "../conf/engine.js";
import { coreSettings } from "../core/core-module.js";
import { errorCode } from "../core/errors.js";
import { logsToStderr, mainLogTargets, openErrorLog, startupLogTarget } from "../core/error-log-conf.js";
import { listenEndpoints } from "../mail/runtime.js";
import { errorText, loadConfiguration } from "./load-configuration.js";
import type { Reporter } from "./startup-log.js";
import { type BoundHandle, BindFailedError, bindAll } from "./listeners.js";
import { removePidFile, writePidFile } from "./pid-file.js";
import { Serving } from "./serving.js";
import { localMetricsHub } from "../event/metrics-ipc.js";
import { metrics } from "../event/metrics.js";
import { metricsListenOf } from "../mail/access-log/service.js";
import { MetricsEndpoint } from "./metrics-endpoint.js";
import { sharedStoreOf } from "../mail/shared-store/check.js";
import { closeSharedStore, configureSharedStore } from "./shared-store.js";
import { CHANGE_BINARY_IGNORED, usr2TakenByNode } from "./binary-upgrade.js";

function signalText(sig: NodeJS.Signals): string {
  return `signal ${constants.signals[sig]} (${sig})`;
}

/**
 * Runs the single process (`errorLog`: the `-e` log, "stderr" when not
 * given; `daemonized`: `daemon on`); resolves with the exit code.
 */
export async function runSingle(
  conf: ParsedConf,
  errorLog: string,
  reporter: Reporter,
  argv: readonly string[],
  onUp?: () => void,
  daemonized = false,
): Promise<number> {
  const startParent = process.ppid;
  let core = coreSettings(conf);
  const handles = new Map<string, BoundHandle>();
  let endpoints = listenEndpoints(conf);
  for (const [k, h] of await bindAll(endpoints, handles, (m) => reporter.report("emerg", m))) handles.set(k, h);
  const serving = new Serving(conf, reporter.log, core.workerShutdownTimeout);
  for (const e of endpoints) await serving.listen(e, handles.get(e.key)!);
  // metrics_listen: this process records and serves its own numbers
  let draining = false;
  const metricsEndpoint = new MetricsEndpoint(localMetricsHub(), () => (draining ? "draining" : "ready"));
  await metricsEndpoint.configure(metricsListenOf(conf)).catch((err: unknown) => {
    reporter.report("emerg", errorText(err));
    throw err;
  });
  metrics.enabled = metricsListenOf(conf) !== undefined;
  configureSharedStore(sharedStoreOf(conf), (level, m) => reporter.report(level, m), metricsEndpoint.storeEvents());

  // The handlers are installed before the pid file is written, as nginx's ngx_init_signals runs before
  // ngx_create_pidfile: a signal sent as soon as the pid file exists (a script, a service manager's
  // reload) must never meet the default action, which ends the process for HUP, USR1, USR2 and QUIT.
  // Handlers run from the event loop, so none of them runs before the pid file below is written.
  const done = new Promise<number>((resolve) => {
    const exit = (): void => {
      metricsEndpoint.close();
      void closeSharedStore();
      serving.service.flushLogs();
      const problem = removePidFile(core.pidPath);
      if (problem) reporter.report("alert", problem);
      reporter.report("notice", "exit");
      resolve(0);
    };
    const fast = (sig: NodeJS.Signals): void => {
      reporter.report("notice", `${signalText(sig)} received, exiting`);
      reporter.report("notice", "exiting");
      serving.terminate();
      exit();
    };
    process.on("SIGTERM", () => fast("SIGTERM"));
    process.on("SIGINT", () => fast("SIGINT"));
    process.on("SIGQUIT", () => {
      reporter.report("notice", `${signalText("SIGQUIT")} received, shutting down`);
      draining = true;
      serving.shutdownGracefully(() => {
        reporter.report("notice", "exiting");
        exit();
      });
    });
    // nginx's single process logs USR2 and WINCH as a master would, and acts on neither
    if (!usr2TakenByNode()) {
      process.on("SIGUSR2", () => {
        if (process.ppid !== startParent) {
          reporter.report("notice", `${signalText("SIGUSR2")} received, changing binary`);
          return;
        }
        reporter.report("notice", `${signalText("SIGUSR2")} received, ignoring`);
        reporter.report("crit", CHANGE_BINARY_IGNORED);
      });
    }
    process.on("SIGWINCH", () => reporter.report("notice", `${signalText("SIGWINCH")} received${daemonized ? ", stop accepting connections" : ""}`));
    process.on("SIGUSR1", () => {
      reporter.report("notice", `${signalText("SIGUSR1")} received, reopening logs`);
      reporter.report("notice", "reopening logs");
      for (const failure of [...reporter.log.reopen(), ...serving.service.reopenLogs()]) reporter.report("emerg", failure);
    });
    process.on("SIGHUP", () => {
      reporter.report("notice", `${signalText("SIGHUP")} received, reconfiguring`);
      reporter.report("notice", "reconfiguring");
      void (async () => {
        try {
          const next = loadConfiguration(conf.source, (w) => reporter.report("warn", w));
          const nextEndpoints = listenEndpoints(next);
          const opened = await bindAll(nextEndpoints, handles, (m) => reporter.report("emerg", m));
          await metricsEndpoint.configure(metricsListenOf(next));
          metrics.enabled = metricsListenOf(next) !== undefined;
          configureSharedStore(sharedStoreOf(next), (level, m) => reporter.report(level, m), metricsEndpoint.storeEvents());
          const targets = mainLogTargets(next, startupLogTarget(errorLog, next.source.prefix));
          const old = reporter.log;
          reporter.use(openErrorLog(targets), logsToStderr(targets));
          old.close();
          for (const [k, h] of opened) handles.set(k, h);
          serving.adopt(next, reporter.log);
          const keep = new Set(nextEndpoints.map((e) => e.key));
          for (const e of endpoints) {
            if (!keep.has(e.key)) {
              serving.unlisten(e.key);
              handles.get(e.key)?.close();
              handles.delete(e.key);
            }
          }
          for (const e of nextEndpoints) if (!serving.has(e.key)) await serving.listen(e, handles.get(e.key)!);
          conf = next;
          core = coreSettings(next);
          endpoints = nextEndpoints;
          metricsEndpoint.reloaded(true);
        } catch (err) {
          metricsEndpoint.reloaded(false);
          if (errorCode(err) !== BindFailedError.code) reporter.report("emerg", errorText(err));
        }
      })();
    });
  });
  writePidFile(core.pidPath);
  process.title = `postern: single process ${argv.join(" ")}`.trimEnd();
  onUp?.();
  return done;
}

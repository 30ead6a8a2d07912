/**
 * Starting one worker process: its environment (nginx's `env` rule), its
 * switches (never the master's debugger ones), and the master-held state it
 * talks to over IPC: the shared TLS session cache and ticket keys (also
 * through the shared store), auth_http_cache, the limit counters and the
 * metrics. The returned `detach` gives back what the worker held (its
 * limit_conn connections) and must run when it exits.
 */
import { type ChildProcess, fork } from "node:child_process";
import { installAuthAnswerMaster } from "../event/auth-answer-ipc.js";
import { installLimitMaster } from "../event/limit-ipc.js";
import type { MetricsHub } from "../event/metrics-ipc.js";
import { installSessionCacheMaster } from "../event/tls-session-ipc.js";
import { installTlsStoreMaster } from "../event/tls-store-ipc.js";
import { withoutDebugSwitches } from "./inspector.js";
import { isNodeRuntimeVariable } from "../core/core-module.js";
import { WORKER_ENV, type WorkerConfig } from "./worker-config.js";

export interface ForkedWorker {
  readonly child: ChildProcess;
  /** Uninstalls the IPC handlers and gives back what the worker held. */
  readonly detach: () => void;
}

/** Forks a worker with `config` and the `env` directive's variables, attached to the master's stores and `metricsHub`. */
export function forkWorker(config: WorkerConfig, envDirective: readonly string[], metricsHub: MetricsHub): ForkedWorker {
  const env: NodeJS.ProcessEnv = { [WORKER_ENV]: JSON.stringify(config) };
  // `env` directive: workers keep TZ and the listed variables only
  if (process.env.TZ !== undefined) env.TZ = process.env.TZ;
  for (const e of envDirective) {
    const eq = e.indexOf("=");
    const name = eq >= 0 ? e.slice(0, eq) : e;
    // refused when the configuration was read; checked again as this is the last gate
    if (isNodeRuntimeVariable(name)) continue;
    if (eq >= 0) env[name] = e.slice(eq + 1);
    else if (process.env[e] !== undefined) env[e] = process.env[e];
  }
  // never the master's --inspect*/--debug* switches (fork would pass them all on)
  const execArgv = withoutDebugSwitches(process.execArgv);
  const child = fork(new URL("./worker-entry.js", import.meta.url), [], {
    env,
    execArgv,
    stdio: ["ignore", "ignore", "inherit", "ipc"],
    serialization: "json",
  });
  const uninstall = [
    installSessionCacheMaster(child),
    installTlsStoreMaster(child),
    installAuthAnswerMaster(child),
    installLimitMaster(child),
    metricsHub.attach(child, String(child.pid)),
  ];
  return { child, detach: () => uninstall.forEach((u) => u()) };
}

/**
 * The master process: owns the listening sockets and the pid file, starts
 * and supervises workers, and turns signals into reload, shutdown and
 * log reopening.
 *
 * Rules: docs/behaviour/cli.md#cli-5-signals-to-the-master, #cli-6-processes, #cli-9-binary-upgrade.
 */
import type { ChildProcess } from "node:child_process";
import { closeSync } from "node:fs";
import { FileSink } from "../core/log.js";
import { giveTo, openAppend } from "../core/safe-open.js";
import { describeSystemError, errorCode } from "../core/errors.js";
import { constants } from "node:os";
import type { ParsedConf } from "../conf/engine.js";
import { type CoreSettings, coreSettings } from "../core/core-module.js";
import { logsToStderr, mainLogTargets, openErrorLog, startupLogTarget } from "../core/error-log-conf.js";
import { listenEndpoints, type ListenEndpoint, serverLogFiles } from "../mail/runtime.js";
import { MetricsHub } from "../event/metrics-ipc.js";
import { sharedStoreOf } from "../mail/shared-store/check.js";
import { closeSharedStore, configureSharedStore } from "./shared-store.js";
import { metricsListenOf } from "../mail/access-log/service.js";
import { MetricsEndpoint, type Readiness, metricsHandOffKey } from "./metrics-endpoint.js";
import { errorText, loadConfiguration, validatedInputs } from "./load-configuration.js";
import type { Reporter } from "./startup-log.js";
import type { ConfSource } from "../conf/engine.js";
import { type BoundHandle, BindFailedError, bindAll } from "./listeners.js";
import { removePidFile, writePidFile } from "./pid-file.js";
import { CHANGE_BINARY_IGNORED, execNewBinary, oldPidPath, renameBack, usr2TakenByNode } from "./binary-upgrade.js";
import { applyNofile } from "./rlimit.js";
import { type ToWorker, workerMessage, type WorkerConfig } from "./worker-config.js";
import { forkWorker } from "./worker-fork.js";

interface Worker {
  readonly child: ChildProcess;
  readonly generation: number;
  /** Told to stop (QUIT/TERM): not respawned. */
  exiting: boolean;
  listening: boolean;
  /** USR1 arrived while the worker was starting: forwarded once it listens. */
  reopenPending: boolean;
}

/** One running configuration: settings, endpoints, sockets. */
interface Cycle {
  readonly conf: ParsedConf;
  readonly core: CoreSettings;
  readonly endpoints: readonly ListenEndpoint[];
  readonly generation: number;
}

/** Signal names as nginx logs them: `signal 1 (SIGHUP)`. */
function signalText(sig: NodeJS.Signals): string {
  return `signal ${constants.signals[sig]} (${sig})`;
}

/** The master process. `run()` resolves with the exit code when it exits. */
export class Master {
  readonly #source: ConfSource;
  /** The `-e` log ("stderr" when not given): the default of `error_log`, and what workers are told. */
  readonly #errorLog: string;
  readonly #reporter: Reporter;
  #cycle: Cycle;
  readonly #handles = new Map<string, BoundHandle>();
  readonly #workers = new Set<Worker>();
  #terminating: "no" | "quit" | "term" = "no";
  #resolve: (code: number) => void = () => {};
  #onUp: (() => void) | undefined;
  #pidWritten = false;
  /** A worker has listened: /health says ready until shutdown (#servedOnce). */
  #ready = false;
  #exitCode = 0;
  /** nginx's ngx_parent: USR2 is refused while this process is still our parent (a supervisor, or the old master). */
  readonly #startParent = process.ppid;
  /** nginx's ngx_daemonized (`daemon on`, or a new binary): WINCH stops the workers only then. */
  readonly #daemonized: boolean;
  /** The new master started by USR2, while it runs. */
  #newBinary: ChildProcess | undefined;
  /** WINCH stopped the workers; they come back if the new binary exits. */
  #noAccepting = false;
  /** metrics_listen: the sums of all workers, and the HTTP endpoint with /health. */
  readonly #metricsHub = new MetricsHub();
  // /health: the old master of a USR2 upgrade never says draining (the new binary serves the node, even a request it took just before QUIT)
  readonly #metrics = new MetricsEndpoint(this.#metricsHub, (): Readiness =>
    this.#terminating !== "no" && this.#newBinary === undefined ? "draining" : this.#servedOnce() ? "ready" : "starting",
  );

  constructor(conf: ParsedConf, errorLog: string, reporter: Reporter, daemonized = false) {
    this.#source = conf.source;
    this.#errorLog = errorLog;
    this.#reporter = reporter;
    this.#daemonized = daemonized;
    this.#cycle = { conf, core: coreSettings(conf), endpoints: listenEndpoints(conf), generation: 1 };
  }

  /**
   * Binds (or adopts the sockets an upgrading master handed over), starts
   * workers, writes the pid file (then calls onUp), and runs until exit.
   * Rejects if start-up fails.
   */
  async run(argv: readonly string[], onUp?: () => void, inherited?: ReadonlyMap<string, BoundHandle>): Promise<number> {
    const log = this.#reporter;
    const wanted = new Set(this.#cycle.endpoints.map((e) => e.key));
    const metricsListen = metricsListenOf(this.#cycle.conf);
    const metricsKey = metricsListen ? metricsHandOffKey(metricsListen.text) : undefined;
    for (const [k, h] of inherited ?? []) {
      if (k === metricsKey) continue;
      // a socket the new configuration no longer lists is closed, as nginx does
      if (wanted.has(k)) this.#handles.set(k, h);
      else h.close();
    }
    const opened = await bindAll(this.#cycle.endpoints, this.#handles, (m) => log.report("emerg", m));
    for (const [k, h] of opened) this.#handles.set(k, h);
    const inheritedMetrics = metricsKey ? inherited?.get(metricsKey) : undefined;
    // a new binary answers /health on the old master's socket once its workers listen (never "starting" there)
    if (inheritedMetrics) onUp = this.#afterUp(onUp, () => this.#metrics.configure(metricsListen, inheritedMetrics));
    else
      await this.#metrics.configure(metricsListen).catch((err: unknown) => {
        log.report("emerg", errorText(err));
        for (const h of this.#handles.values()) h.close();
        throw err;
      });
    configureSharedStore(sharedStoreOf(this.#cycle.conf), (level, m) => log.report(level, m), this.#metrics.storeEvents());
    process.title = `postern: master process ${argv.join(" ")}`.trimEnd();
    this.#installSignals(argv);
    this.#onUp = onUp;
    const exited = new Promise<number>((r) => (this.#resolve = r));
    this.#startWorkers(this.#cycle);
    return exited;
  }

  #afterUp(onUp: (() => void) | undefined, then: () => Promise<void>): () => void {
    return () => {
      onUp?.();
      then().catch((err: unknown) => this.#log().report("alert", errorText(err)));
    };
  }

  /** A master that stops serving while its new binary runs leaves /health to the new one. */
  #leaveMetricsToNewBinary(): void {
    if (this.#newBinary) this.#metrics.stopAccepting();
  }

  /**
   * Ready from the first worker that listens on: a reload starts the new
   * workers before the old ones stop accepting, and the kernel holds new
   * connections in the listen queue meanwhile, so the node never stops
   * being a place to send clients (a load balancer must not mark it down
   * for a HUP). Only a graceful shutdown turns it away ("draining").
   */
  #servedOnce(): boolean {
    if (!this.#ready) this.#ready = [...this.#workers].some((w) => w.listening && !w.exiting);
    return this.#ready;
  }

  #log(): Reporter {
    return this.#reporter;
  }

  #installSignals(argv: readonly string[]): void {
    process.on("SIGHUP", () => void this.#reload());
    process.on("SIGQUIT", () => this.#quit());
    process.on("SIGTERM", () => this.#terminate("SIGTERM"));
    process.on("SIGINT", () => this.#terminate("SIGINT"));
    process.on("SIGUSR1", () => this.#reopen());
    // node's own heap snapshots on USR2 (the soak) win over the upgrade
    if (!usr2TakenByNode()) process.on("SIGUSR2", () => this.#changeBinary(argv));
    process.on("SIGWINCH", () => this.#noAccept());
  }

  /** USR2: nginx's binary upgrade (binary-upgrade.ts), refused while an upgrade runs or our first parent lives. */
  #changeBinary(argv: readonly string[]): void {
    const log = this.#log();
    if (process.ppid === this.#startParent || this.#newBinary !== undefined) {
      log.report("notice", `${signalText("SIGUSR2")} received, ignoring`);
      log.report("crit", CHANGE_BINARY_IGNORED);
      return;
    }
    log.report("notice", `${signalText("SIGUSR2")} received, changing binary`);
    if (this.#terminating !== "no") return;
    log.report("notice", "changing binary");
    const pidPath = this.#cycle.core.pidPath;
    const report = (level: "notice" | "alert", m: string): void => log.report(level, m);
    const child = execNewBinary({ argv, pidPath, handles: this.#metrics.withHandOff(this.#handles), report });
    if (child === undefined) return;
    this.#newBinary = child;
    log.report("notice", `start new binary process ${child.pid}`);
    child.on("exit", (code, signal) => {
      if (signal) log.report("alert", `new binary process ${child.pid} exited on signal ${constants.signals[signal]}`);
      else log.report("notice", `new binary process ${child.pid} exited with code ${code}`);
      this.#newBinary = undefined;
      if (this.#terminating !== "no") return;
      // the new master is gone (rolled back, or it failed to start): this one is the server again
      renameBack({ pidPath, report }, "the exit of");
      // and the metrics endpoint it took over is served here again
      this.#metrics.configure(metricsListenOf(this.#cycle.conf)).catch((err: unknown) => log.report("alert", errorText(err)));
      if (this.#noAccepting) {
        this.#noAccepting = false;
        this.#startWorkers(this.#cycle);
      }
    });
  }

  /** WINCH: the old master's workers finish gracefully, the master stays (only daemonized, as in nginx). */
  #noAccept(): void {
    if (!this.#daemonized) {
      this.#log().report("notice", signalText("SIGWINCH") + " received");
      return;
    }
    this.#log().report("notice", `${signalText("SIGWINCH")} received, stop accepting connections`);
    if (this.#terminating !== "no") return;
    this.#noAccepting = true;
    this.#leaveMetricsToNewBinary();
    for (const w of this.#workers) this.#quitWorker(w);
  }

  #startWorkers(cycle: Cycle): void {
    this.#log().report("notice", "start worker processes");
    const fresh: Worker[] = [];
    for (let i = 0; i < cycle.core.workerProcesses; i++) fresh.push(this.#spawn(cycle));
    let waiting = fresh.length;
    const up = (): void => {
      if (--waiting > 0) return;
      if (this.#onUp) {
        const cb = this.#onUp;
        this.#onUp = undefined;
        try {
          writePidFile(cycle.core.pidPath);
          this.#pidWritten = true;
        } catch (err) {
          this.#log().report("emerg", errorText(err));
          this.#exitCode = 1;
          this.#terminate(undefined);
          return;
        }
        cb();
      }
    };
    if (fresh.length === 0) up();
    for (const w of fresh) {
      // the worker's first own message says whether it listens; other
      // messages on the channel (the TLS session cache) are not ours
      const first = (raw: unknown): void => {
        const m = workerMessage(raw);
        if (m === undefined) return;
        w.child.off("message", first);
        if (m.t === "listening") up();
        else if (this.#onUp) {
          // a worker could not listen before the service was up: give up as nginx would
          this.#log().report("emerg", m.message);
          this.#exitCode = 1;
          this.#terminate(undefined);
        }
      };
      w.child.on("message", first);
    }
  }

  #spawn(cycle: Cycle): Worker {
    const wc: WorkerConfig = { source: this.#source, errorLog: this.#errorLog, generation: cycle.generation };
    const { child, detach } = forkWorker(wc, cycle.core.env, this.#metricsHub);
    const w: Worker = { child, generation: cycle.generation, exiting: false, listening: false, reopenPending: false };
    this.#workers.add(w);
    this.#log().report("notice", `start worker process ${child.pid}`);
    const nofile = cycle.core.workerRlimitNofile;
    if (nofile !== undefined && child.pid !== undefined) applyNofile(child.pid, nofile, (m) => this.#log().report("alert", m));
    child.on("message", (raw: unknown) => {
      if (workerMessage(raw)?.t !== "listening") return;
      w.listening = true;
      if (w.reopenPending) {
        w.reopenPending = false;
        child.kill("SIGUSR1");
      }
    });
    child.on("exit", (code, signal) => {
      detach();
      this.#workerExited(w, code, signal);
    });
    child.on("error", () => {});
    const msg = (m: ToWorker, h?: BoundHandle): void => {
      if (child.connected) child.send(m, h as never, () => {});
    };
    // exactly what this cycle validated, even if the files changed since
    msg({ t: "config", snapshot: validatedInputs(cycle.conf) });
    msg({ t: "expect", count: cycle.endpoints.length });
    for (const e of cycle.endpoints) msg({ t: "listen", endpoint: e }, this.#handles.get(e.key));
    return w;
  }

  #workerExited(w: Worker, code: number | null, signal: NodeJS.Signals | null): void {
    this.#workers.delete(w);
    const pid = w.child.pid;
    if (signal) this.#log().report("alert", `worker process ${pid} exited on signal ${constants.signals[signal]}`);
    else this.#log().report("notice", `worker process ${pid} exited with code ${code}`);
    if (this.#terminating === "no" && this.#onUp && !w.listening && code === 2) {
      // a worker that cannot start before the service is up: no pid file, exit 1
      this.#exitCode = 1;
      this.#terminate(undefined);
    }
    if (this.#terminating !== "no") {
      if (this.#workers.size === 0) this.#exit();
      return;
    }
    if (!w.exiting && w.generation === this.#cycle.generation && code !== 2) {
      this.#metrics.workerRestarted();
      this.#spawn(this.#cycle);
    }
  }

  async #reload(): Promise<void> {
    if (this.#terminating !== "no") return;
    const log = this.#log();
    log.report("notice", `${signalText("SIGHUP")} received, reconfiguring`);
    if (this.#newBinary !== undefined) {
      // rolling back an upgrade: workers again, with the configuration as it was (nginx rereads nothing here)
      this.#startWorkers(this.#cycle);
      this.#noAccepting = false;
      return;
    }
    log.report("notice", "reconfiguring");
    let conf: ParsedConf;
    let next: Cycle;
    let opened: Map<string, BoundHandle>;
    try {
      conf = loadConfiguration(this.#source, (w) => log.report("warn", w));
      next = { conf, core: coreSettings(conf), endpoints: listenEndpoints(conf), generation: this.#cycle.generation + 1 };
      opened = await bindAll(next.endpoints, this.#handles, (m) => log.report("emerg", m));
      await this.#metrics.configure(metricsListenOf(conf));
    } catch (err) {
      if (errorCode(err) !== BindFailedError.code) log.report("emerg", errorText(err));
      this.#metrics.reloaded(false);
      return;
    }
    this.#metrics.reloaded(true);
    configureSharedStore(sharedStoreOf(conf), (level, m) => log.report(level, m), this.#metrics.storeEvents());
    // switch the master's own log to the new configuration's
    try {
      const targets = mainLogTargets(conf, startupLogTarget(this.#errorLog, this.#source.prefix));
      const old = log.log;
      log.use(openErrorLog(targets), logsToStderr(targets));
      old.close();
    } catch (err) {
      log.report("emerg", errorText(err));
    }
    for (const [k, h] of opened) this.#handles.set(k, h);
    const keep = new Set(next.endpoints.map((e) => e.key));
    const old = [...this.#workers];
    const oldPid = this.#cycle.core.pidPath;
    this.#cycle = next;
    if (this.#pidWritten && oldPid !== next.core.pidPath) {
      // a new `pid` path: write the new file, then drop the old one, as nginx does
      try {
        writePidFile(next.core.pidPath);
        const problem = removePidFile(oldPid);
        if (problem) log.report("alert", problem);
      } catch (err) {
        log.report("emerg", errorText(err));
      }
    }
    this.#startWorkers(next);
    for (const w of old) this.#quitWorker(w);
    // the master's copy of a removed socket; old workers close theirs as they quit
    for (const [k, h] of this.#handles) {
      if (!keep.has(k)) {
        h.close();
        this.#handles.delete(k);
      }
    }
  }

  #quit(): void {
    this.#log().report("notice", `${signalText("SIGQUIT")} received, shutting down`);
    if (this.#terminating === "term") return;
    this.#terminating = "quit";
    this.#leaveMetricsToNewBinary();
    this.#closeHandles();
    for (const w of this.#workers) this.#quitWorker(w);
    if (this.#workers.size === 0) this.#exit();
  }

  /**
   * Asks a worker to finish gracefully. A worker still starting has no QUIT
   * handler yet (SIGQUIT would kill it): it is asked once it reports ready.
   */
  #quitWorker(w: Worker): void {
    w.exiting = true;
    if (w.listening) {
      w.child.kill("SIGQUIT");
      return;
    }
    const ready = (raw: unknown): void => {
      if (workerMessage(raw)?.t !== "listening") return;
      w.child.off("message", ready);
      w.child.kill("SIGQUIT");
    };
    w.child.on("message", ready);
  }

  #terminate(sig: NodeJS.Signals | undefined): void {
    if (sig) this.#log().report("notice", `${signalText(sig)} received, exiting`);
    if (this.#terminating === "term") return;
    this.#terminating = "term";
    this.#leaveMetricsToNewBinary();
    this.#closeHandles();
    if (this.#workers.size === 0) {
      this.#exit();
      return;
    }
    // TERM again with a doubling delay; KILL whoever is left after ~1.5 s
    let delay = 50;
    let waited = 0;
    const tick = (): void => {
      if (this.#workers.size === 0) return;
      if (waited >= 1500) {
        for (const w of this.#workers) w.child.kill("SIGKILL");
        return;
      }
      for (const w of this.#workers) w.child.kill("SIGTERM");
      waited += delay;
      setTimeout(tick, delay);
      delay *= 2;
    };
    for (const w of this.#workers) w.exiting = true;
    tick();
  }

  #reopen(): void {
    const log = this.#log();
    log.report("notice", `${signalText("SIGUSR1")} received, reopening logs`);
    log.report("notice", "reopening logs");
    // a failure keeps the old file (nginx logs it at emerg and goes on)
    for (const failure of log.log.reopen()) log.report("emerg", failure);
    const uid = this.#cycle.core.user?.uid;
    if (uid !== undefined && process.geteuid?.() === 0) this.#giveLogsTo(uid);
    // a worker still starting has no USR1 handler yet (Node's default action
    // would open its inspector): it is told once it reports listening
    for (const w of this.#workers) {
      if (w.listening) w.child.kill("SIGUSR1");
      else w.reopenPending = true;
    }
  }

  /**
   * Workers run as `user` and reopen the logs after the master: every log
   * file of the cycle (the servers' own too, which only workers write) is
   * created here and given to that user. Ownership changes on the open
   * descriptor: a log path a worker swapped for a symlink is refused when
   * opened (safe-open.ts), never followed by a chown.
   */
  #giveLogsTo(uid: number): void {
    const log = this.#log();
    const mine = new Set<string>();
    for (const s of log.log.sinks) {
      if (!(s instanceof FileSink)) continue;
      mine.add(s.path);
      try {
        s.giveTo(uid);
      } catch (err) {
        log.report("emerg", `fchown() "${s.path}" failed ${describeSystemError(err)}`);
      }
    }
    for (const path of serverLogFiles(this.#cycle.conf)) {
      if (mine.has(path)) continue;
      let fd: number;
      try {
        fd = openAppend(path);
      } catch (err) {
        log.report("emerg", `open() "${path}" failed ${describeSystemError(err)}`);
        continue;
      }
      try {
        giveTo(fd, uid);
      } catch (err) {
        log.report("emerg", `fchown() "${path}" failed ${describeSystemError(err)}`);
      } finally {
        closeSync(fd);
      }
    }
  }

  #closeHandles(): void {
    for (const h of this.#handles.values()) h.close();
    this.#handles.clear();
  }

  #exit(): void {
    if (this.#pidWritten) {
      // while a new binary runs, this master's file is the `.oldbin` one
      const path = this.#newBinary !== undefined ? oldPidPath(this.#cycle.core.pidPath) : this.#cycle.core.pidPath;
      const problem = removePidFile(path);
      if (problem) this.#log().report("alert", problem);
    }
    this.#log().report("notice", "exit");
    this.#metrics.close();
    void closeSharedStore();
    this.#resolve(this.#exitCode);
  }
}

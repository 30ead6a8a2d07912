/**
 * A worker process (forked by the master through worker-entry.ts). It
 * rebuilds the configuration from the inputs the master validated (sent
 * over IPC, never re-read from disk), receives the listening handles and
 * serves until told to stop.
 *
 * Rules: docs/behaviour/cli.md#cli-6-processes, #cli-7-exit-codes.
 */
import { type UserSetting, coreSettings } from "../core/core-module.js";
import { mainLogTargets, openErrorLog, startupLogTarget } from "../core/error-log-conf.js";
import { type ErrorLog, useAsMainLog } from "../core/log.js";
import { describeSystemError } from "../core/errors.js";
import { loadValidatedConfiguration, errorText } from "./load-configuration.js";
import { type ConfSnapshot, snapshotFrom } from "../core/conf-inputs.js";
import type { BoundHandle } from "./listeners.js";
import { Serving } from "./serving.js";
import { connectSessionCacheWorker, replicasLoaded } from "../event/tls-session-ipc.js";
import { connectAuthAnswerWorker } from "../event/auth-answer-ipc.js";
import { connectLimitWorker } from "../event/limit-ipc.js";
import { connectMetricsWorker, flushMetricsWorker } from "../event/metrics-ipc.js";
import { metricsListenOf } from "../mail/access-log/service.js";
import { type FromWorker, type ToWorker, WORKER_ENV, type WorkerConfig } from "./worker-config.js";

/**
 * How long a starting worker waits for the master's copy of its shared
 * session caches before it accepts anyway (a stuck master must not keep it
 * from serving; a reload's old workers accept meanwhile).
 */
const REPLICA_WAIT_MS = 2000;

function send(m: FromWorker): void {
  process.send?.(m);
}

/**
 * nginx's order: setgid, initgroups, setuid (the last one gives up the
 * right to do the first two), then a check that no root id is left.
 */
function dropPrivileges(user: UserSetting): void {
  const { uid, gid } = user;
  if (uid === undefined || gid === undefined) throw new Error(`no uid or gid for "${user.user}"`);
  // POSIX-only methods (the @types mark them optional; initgroups is missing)
  const p = process as unknown as {
    setgid(g: number): void;
    setuid(u: number): void;
    initgroups(u: string, g: number): void;
    getuid(): number;
    geteuid(): number;
    getgid(): number;
    getegid(): number;
    getgroups(): number[];
  };
  const step = (what: string, f: () => void): void => {
    try {
      f();
    } catch (err) {
      throw new Error(`${what} failed ${describeSystemError(err)}`, { cause: err });
    }
  };
  step(`setgid(${gid})`, () => p.setgid(gid));
  step(`initgroups(${user.user}, ${gid})`, () => p.initgroups(user.user, gid));
  step(`setuid(${uid})`, () => p.setuid(uid));
  const left = [p.getuid(), p.geteuid(), p.getgid(), p.getegid()];
  if (left.join() !== [uid, uid, gid, gid].join() || (gid !== 0 && p.getgroups().includes(0))) {
    throw new Error(`switching to user "${user.user}" left ids ${left.join(",")} groups ${p.getgroups().join(",")}`);
  }
}

function runWorker(): void {
  const queue: [ToWorker, BoundHandle | undefined][] = [];
  let handler: ((m: ToWorker, h: BoundHandle | undefined) => void) | undefined;
  // attach at once so no handle sent early is lost
  process.on("message", (m: ToWorker, h: BoundHandle | undefined) => (handler ? handler(m, h) : queue.push([m, h])));
  process.on("SIGHUP", () => {}); // workers ignore HUP, as nginx's do
  process.title = "postern: worker process";
  // before any TLS context is built: shared caches and ticket keys go through the master
  connectSessionCacheWorker();
  connectAuthAnswerWorker();
  // limit counters too; attached now, as the master's first message (the login-hash key) is already on its way
  connectLimitWorker();
  // the master's first message is the configuration it validated; nothing is read from disk
  handler = (m, h) => {
    if (m?.t !== "config") {
      queue.push([m, h]);
      return;
    }
    handler = undefined;
    serve(snapshotFrom(m.snapshot), (next) => {
      handler = next;
      for (const [qm, qh] of queue.splice(0)) next(qm, qh);
    });
  };
  for (const [m, h] of queue.splice(0)) handler?.(m, h);
}

/** Builds the service from the validated inputs, drops privileges, installs the signals, then takes `listen` messages. */
function serve(snapshot: ConfSnapshot | undefined, ready: (handler: (m: ToWorker, h: BoundHandle | undefined) => void) => void): void {
  const wc = JSON.parse(process.env[WORKER_ENV] ?? "{}") as WorkerConfig;
  let log: ErrorLog;
  let serving: Serving;
  try {
    if (!snapshot) throw new Error("the master sent no valid configuration");
    const conf = loadValidatedConfiguration(wc.source, snapshot, () => {});
    const core = coreSettings(conf);
    log = openErrorLog(mainLogTargets(conf, startupLogTarget(wc.errorLog, wc.source.prefix)));
    useAsMainLog(log); // where a syslog target of any level reports that it cannot send
    if (metricsListenOf(conf)) connectMetricsWorker(process);
    // every file (logs of each server too) is open before the privileges go
    serving = new Serving(conf, log, core.workerShutdownTimeout);
    if (core.user !== undefined && process.geteuid?.() === 0) dropPrivileges(core.user);
  } catch (err) {
    send({ t: "failed", message: errorText(err) });
    process.exit(2); // nginx's "fatal" code: the master does not respawn
  }

  const exit = (): void => {
    log.notice("exit");
    serving.service.flushLogs();
    // the last metrics reach the master first (bounded: a gone master does not hold the exit)
    setTimeout(() => process.exit(0), 500).unref();
    flushMetricsWorker(() => process.exit(0));
  };
  process.on("SIGTERM", () => {
    log.notice("exiting");
    serving.terminate();
    exit();
  });
  process.on("SIGINT", () => {
    log.notice("exiting");
    serving.terminate();
    exit();
  });
  const graceful = (): void => {
    process.title = "postern: worker process is shutting down";
    serving.shutdownGracefully(() => {
      log.notice("exiting");
      exit();
    });
  };
  process.on("SIGQUIT", graceful);
  process.on("SIGWINCH", graceful);
  process.on("disconnect", graceful); // the master is gone
  process.on("SIGUSR1", () => {
    log.notice("reopening logs");
    // a file that cannot be opened (e.g. the worker's user may not create
    // files where root could) keeps its old descriptor, as in nginx
    for (const failure of [...log.reopen(), ...serving.service.reopenLogs()]) log.emerg(failure);
  });

  // the shared session caches' replicas are loaded before the first accept (tls-session-ipc.ts)
  const replicas = replicasLoaded(REPLICA_WAIT_MS);
  let expected = -1;
  let done = 0;
  const pending: Promise<void>[] = [];
  const check = (): void => {
    if (expected >= 0 && pending.length === expected) {
      Promise.all(pending).then(
        () => send({ t: "listening" }),
        (err: unknown) => {
          log.emerg(`listen() failed: ${errorText(err)}`);
          send({ t: "failed", message: errorText(err) });
          process.exit(2);
        },
      );
      expected = -2;
    }
  };
  ready((m, h) => {
    if (m?.t === "expect") expected = m.count;
    else if (m?.t === "listen" && h) pending.push(replicas.then(() => serving.listen(m.endpoint, h)).then(() => void done++));
    check();
  });
}

runWorker();

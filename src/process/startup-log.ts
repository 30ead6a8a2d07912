/**
 * The log in use before the configuration is read: the `-e` file (or
 * stderr). Errors also go to stderr as `nginx: [emerg] ...` when that log is
 * not stderr, as nginx does.
 *
 * Rule: docs/behaviour/cli.md#cli-2-prefix-configuration-file-and-start-up-log.
 */
import { writeSync } from "node:fs";
import { ErrorLog, type LogLevel, useAsMainLog } from "../core/log.js";
import { type LogTarget, openErrorLog } from "../core/error-log-conf.js";
import { describeSystemError } from "../core/errors.js";

/** A log plus nginx's stderr echo rule. */
export class Reporter {
  log: ErrorLog;
  #toStderr: boolean;
  #echoStopped = false;

  constructor(log: ErrorLog, logIsStderr: boolean) {
    this.log = log;
    this.#toStderr = logIsStderr;
  }

  /** Opens the `-e` target; on failure reports an alert and falls back to stderr, as nginx does. */
  static open(target: LogTarget): Reporter {
    if (target.kind === "stderr") return new Reporter(openErrorLog([{ kind: "stderr", level: "debug" }]), true);
    try {
      return new Reporter(openErrorLog([{ ...target, level: "debug" }]), false);
    } catch (err) {
      const path = target.kind === "file" ? target.path : "";
      stderr(`nginx: [alert] could not open error log file: open() "${path}" failed ${describeSystemError(err)}\n`);
      return new Reporter(openErrorLog([{ kind: "stderr", level: "debug" }]), true);
    }
  }

  /** Switches to another log (the configured main log); `isStderr` if it writes to stderr. */
  use(log: ErrorLog, isStderr: boolean): void {
    this.log = log;
    useAsMainLog(log);
    if (!this.#echoStopped) this.#toStderr = isStderr;
  }

  /** After start-up nginx stops echoing to stderr (it points at the log by then). */
  stopEcho(): void {
    this.#toStderr = true;
    this.#echoStopped = true;
  }

  /** Writes to the log, and to stderr as `nginx: [level] msg` when the log is not stderr. */
  report(level: LogLevel, message: string): void {
    this.log.write(level, message);
    if (!this.#toStderr && (level === "emerg" || level === "alert" || level === "crit" || level === "error" || level === "warn")) {
      stderr(`nginx: [${level}] ${message}\n`);
    }
  }
}

let redirect: ((text: string) => void) | undefined;

/** Sends what would go to stderr elsewhere (a daemon forwards it to its launcher until it is up). */
export function setStderrRedirect(fn: ((text: string) => void) | undefined): void {
  redirect = fn;
}

/** Writes to standard error, synchronously (messages must precede exit). */
export function stderr(text: string): void {
  if (redirect) redirect(text);
  else {
    try {
      writeSync(2, text);
    } catch {
      // stderr closed: nothing to do
    }
  }
}

/**
 * `-s stop|quit|reopen|reload`: signal the running master through its pid file.
 *
 * Rule: docs/behaviour/cli.md#cli-4-signalling-a-running-master.
 */
import { readFileSync } from "node:fs";
import { constants } from "node:os";
import type { ConfSource } from "../conf/engine.js";
import { coreSettings } from "../core/core-module.js";
import { logsToStderr, mainLogTargets, openErrorLog, startupLogTarget } from "../core/error-log-conf.js";
import { describeSystemError } from "../core/errors.js";
import { errorText, loadConfiguration } from "../process/load-configuration.js";
import type { Reporter } from "../process/startup-log.js";
import { type Options, SIGNAL_NAMES } from "./options.js";

/** Sends the signal; returns the exit code. */
export function sendSignal(o: Options, name: string, source: ConfSource, reporter: Reporter): number {
  let conf;
  try {
    conf = loadConfiguration(source, (w) => reporter.report("warn", w));
    const targets = mainLogTargets(conf, startupLogTarget(o.errorLog ?? "stderr", source.prefix));
    reporter.use(openErrorLog(targets), logsToStderr(targets));
  } catch (err) {
    reporter.report("emerg", errorText(err));
    return 1;
  }
  reporter.report("notice", "signal process started");
  const pidPath = coreSettings(conf).pidPath;
  let text: string;
  try {
    text = readFileSync(pidPath, "latin1").slice(0, 21);
  } catch (err) {
    reporter.report("error", `open() "${pidPath}" failed ${describeSystemError(err)}`);
    return 1;
  }
  const trimmed = text.replace(/[\r\n]+$/, "");
  const pid = /^[0-9]+$/.test(trimmed) ? Number(trimmed) : NaN;
  if (!Number.isSafeInteger(pid) || pid <= 0) {
    reporter.report("error", `invalid PID number "${trimmed}" in "${pidPath}"`);
    return 1;
  }
  const signal = SIGNAL_NAMES[name]!;
  try {
    process.kill(pid, signal);
  } catch (err) {
    reporter.report("alert", `kill(${pid}, ${constants.signals[signal]}) failed ${describeSystemError(err)}`);
    return 1;
  }
  return 0;
}

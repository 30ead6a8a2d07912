/**
 * `-t` and `-T`: check the configuration, report, optionally dump it.
 *
 * Rule: docs/behaviour/cli.md#cli-3-testing-the-configuration.
 */
import { closeSync, writeSync } from "node:fs";
import { openAppend } from "../core/safe-open.js";
import type { ConfSource } from "../conf/engine.js";
import { coreSettings } from "../core/core-module.js";
import { checkLogFiles, mainLogTargets, startupLogTarget } from "../core/error-log-conf.js";
import { describeSystemError } from "../core/errors.js";
import { checkConfiguration, errorText, parseOnly } from "../process/load-configuration.js";
import { listenEndpoints } from "../mail/runtime.js";
import { tryBindForTest } from "../process/listeners.js";
import { type Reporter, stderr } from "../process/startup-log.js";
import type { Options } from "./options.js";

/** Runs the test; resolves with the exit code. */
export async function testConfiguration(o: Options, source: ConfSource, reporter: Reporter): Promise<number> {
  const failed = (): number => {
    stderr(`nginx: configuration file ${source.file} test failed\n`);
    return 1;
  };
  let conf;
  try {
    conf = parseOnly(source, (w) => reporter.report("warn", w));
  } catch (err) {
    reporter.report("emerg", errorText(err));
    return failed();
  }
  if (!o.quiet) stderr(`nginx: the configuration file ${source.file} syntax is ok\n`);
  try {
    checkConfiguration(conf);
    const targets = mainLogTargets(conf, startupLogTarget(o.errorLog ?? "stderr", source.prefix));
    checkLogFiles(targets);
    // nginx -t creates the pid file when missing but does not write it
    const pidPath = coreSettings(conf).pidPath;
    try {
      closeSync(openAppend(pidPath));
    } catch (err) {
      throw new Error(`open() "${pidPath}" failed ${describeSystemError(err)}`, { cause: err });
    }
    // last, as in nginx's cycle: the listening addresses are bound (and let go)
    await tryBindForTest(listenEndpoints(conf));
  } catch (err) {
    reporter.report("emerg", errorText(err));
    return failed();
  }
  if (!o.quiet) stderr(`nginx: configuration file ${source.file} test is successful\n`);
  if (o.dump) {
    for (const f of conf.files) {
      writeAll(Buffer.concat([Buffer.from(`# configuration file ${f.path}:\n`), f.text, Buffer.from("\n")]));
    }
  }
  return 0;
}

/** Writes to stdout synchronously, retrying on a full non-blocking pipe. */
function writeAll(buf: Buffer): void {
  let off = 0;
  while (off < buf.length) {
    try {
      off += writeSync(1, buf, off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
    }
  }
}

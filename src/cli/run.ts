/**
 * The command line: subcommands, switches, then test / signal / start.
 *
 * Rules: docs/behaviour/cli.md#cli-1-switches, #cli-7-exit-codes.
 */
import { startupLogTarget } from "../core/error-log-conf.js";
import { startServer } from "../process/start.js";
import { Reporter, stderr } from "../process/startup-log.js";
import { confSource } from "./conf-source.js";
import { parseOptions } from "./options.js";
import { sendSignal } from "./signal.js";
import { testConfiguration } from "./test-config.js";
import { configureText, helpText, versionLine } from "./version.js";

/** Runs Postern with the given arguments (without node and the script); resolves with the exit code. */
export async function runCli(argv: string[]): Promise<number> {
  // loaded only for these commands: the mail proxy's processes never need it
  if (argv[0] === "auth-server") return (await import("../auth-server/cli.js")).runAuthServer(argv.slice(1));
  if (argv[0] === "passwd") return (await import("../auth-server/cli.js")).runPasswd(argv.slice(1));
  const o = parseOptions(argv);
  if ("error" in o) {
    stderr(`nginx: ${o.error}\n`);
    return 1;
  }
  if (o.version) {
    stderr(versionLine() + "\n");
    if (o.help) stderr(helpText());
    else if (o.configure) stderr(configureText());
    if (!o.test) return 0;
  }
  const source = confSource(o);
  // the -e log exists from here on, even if the configuration then fails
  const reporter = Reporter.open(startupLogTarget(o.errorLog ?? "stderr", source.prefix));
  if (o.test) return testConfiguration(o, source, reporter);
  if (o.signal !== undefined) return sendSignal(o, o.signal, source, reporter);
  return startServer(o.errorLog ?? "stderr", source, reporter, argv);
}

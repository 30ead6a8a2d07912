/** Entry point: argv -> cli; nothing else. */
import { runCli } from "./cli/run.js";

process.exit(await runCli(process.argv.slice(2)));

/**
 * Entry point: argv -> cli; nothing else. The inspector guard comes first
 * and the program is imported dynamically, because static imports would be
 * loaded before any statement here runs (see process/inspector.ts).
 */
import { shutInspector } from "./process/inspector.js";

shutInspector();
const { runCli } = await import("./cli/run.js");
process.exit(await runCli(process.argv.slice(2)));

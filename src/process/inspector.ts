/**
 * Keeping the Node.js inspector shut in every Postern process.
 *
 * Node opens an unauthenticated inspector on 127.0.0.1:9229 when a process
 * receives SIGUSR1 and has no handler of its own, and at start when
 * `--inspect*` is on its command line or in NODE_OPTIONS. So each entry
 * point calls `shutInspector()` before it loads anything else, children get
 * no `--inspect*`/`--debug*` switches, and no NODE_* variable reaches a
 * worker.
 *
 * Node's own switch for this, `--disable-sigusr1` (22.14+), is not usable:
 * on Node 24 it leaves SIGUSR1 blocked in the main thread, so a JavaScript
 * SIGUSR1 handler never runs, and USR1 is nginx's "reopen the logs" signal,
 * which master and workers must receive. Children never get it.
 *
 * This module must stay tiny and import nothing of Postern: entry points
 * import it statically and everything else dynamically, so the handler is
 * in place before the rest of the program is even parsed.
 */
import inspector from "node:inspector";

let closedAtStart = false;

/**
 * Installs a SIGUSR1 handler (the process's real one is added later; until
 * then USR1 is ignored rather than opening the inspector) and closes an
 * inspector the command line or NODE_OPTIONS opened.
 */
export function shutInspector(): void {
  process.on("SIGUSR1", () => {});
  if (inspector.url() !== undefined) {
    inspector.close();
    closedAtStart = true;
  }
}

/** The warning to log once the error log is open, when `shutInspector()` closed an inspector. */
export function inspectorWarning(): string | undefined {
  return closedAtStart ? "the Node.js inspector opened by --inspect or NODE_OPTIONS is closed: Postern processes never keep a debugger port open" : undefined;
}

/** Node switches that open an inspector or debugger, and the ones among them that take a separate value. */
const DEBUG_SWITCH = /^--(inspect|debug)(-|=|$)/;
const TAKES_VALUE = /^--(inspect-port|debug-port|inspect-publish-uid)$/;

/** `--disable-sigusr1` would stop USR1 (reopen logs) from reaching Postern's handler; see the top of this file. */
const BLOCKS_USR1 = "--disable-sigusr1";

/**
 * `args` without `--inspect*`/`--debug*` switches (and their separate
 * values) and without `--disable-sigusr1`.
 */
export function withoutDebugSwitches(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === BLOCKS_USR1) continue;
    if (!DEBUG_SWITCH.test(a)) out.push(a);
    else if (TAKES_VALUE.test(a)) i++;
  }
  return out;
}

/**
 * A NODE_OPTIONS value without debugging switches (for the daemon, which is
 * the master itself and keeps e.g. memory settings); undefined when nothing
 * is left.
 */
export function nodeOptionsWithoutDebug(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const kept = withoutDebugSwitches(value.split(/\s+/).filter(Boolean)).join(" ");
  return kept === "" ? undefined : kept;
}

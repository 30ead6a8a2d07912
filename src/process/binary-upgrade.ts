/**
 * nginx's binary upgrade (USR2): the running master starts a new master from
 * the current executable and hands it the listening sockets, so the new code
 * serves on the same sockets without a refused connection.
 *
 * nginx passes the sockets as inherited descriptors named in its `NGINX`
 * environment variable and finds each one's address with getsockname().
 * Here they go over an IPC channel, each with its `listen` key, the way the
 * master already hands them to its workers: Node can ask a bare descriptor
 * for its address only if it is TCP (not for `listen unix:`), and a key
 * needs no guessing. `POSTERN_INHERITED` names the sockets sent, as `NGINX`
 * does, and tells the new master it is one.
 *
 * Rules: docs/behaviour/cli.md#cli-9-binary-upgrade.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { renameSync } from "node:fs";
import { describeSystemError } from "../core/errors.js";
import { logEscape } from "../core/log.js";
import type { BoundHandle } from "./listeners.js";
import { nodeOptionsWithoutDebug, withoutDebugSwitches } from "./inspector.js";

/** Set in the new master's environment: a JSON array of the listening sockets' keys. */
export const INHERITED_ENV = "POSTERN_INHERITED";

/** nginx's NGX_OLDPID_EXT: the old master's pid file while a new binary runs. */
export function oldPidPath(pidPath: string): string {
  return `${pidPath}.oldbin`;
}

/** What nginx logs when a second USR2 arrives during an upgrade (or in the new master while the old one runs). */
export const CHANGE_BINARY_IGNORED = "the changing binary signal is ignored: you should shutdown or terminate before either old or new binary's process";

/** The sockets a new master was handed: the log text (nginx's `using inherited sockets from "5;"`) and the handles. */
export interface InheritedSockets {
  readonly text: string;
  readonly handles: Promise<Map<string, BoundHandle>>;
}

interface InheritMessage {
  readonly t: "inherit";
  readonly key: string;
}

/**
 * How long a new master waits for the sockets its environment names before
 * binding on its own. The old master sends them as soon as the new one runs;
 * on a loaded machine that can take seconds, and binding early fails with
 * "address in use" (the upgrade is then abandoned), so the wait is generous.
 * A closed channel (the old master gone) ends it at once.
 */
const RECEIVE_TIMEOUT_MS = 30_000;

/**
 * In a new master: the sockets the old master sends, or undefined when this
 * process was not started by a binary upgrade. The variable is removed from
 * the environment at once (workers and a later new binary never see it).
 * Messages are checked: only `{t:"inherit", key}` with a handle for a named
 * key is taken; anything else is closed or ignored.
 */
export function inheritedSockets(): InheritedSockets | undefined {
  const raw = process.env[INHERITED_ENV];
  if (raw === undefined) return undefined;
  delete process.env[INHERITED_ENV];
  // only an old master (our parent, over the IPC channel it opened) can hand sockets over
  if (typeof process.send !== "function") return undefined;
  let keys: string[] = [];
  try {
    const parsed: unknown = JSON.parse(raw);
    if (Array.isArray(parsed) && parsed.every((k) => typeof k === "string")) keys = parsed;
  } catch {
    // not JSON: nothing is expected, every address is bound as at a start
  }
  const text = keys.map((k) => `${logEscape(k)};`).join("");
  const expected = new Set(keys);
  const handles = new Promise<Map<string, BoundHandle>>((resolve) => {
    const got = new Map<string, BoundHandle>();
    if (expected.size === 0) {
      if (process.connected) process.disconnect();
      resolve(got);
      return;
    }
    const done = (): void => {
      clearTimeout(timer);
      process.off("message", onMessage);
      process.off("disconnect", done);
      // not from inside the message callback: Node is still reading the channel there
      setImmediate(() => {
        if (process.connected) process.disconnect();
      });
      resolve(got);
    };
    const onMessage = (m: unknown, h: BoundHandle | undefined): void => {
      const key = (m as Partial<InheritMessage> | null)?.t === "inherit" ? (m as InheritMessage).key : undefined;
      if (h === undefined) return;
      if (typeof key !== "string" || !expected.has(key) || got.has(key)) {
        h.close();
        return;
      }
      got.set(key, h);
      if (got.size === expected.size) done();
    };
    const timer = setTimeout(done, RECEIVE_TIMEOUT_MS);
    process.on("message", onMessage);
    process.once("disconnect", done);
  });
  return { text, handles };
}

/** What the old master needs to start the new one. */
export interface NewBinaryRequest {
  /** The command-line arguments (without node and the script). */
  readonly argv: readonly string[];
  readonly pidPath: string;
  readonly handles: ReadonlyMap<string, BoundHandle>;
  readonly report: (level: "notice" | "alert", message: string) => void;
}

/** The entry script: nginx's ngx_argv[0], re-run as it is on disk now (after `npm update`, the new code). */
function entryScript(): string {
  return process.argv[1] ?? "";
}

/**
 * nginx's ngx_exec_new_binary: renames the pid file to `.oldbin`, starts the
 * new master with the same node switches (never debugger ones) and
 * arguments, and sends it every listening socket. Returns undefined (the
 * pid file renamed back) when it cannot start.
 */
export function execNewBinary(r: NewBinaryRequest): ChildProcess | undefined {
  const old = oldPidPath(r.pidPath);
  const script = entryScript();
  try {
    renameSync(r.pidPath, old);
  } catch (err) {
    r.report("alert", `rename() ${r.pidPath} to ${old} failed before executing new binary process "${script}" ${describeSystemError(err)}`);
    return undefined;
  }
  const keys = [...r.handles.keys()];
  const env: NodeJS.ProcessEnv = { ...process.env, [INHERITED_ENV]: JSON.stringify(keys) };
  const nodeOptions = nodeOptionsWithoutDebug(env.NODE_OPTIONS);
  if (nodeOptions === undefined) delete env.NODE_OPTIONS;
  else env.NODE_OPTIONS = nodeOptions;
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [...withoutDebugSwitches(process.execArgv), script, ...r.argv], {
      stdio: ["inherit", "inherit", "inherit", "ipc"],
      env,
      serialization: "json",
    });
  } catch (err) {
    r.report("alert", `spawn() failed while executing new binary process "${script}" ${describeSystemError(err)}`);
    renameBack(r, "an attempt to execute");
    return undefined;
  }
  if (child.pid === undefined) {
    // the executable could not be run at all (ENOENT, EACCES): 'error' follows, never 'exit'
    child.on("error", (err) => r.report("alert", `execve() failed while executing new binary process "${script}" ${describeSystemError(err)}`));
    renameBack(r, "an attempt to execute");
    return undefined;
  }
  child.on("error", () => {});
  for (const [key, h] of r.handles) child.send({ t: "inherit", key } satisfies InheritMessage, h as never, () => {});
  return child;
}

/** nginx renames `.oldbin` back when the new binary could not start or has exited. */
export function renameBack(r: Pick<NewBinaryRequest, "pidPath" | "report">, after: "an attempt to execute" | "the exit of"): void {
  const old = oldPidPath(r.pidPath);
  try {
    renameSync(old, r.pidPath);
  } catch (err) {
    const script = entryScript();
    const what = after === "the exit of" ? `after the new binary process "${script}" exited` : `after an attempt to execute new binary process "${script}"`;
    // nginx's ngx_log_error puts the errno text last
    r.report("alert", `rename() ${old} back to ${r.pidPath} failed ${what} ${describeSystemError(err)}`);
  }
}

/**
 * True when node itself writes heap snapshots on SIGUSR2
 * (`--heapsnapshot-signal=SIGUSR2`, as the soak runs it): the signal is
 * then the operator's request for a snapshot, not for an upgrade.
 */
export function usr2TakenByNode(): boolean {
  const args = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? "").split(/\s+/)];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--heapsnapshot-signal=SIGUSR2") return true;
    if (a === "--heapsnapshot-signal" && args[i + 1] === "SIGUSR2") return true;
  }
  return false;
}

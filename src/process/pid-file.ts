/** The pid file: `PID\n`, written once the sockets are open, removed on exit. */
import { unlinkSync, writeFileSync } from "node:fs";
import { describeSystemError } from "../core/errors.js";

/** Writes the pid file; throws with nginx's open() message. */
export function writePidFile(path: string, pid = process.pid): void {
  try {
    writeFileSync(path, `${pid}\n`, { mode: 0o644 });
  } catch (err) {
    throw new Error(`open() "${path}" failed ${describeSystemError(err)}`);
  }
}

/** Removes the pid file; a failure is returned as nginx's message (logged at alert). */
export function removePidFile(path: string): string | undefined {
  try {
    unlinkSync(path);
    return undefined;
  } catch (err) {
    return `unlink() "${path}" failed ${describeSystemError(err)}`;
  }
}

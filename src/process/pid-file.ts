/** The pid file: `PID\n`, written once the sockets are open, removed on exit. */
import { closeSync, unlinkSync, writeSync } from "node:fs";
import { describeSystemError } from "../core/errors.js";
import { openRewrite } from "../core/safe-open.js";

/** Writes the pid file (no symlink or hard link followed where others can write: safe-open.ts); throws with nginx's open() message. */
export function writePidFile(path: string): void {
  try {
    const fd = openRewrite(path);
    try {
      writeSync(fd, `${process.pid}\n`);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    throw new Error(`open() "${path}" failed ${describeSystemError(err)}`, { cause: err });
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

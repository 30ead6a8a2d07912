/**
 * A file opened for appending that USR1 reopens after a rotation: the error
 * log's file sink (log.ts) and the access log's files (mail/access-log/
 * writer.ts) share it. Opened through safe-open.ts (no planted link followed
 * when root opens it); a failed reopen keeps the old file and throws
 * nginx's open() message.
 */
import { closeSync, writeSync } from "node:fs";
import { describeSystemError } from "./errors.js";
import { giveTo, openAppend } from "./safe-open.js";

export class AppendFile {
  readonly path: string;
  #fd: number;

  /** Throws the system error when the file cannot be opened. */
  constructor(path: string) {
    this.path = path;
    this.#fd = openAppend(path);
  }

  /** Writes all of `data` (a short write is continued); throws the system error. */
  write(data: Buffer): void {
    let off = 0;
    while (off < data.length) off += writeSync(this.#fd, data, off);
  }

  /** Opens the path again; on failure the old file stays in use and nginx's open() message is thrown. */
  reopen(): void {
    let fd: number;
    try {
      fd = openAppend(this.path);
    } catch (err) {
      throw new Error(`open() "${this.path}" failed ${describeSystemError(err)}`, { cause: err });
    }
    const old = this.#fd;
    this.#fd = fd;
    closeSync(old);
  }

  /** Hands the open file to the workers' user (fchown on the descriptor, never by path). */
  giveTo(uid: number): void {
    giveTo(this.#fd, uid);
  }

  close(): void {
    try {
      closeSync(this.#fd);
    } catch {
      // already closed
    }
  }
}

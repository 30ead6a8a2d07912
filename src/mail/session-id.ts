/**
 * A session's id, unique across workers and restarts: the worker's pid and
 * a random tag drawn once per process (a pid is reused after a restart,
 * the tag is not), then the connection number (`*N` in the log, unique
 * within the process). Derived, not stored, so every part of a session
 * (the backend's identity line now, the access log later) names it the
 * same way. At most 40 characters of [0-9a-z.] (Dovecot takes up to 64).
 */
import { randomBytes } from "node:crypto";

/** 8 random bytes as 13 base-36 digits, fixed for this process. */
const PROCESS_TAG = BigInt(`0x${randomBytes(8).toString("hex")}`)
  .toString(36)
  .padStart(13, "0");

/** The id of connection `connection` of this process: `<pid>.<tag>.<connection>` in base 36. */
export function sessionId(connection: number): string {
  return `${process.pid.toString(36)}.${PROCESS_TAG}.${connection.toString(36)}`;
}

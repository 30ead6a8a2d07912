/**
 * `worker_rlimit_nofile`: Node has no setrlimit(), so the master applies
 * the limit to each new worker with util-linux `prlimit --pid` (the
 * prlimit(2) call on another process). Failures are logged as nginx logs
 * its setrlimit() failure.
 */
import { execFile } from "node:child_process";

/** Sets RLIMIT_NOFILE (soft and hard) of a process; calls `onError` with nginx's message on failure. */
export function applyNofile(pid: number, limit: number, onError: (message: string) => void): void {
  execFile("prlimit", ["--pid", String(pid), `--nofile=${limit}:${limit}`], { timeout: 5000 }, (err, _out, stderr) => {
    if (!err) return;
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "(2: No such file or directory: prlimit not installed)" : `(${stderr.trim().replace(/^prlimit: /, "") || err.message})`;
    onError(`setrlimit(RLIMIT_NOFILE, ${limit}) failed ${why}`);
  });
}

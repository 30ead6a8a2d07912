/**
 * Opening log and pid files as root without being tricked.
 *
 * The master runs as root and reopens logs on USR1 (then hands them to the
 * workers' user); a worker that was taken over can replace `error.log` with
 * a symlink or a hard link to any file, or a FIFO that blocks the open. So
 * when this process is root and the file's directory is writable by some
 * other user, the file is opened with O_NOFOLLOW (a symlink fails with
 * ELOOP) and O_NONBLOCK (a FIFO cannot block), and is used only if it is a
 * regular file with a single link. Ownership is changed on the descriptor
 * (fchown), never by path.
 *
 * In a directory only root can write (e.g. /var/log/nginx owned by root),
 * symlinks are followed as before: only root could have made them, and
 * images that link error.log to /dev/stderr keep working.
 */
import { closeSync, constants, fchmodSync, fchownSync, fstatSync, ftruncateSync, openSync, statSync } from "node:fs";
import { dirname } from "node:path";

const { O_WRONLY, O_APPEND, O_CREAT, O_NOFOLLOW, O_NONBLOCK } = constants;

/** True when a user other than root may create or replace entries in `dir`. */
export function writableByOthers(dir: string): boolean {
  let st;
  try {
    st = statSync(dir);
  } catch {
    return true; // cannot tell: assume the worst
  }
  return st.uid !== 0 || ((st.mode & 0o020) !== 0 && st.gid !== 0) || (st.mode & 0o002) !== 0;
}

/** Whether opening `path` needs the guarded open: we are root and the directory is not root's alone. */
function guarded(path: string): boolean {
  return process.geteuid?.() === 0 && writableByOthers(dirname(path));
}

/** Refuses what is not a regular file with one link; closes the descriptor then. */
function checkOpened(fd: number): void {
  const st = fstatSync(fd);
  if (st.isFile() && st.nlink === 1) return;
  closeSync(fd);
  const what = st.isFile() ? `a file with ${st.nlink} links` : "not a regular file";
  throw Object.assign(new Error(`${what}, in a directory other users can write: refused`), { code: "EUNSAFE" });
}

/** Opens a log file for appending (created 0644), as nginx does, with the guard above. Returns the descriptor. */
export function openAppend(path: string): number {
  if (!guarded(path)) return openSync(path, "a", 0o644);
  const fd = openSync(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK, 0o644);
  checkOpened(fd);
  return fd;
}

/** Opens a file to be rewritten (the pid file): truncated only once the guard accepted it. */
export function openRewrite(path: string): number {
  if (!guarded(path)) return openSync(path, "w", 0o644);
  const fd = openSync(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK, 0o644);
  checkOpened(fd);
  ftruncateSync(fd, 0);
  return fd;
}

/**
 * Gives an open regular file to `uid` (nginx: the workers' user after a log
 * reopen), with owner read and write as nginx adds. On the descriptor, so a
 * path swapped meanwhile changes nothing.
 */
export function giveTo(fd: number, uid: number): void {
  const st = fstatSync(fd);
  if (!st.isFile()) return;
  if (st.uid !== uid) fchownSync(fd, uid, -1);
  if ((st.mode & 0o600) !== 0o600) fchmodSync(fd, (st.mode & 0o7777) | 0o600);
}

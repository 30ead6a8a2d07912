/**
 * Replaces a file's content atomically without trusting its directory.
 *
 * The new text goes to a temporary file beside the target (same directory,
 * so rename(2) is atomic and readers see the old file or the new one, never
 * half of one). The temporary name is random and the file is created with
 * O_CREAT|O_EXCL|O_NOFOLLOW: a name planted in advance (a symlink to
 * /etc/shadow, say) makes the open fail instead of being followed, and no
 * other user can guess the name to race us. The file is written with the
 * final mode from the start, so the secret text is never world-readable.
 */
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** Writes `text` to `path` through an exclusive, randomly named sibling and rename(2). */
export async function replaceFileAtomically(path: string, text: string, mode = 0o600): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(12).toString("hex")}.tmp`);
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  const file = await open(tmp, flags, mode);
  try {
    try {
      // the umask may have removed bits; the descriptor is ours, so this cannot be redirected
      await file.chmod(mode);
      await file.writeFile(text);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
}

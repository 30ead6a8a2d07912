/** Paths in the configuration are relative to the `-p` prefix, as in nginx. */
import { isAbsolute, join } from "node:path";

/** Resolves a path against the `-p` prefix, as nginx does for pid, logs and load_module. */
export function prefixed(prefix: string, path: string): string {
  return isAbsolute(path) ? path : join(prefix, path);
}

/** The start-up notices nginx logs about the system. */
import { readFileSync } from "node:fs";
import { release, type } from "node:os";

/** `OS: Linux 6.1.0`. */
export function osLine(): string {
  return `OS: ${type()} ${release()}`;
}

/** `getrlimit(RLIMIT_NOFILE): soft:hard`, read from /proc (Node has no getrlimit). */
export function rlimitLine(): string | undefined {
  try {
    const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    if (!m) return undefined;
    const v = (s: string): string => (s === "unlimited" ? "18446744073709551615" : s);
    return `getrlimit(RLIMIT_NOFILE): ${v(m[1]!)}:${v(m[2]!)}`;
  } catch {
    return undefined;
  }
}

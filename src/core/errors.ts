/**
 * The typed error catalogue. Messages that nginx also prints keep nginx's
 * exact wording; the `code` is ours and stable, for tests and tooling.
 */

/** Where a configuration statement came from. */
export interface SourceLocation {
  /** Path as nginx prints it, or the empty string for `-g` parameters. */
  readonly file: string;
  readonly line: number;
  /** True for directives given with `-g`: messages end in "in command line". */
  readonly commandLine?: boolean;
}

/** Renders the location suffix nginx appends to configuration errors. */
export function formatLocation(loc: SourceLocation): string {
  return loc.commandLine ? "in command line" : `in ${loc.file}:${loc.line}`;
}

/** A configuration error; `location` is appended as ` in file:line`. */
export class ConfError extends Error {
  readonly code = "ERR_CONF";
  location: SourceLocation | undefined;
  /** Set once the location question is settled: the engine adds none after. */
  settled: boolean;

  constructor(message: string, location?: SourceLocation) {
    super(message);
    this.name = "ConfError";
    this.location = location;
    this.settled = location !== undefined;
  }

  /** An error whose message carries no ` in file:line` suffix (nginx's post-parse checks). */
  static unlocated(message: string): ConfError {
    const e = new ConfError(message);
    e.settled = true;
    return e;
  }

  /** The message as nginx logs it, with the location suffix when known. */
  get text(): string {
    return this.location ? `${this.message} ${formatLocation(this.location)}` : this.message;
  }
}

/**
 * The `code` of a thrown value: one of ours (`ERR_CONF`, `ERR_BIND_FAILED`,
 * ...) or Node's (`ENOENT`, `ECONNRESET`); undefined when it has none.
 * Callers branch on this, never on an error's message text.
 */
export function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === "string" ? code : undefined;
}

/** Formats a system error as nginx does: `(2: No such file or directory)`. */
export function describeSystemError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const errno = typeof e?.errno === "number" ? Math.abs(e.errno) : 0;
  return `(${errno}: ${systemErrorText(e?.code, e?.message)})`;
}

const SYSTEM_ERROR_TEXT: Readonly<Record<string, string>> = {
  ENOENT: "No such file or directory",
  EACCES: "Permission denied",
  EISDIR: "Is a directory",
  ENOTDIR: "Not a directory",
  EADDRINUSE: "Address already in use",
  EADDRNOTAVAIL: "Cannot assign requested address",
  ECONNREFUSED: "Connection refused",
  ECONNRESET: "Connection reset by peer",
  ETIMEDOUT: "Connection timed out",
  EPIPE: "Broken pipe",
  ESRCH: "No such process",
  EPERM: "Operation not permitted",
  EHOSTUNREACH: "No route to host",
  ENETUNREACH: "Network is unreachable",
  EMFILE: "Too many open files",
  ENFILE: "Too many open files in system",
  ELOOP: "Too many levels of symbolic links",
  ENXIO: "No such device or address",
  ENOSPC: "No space left on device",
  EROFS: "Read-only file system",
  EDQUOT: "Disk quota exceeded",
};

/** strerror() text for a Node error code, as glibc words it. */
export function systemErrorText(code: string | undefined, fallback = "Unknown error"): string {
  return (code && SYSTEM_ERROR_TEXT[code]) || fallback;
}

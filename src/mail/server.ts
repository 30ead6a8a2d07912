/**
 * A configured mail server after merging: its merged directives, protocol
 * and listen addresses. Modules keep their own precomputed state for a
 * server in their own WeakMaps, filled in their `finalize` hooks.
 */
import type { ConfModule, ServerConf } from "../conf/directive.js";
import type { ListenSpec } from "./listen.js";
import type { MailProtocolName } from "./types.js";

/** One `server {}` block of `mail {}`, merged. */
export interface MailServer {
  readonly conf: ServerConf;
  readonly protocol: MailProtocolName;
  readonly listens: readonly ListenSpec[];
  /** Position in the mail block, for stable ordering. */
  readonly index: number;
}

/** What a finalize step may use besides the server. */
export interface FinalizeContext {
  /** Logs a `[warn]` line without location, as nginx's merge-time warnings. */
  warn: (message: string) => void;
}

/** A mail module: directives plus the per-server check/precompute step. */
export interface MailModule extends ConfModule {
  /**
   * Runs once per server after the `mail {}` block is parsed, in nginx's
   * module order; throws ConfError (usually `ConfError.unlocated`) for
   * checks that span directives, and precomputes wire strings.
   */
  finalize?(server: MailServer, cx: FinalizeContext): void;
}

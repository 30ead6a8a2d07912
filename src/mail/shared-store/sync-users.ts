/**
 * The zones that may say `sync`, as their modules report them, for the
 * check that a `sync` zone has a `shared_store` (module.ts). A file of its
 * own, importing nothing of mail/ at run time: the modules that register
 * (limits, auth_http, ssl) must not import block.js either (a test that
 * loads one of them first would run mail-modules.ts before that module is
 * initialised), so they are handed the mail block instead of looking it up.
 */
import type { MailConf } from "../block.js";
import type { SourceLocation } from "../../core/errors.js";

/** A module's `sync` zones in a configuration: the directive and zone name, for the error. */
export type SyncUser = (mail: MailConf) => readonly { directive: string; zone: string; location?: SourceLocation }[];

export const syncUsers: SyncUser[] = [];

/** Modules whose zones may say `sync` register here, so the check sees them. */
export function registerSyncUser(user: SyncUser): void {
  syncUsers.push(user);
}

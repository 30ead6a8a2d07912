/**
 * Every configuration module, in nginx's order: the core (main and events
 * directives), the `mail` block, then the mail modules. The order decides
 * which table is searched first and the order of docs/directives.md.
 */
import type { ConfModule } from "./conf/directive.js";
import { coreModule } from "./core/core-module.js";
import { mailBlockModule } from "./mail/block.js";
import { MAIL_MODULES } from "./mail/mail-modules.js";

/** The ordered list of all modules. */
export function confModules(): readonly ConfModule[] {
  return [coreModule, mailBlockModule, ...MAIL_MODULES];
}

/**
 * Every configuration module, in the order nginx would list them. The
 * order matters only for `-T`-style documentation output and for which
 * table is searched first.
 */
import type { ConfModule } from "./conf/directive.js";
import { coreModule } from "./core/core-module.js";
// INTEGRATOR: replace the provisional module with the real mail modules
// (core, auth_http, proxy, realip, ssl, imap, pop3, smtp), appended below.
import { provisionalMailModule } from "./mail/runtime.js";

/** The ordered list of all modules. */
export function confModules(): readonly ConfModule[] {
  return [
    coreModule,
    // --- mail modules (appended by the integrator) ---
    provisionalMailModule,
  ];
}

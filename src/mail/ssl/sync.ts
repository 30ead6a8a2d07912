/**
 * `ssl_session_cache shared:NAME:SIZE sync` needs a shared_store: the
 * configuration check (mail/shared-store/module.ts) learns of the caches
 * that say `sync` from here. Rule: docs/shared-tls.md.
 */
import { registerSyncUser } from "../shared-store/module.js";
import { mailDirective } from "../block.js";
import { sslSessionCache } from "./module.js";

registerSyncUser((conf) => {
  const servers = conf.main.get(mailDirective)?.servers ?? [];
  const out: { directive: string; zone: string }[] = [];
  for (const server of servers) {
    const shared = server.conf.get(sslSessionCache).shared;
    if (shared?.sync) out.push({ directive: "ssl_session_cache", zone: shared.name });
  }
  return out;
});

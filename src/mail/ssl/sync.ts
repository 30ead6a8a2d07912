/**
 * `ssl_session_cache shared:NAME:SIZE sync` needs a shared_store: the
 * configuration check (mail/shared-store/module.ts) learns of the caches
 * that say `sync` from here, and the session lookups their timeout.
 * Imported by process/load-configuration.ts, after the mail modules. Rule: docs/shared-tls.md.
 */
import { DEFAULT_STORE_TIMEOUT_MS, registerSyncUser, sharedStore } from "../shared-store/module.js";
import { sslSessionCache } from "./module.js";
import { setStoreTimeoutLookup } from "./sessions.js";

// a handshake waits for the store's session lookup at most the store's timeout (plus the IPC round trip)
setStoreTimeoutLookup((server) => server.get(sharedStore)?.timeoutMs ?? DEFAULT_STORE_TIMEOUT_MS);

registerSyncUser((mail) => {
  const caches = [mail.level.own(sslSessionCache), ...mail.servers.map((s) => s.conf.get(sslSessionCache))];
  const out: { directive: string; zone: string }[] = [];
  for (const cache of caches) if (cache?.shared?.sync) out.push({ directive: "ssl_session_cache", zone: cache.shared.name });
  return out;
});

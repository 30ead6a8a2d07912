/**
 * The node's connection to the shared store across reloads: made when a
 * configuration first names `shared_store`, kept when a reload names the
 * same one (no reconnect, no lost state), replaced when it changes, closed
 * when it goes. A failed reload never gets here (the old cycle keeps its
 * store).
 */
import { SharedStoreClient, type StoreEvents, type StoreLog } from "../event/shared-store/client.js";
import { setSharedStoreClient, sharedStoreClient } from "../event/shared-store/current.js";
import { type SharedStoreSettings, sameStore } from "../event/shared-store/settings.js";
import { setTicketScheduleLog } from "../event/tls-ticket-schedule.js";

/** Applies a cycle's `shared_store` (undefined: none). */
export function configureSharedStore(settings: SharedStoreSettings | undefined, log: StoreLog, events?: StoreEvents): void {
  // the shared ticket key schedule reports its fallbacks where the store does
  setTicketScheduleLog(log);
  const old = sharedStoreClient();
  if (old && settings && sameStore(old.settings, settings)) return;
  setSharedStoreClient(settings ? new SharedStoreClient(settings, log, events) : undefined);
  if (old) void old.close();
}

/** Closes the store at exit. */
export async function closeSharedStore(): Promise<void> {
  const old = sharedStoreClient();
  setSharedStoreClient(undefined);
  await old?.close();
}

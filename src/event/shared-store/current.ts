/**
 * The shared store of this process, if the configuration names one. Only
 * the process that holds the node's state has one: the master (its hubs
 * answer the workers), or a single-process server. Users look it up at
 * each use, so a reload that changes or removes the store takes effect at
 * once, and a zone whose configuration says `sync` simply finds none in a
 * process that holds no state.
 */
import type { SharedStoreClient } from "./client.js";

let current: SharedStoreClient | undefined;

/** The store, or undefined (none configured, or not this process's job). */
export function sharedStoreClient(): SharedStoreClient | undefined {
  return current;
}

/** Installs (or removes) the store; the caller closes the previous one. */
export function setSharedStoreClient(client: SharedStoreClient | undefined): void {
  current = client;
}

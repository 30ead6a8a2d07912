/**
 * auth_http_cache entries of `sync` zones in the shared store. The node's
 * memory cache stays in front (auth-answer-ipc.ts): the store is asked on
 * a local miss only, and a set writes both.
 *
 * The entry is already sealed by the cache (a key derived from the
 * request: src/mail/auth-http/cache.ts); it is sealed again here with the
 * store's key, bound to its store name, with its expiry inside the seal:
 * a store writer can neither plant an answer nor make an old one live
 * longer (an entry older than its sealed expiry is a miss, whatever the
 * store's TTL says). Rules: docs/shared-store.md#auth-cache.
 */
import { createHmac } from "node:crypto";
import { ReplyError } from "ioredis";
import type { SharedStoreClient } from "./client.js";

/** The largest entry accepted from the store: the IPC's own limit on a sealed answer. */
export const MAX_ANSWER_BYTES = 6144;
const EXPIRY_BYTES = 8;

function storeKey(client: SharedStoreClient, zone: string, id: string): string {
  return client.seal.key("auth-answer", zone, id);
}

/**
 * The cache's key (every id and answer seal derives from it) for `sync`
 * zones: derived from the store's secret, so every node finds what another
 * stored. undefined without a store.
 */
export function sharedAnswerSecret(client: SharedStoreClient | undefined): Buffer | undefined {
  return client ? createHmac("sha256", client.settings.secret).update("postern auth answer cache key").digest() : undefined;
}

/** The entry and its remaining lifetime, or undefined (miss, store away, or anything that does not open). */
export async function fetchAnswer(
  client: SharedStoreClient,
  zone: string,
  id: string,
  now = Date.now(),
): Promise<{ value: Buffer; ttlMs: number } | undefined> {
  const key = storeKey(client, zone, id);
  // a key of another type (a writer's garbage) is a miss, not a failing store
  const sealed = await client.run("auth_cache", (r) =>
    r.getBuffer(key).catch((err: unknown) => {
      if (err instanceof ReplyError) return null;
      throw err;
    }),
  );
  if (!sealed) return undefined;
  const plain = client.seal.open("auth-answer", key, sealed, EXPIRY_BYTES + MAX_ANSWER_BYTES);
  if (!plain || plain.length <= EXPIRY_BYTES) return undefined;
  const ttlMs = Number(plain.readBigUInt64BE(0)) - now;
  if (ttlMs <= 0) return undefined;
  return { value: plain.subarray(EXPIRY_BYTES), ttlMs };
}

/** Writes the entry for `ttlMs` (fire and forget). */
export function storeAnswer(client: SharedStoreClient, zone: string, id: string, value: Buffer, ttlMs: number, now = Date.now()): void {
  if (value.length > MAX_ANSWER_BYTES || ttlMs <= 0) return;
  const key = storeKey(client, zone, id);
  const expiry = Buffer.alloc(EXPIRY_BYTES);
  expiry.writeBigUInt64BE(BigInt(Math.floor(now + ttlMs)));
  const sealed = client.seal.seal("auth-answer", key, Buffer.concat([expiry, value]));
  client.fire("auth_cache", (r) => r.set(key, sealed, "PX", Math.ceil(ttlMs)));
}

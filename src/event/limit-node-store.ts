/**
 * The limit store of one node: its MemoryLimitStore (the node's own
 * counts, always kept: they are also the fallback) and, for zones marked
 * `sync`, the shared store (shared-store/limits.ts) adding up the other
 * nodes' counts. The master (limit-ipc.ts) and a single-process server
 * use it.
 *
 * Fallback: when the shared store does not answer within its timeout (or
 * is down), the node-local count decides alone, so a client is refused
 * only by a limit its node can see; the client logs the state change and
 * counts the fallback. Rules: docs/shared-store.md#limits.
 */
import { createHmac, randomBytes } from "node:crypto";
import { type AcquireResult, type ConnClaim, type FailZoneRef, type LimitStore, MemoryLimitStore } from "./limit-store.js";
import { sharedStoreClient } from "./shared-store/current.js";
import { type HeldCount, SharedLimits } from "./shared-store/limits.js";

export class NodeLimitStore implements LimitStore {
  readonly local = new MemoryLimitStore();
  /** The sync zones seen, by name (the name alone identifies a zone across nodes). */
  readonly #syncZones = new Map<string, ConnClaim["zone"]>();
  readonly shared = new SharedLimits(
    sharedStoreClient,
    () => this.#held(),
    (zone, key) => {
      const ref = this.#syncZones.get(zone);
      return ref ? this.local.connZone(ref).count(key) : 0;
    },
  );
  /** Keys logins are hashed with when no store is configured: one per master. */
  readonly #randomLoginSecret = randomBytes(32);

  *#held(): Iterable<HeldCount> {
    for (const ref of this.#syncZones.values()) {
      for (const [key, count] of this.local.connZone(ref).entries()) yield { zone: ref.name, key, count };
    }
  }

  /**
   * The key failure zones hash logins with. With a shared store it is
   * derived from the store's secret, so every node hashes a login alike
   * (a sync zone's counts meet in the store); else a random one per master.
   */
  loginSecret(): Buffer {
    const client = sharedStoreClient();
    if (!client) return this.#randomLoginSecret;
    return createHmac("sha256", client.settings.secret).update("postern limit login key").digest();
  }

  /** Local first (synchronous, so the master records what a worker holds at once), then the store for sync claims. */
  acquireLocal(claims: readonly ConnClaim[]): AcquireResult {
    for (const c of claims) if (c.zone.sync) this.#syncZones.set(c.zone.name, c.zone);
    return this.local.acquireNow(claims);
  }

  /**
   * The store's word on claims the node took locally: ok, or the first
   * sync claim another node's connections put over its limit (the local
   * counts are then given back, as a refused acquire takes none).
   */
  async confirm(claims: readonly ConnClaim[]): Promise<AcquireResult> {
    const synced = claims.map((c, index) => ({ c, index })).filter((x) => x.c.zone.sync);
    if (synced.length === 0) return { ok: true };
    const answers = await Promise.all(synced.map(({ c }) => this.shared.acquire(c.zone.name, c.key, this.local.connZone(c.zone).count(c.key), c.limit)));
    const refused = answers.indexOf("limit");
    if (refused < 0) return { ok: true };
    this.local.release(claims);
    // the store holds the counts of the claims it accepted: tell it they are back
    for (const { c } of synced) this.shared.publish(c.zone.name, c.key);
    return { ok: false, index: synced[refused]!.index, reason: "limit" };
  }

  async acquire(claims: readonly ConnClaim[]): Promise<AcquireResult> {
    const local = this.acquireLocal(claims);
    if (!local.ok) return local;
    return this.confirm(claims);
  }

  release(claims: readonly ConnClaim[]): void {
    this.local.release(claims);
    for (const c of claims) if (c.zone.sync) this.shared.publish(c.zone.name, c.key);
  }

  async failures(zone: FailZoneRef, keys: readonly string[]): Promise<number> {
    const local = this.local.failuresNow(zone, keys);
    if (!zone.sync) return local;
    const shared = await this.shared.failures(zone.name, keys);
    return Math.max(local, shared ?? 0);
  }

  async recordFailure(zone: FailZoneRef, keys: readonly string[]): Promise<void> {
    this.local.recordFailureNow(zone, keys);
    if (zone.sync) await this.shared.recordFailure(zone.name, keys, zone.windowMs);
  }
}

/**
 * A server's contexts for ticket keys from the shared store. Node's TLS
 * holds one ticket key per SecureContext, and OpenSSL opens a ticket only
 * with the key its 16-byte name names; so the server keeps one context per
 * known key (all built from the same options: certificates, session id
 * context, protocols...) and the handshake runs in the context whose key
 * made the client's ticket (its name is read from the ClientHello before
 * OpenSSL sees it), else in the current key's.
 *
 * Migration off the previous key: a TLS 1.3 client resuming in the
 * previous key's context gets its new tickets under that key again, so
 * without help every such client would fall into a full handshake at the
 * moment the key retires. Instead, during the slot after the rotation, a
 * ticket of the previous key is sent to the current key's context (full
 * handshake, new ticket under the current key) with a probability that
 * rises from 0 to 1 across the slot: the same one full handshake per client
 * and period that Node's one key per context costs, spread evenly instead
 * of all at once. docs/shared-tls.md.
 */
import type tls from "node:tls";
import type { TicketRing } from "../../event/tls-ticket-schedule.js";

interface KeyContext {
  readonly slot: number;
  readonly context: tls.SecureContext;
}

export class TicketContexts {
  readonly #make: (key: Buffer) => tls.SecureContext;
  /** By hex key name. */
  #byName = new Map<string, KeyContext>();
  #current: tls.SecureContext;
  #currentSlot = Number.NaN;
  #periodMs = 1;
  /** Held here: the subscription only holds it weakly, so contexts of a replaced configuration go. */
  readonly listener = (ring: TicketRing): void => this.update(ring);

  /** `initial` serves until the first ring arrives (its own random key). */
  constructor(initial: tls.SecureContext, make: (key: Buffer) => tls.SecureContext) {
    this.#current = initial;
    this.#make = make;
  }

  /** Builds contexts for new keys, drops those of retired keys. */
  update(ring: TicketRing): void {
    const next = new Map<string, KeyContext>();
    for (const [slot, key] of ring.keys) {
      const name = key.subarray(0, 16).toString("hex");
      const known = this.#byName.get(name);
      next.set(name, known && known.slot === slot ? known : { slot, context: this.#make(key) });
    }
    const current = [...next.values()].find((k) => k.slot === ring.current);
    if (!current) return;
    this.#byName = next;
    this.#current = current.context;
    this.#currentSlot = ring.current;
    this.#periodMs = ring.periodMs;
  }

  /** The context for a ClientHello whose ticket has this key name (undefined: no ticket). */
  select(keyName: Buffer | undefined, now: number = Date.now(), random: () => number = Math.random): tls.SecureContext {
    if (!keyName) return this.#current;
    const k = this.#byName.get(keyName.toString("hex"));
    if (!k || k.slot >= this.#currentSlot) return k ? k.context : this.#current;
    // the previous key: resumed with a probability that falls across the slot
    const elapsed = (now - this.#currentSlot * this.#periodMs) / this.#periodMs;
    return random() < elapsed ? this.#current : k.context;
  }

  /** Key names known, for tests and debug logs. */
  get slots(): number[] {
    return [...this.#byName.values()].map((k) => k.slot).sort((a, b) => a - b);
  }
}

/**
 * Sealing for everything Postern writes to the shared store. The store is
 * another machine's memory: whoever reads it must learn no session secret,
 * ticket key, login or address, and whoever writes it must not be able to
 * plant a TLS session (a forged one could carry a verified client
 * certificate) or a limit count under another key. So:
 *
 *  - names are HMAC-SHA256 of their parts under a key derived from the
 *    shared secret, per purpose: the store sees opaque names only;
 *  - values are AES-256-GCM under a per-purpose key, with the full store
 *    key as additional data, so a value moved to another name, purpose or
 *    cluster (prefix) fails to open;
 *  - open() never throws: a value that is malformed, oversized or forged
 *    is `undefined`, and the caller treats it as a miss.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from "node:crypto";

/** What a sealed value is for; each has its own keys. */
export type SealPurpose = "tls-session" | "ticket-keys" | "limit" | "auth-answer";

const IV_BYTES = 12;
const TAG_BYTES = 16;
/** The shortest secret_file accepted (the module says so in its error). */
export const MIN_SECRET_BYTES = 32;

interface PurposeKeys {
  readonly name: Buffer;
  readonly value: Buffer;
}

function derive(secret: Buffer, label: string): Buffer {
  return Buffer.from(hkdfSync("sha256", secret, "postern shared store", label, 32));
}

export class StoreSeal {
  readonly #keys = new Map<SealPurpose, PurposeKeys>();
  readonly #secret: Buffer;
  readonly #prefix: string;

  constructor(secret: Buffer, prefix: string) {
    this.#secret = secret;
    this.#prefix = prefix;
  }

  #of(purpose: SealPurpose): PurposeKeys {
    let k = this.#keys.get(purpose);
    if (!k) this.#keys.set(purpose, (k = { name: derive(this.#secret, `${purpose} name`), value: derive(this.#secret, `${purpose} value`) }));
    return k;
  }

  /**
   * The store key for `parts`: `<prefix><purpose>:<hmac>`. Parts are
   * length-prefixed, so no choice of parts collides with another.
   */
  key(purpose: SealPurpose, ...parts: readonly (string | Buffer)[]): string {
    const mac = createHmac("sha256", this.#of(purpose).name);
    for (const p of parts) {
      const b = typeof p === "string" ? Buffer.from(p, "utf8") : p;
      const len = Buffer.alloc(4);
      len.writeUInt32BE(b.length);
      mac.update(len).update(b);
    }
    return `${this.#prefix}${purpose}:${mac.digest("base64url")}`;
  }

  /** iv | ciphertext | tag, bound to `storeKey`. */
  seal(purpose: SealPurpose, storeKey: string, plain: Buffer): Buffer {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.#of(purpose).value, iv);
    cipher.setAAD(Buffer.from(storeKey, "utf8"));
    return Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
  }

  /** The plain value, or undefined when `sealed` is not a value this cluster sealed for `storeKey` (or is longer than `maxPlain`). */
  open(purpose: SealPurpose, storeKey: string, sealed: unknown, maxPlain: number): Buffer | undefined {
    if (!Buffer.isBuffer(sealed)) return undefined;
    if (sealed.length < IV_BYTES + TAG_BYTES || sealed.length > IV_BYTES + TAG_BYTES + maxPlain) return undefined;
    try {
      const decipher = createDecipheriv("aes-256-gcm", this.#of(purpose).value, sealed.subarray(0, IV_BYTES));
      decipher.setAAD(Buffer.from(storeKey, "utf8"));
      decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
      return Buffer.concat([decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES)), decipher.final()]);
    } catch {
      return undefined;
    }
  }
}

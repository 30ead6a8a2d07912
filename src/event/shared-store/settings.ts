/**
 * What `shared_store` configures (src/mail/shared-store/module.ts parses
 * it): one Redis (or Valkey) server that the nodes of a cluster share for
 * TLS sessions, ticket keys, limits and the auth cache. Rules:
 * docs/shared-store.md.
 */

/** TLS to the store (`shared_store_ssl*`), files already read. */
export interface StoreTls {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
  /** The name checked in the store's certificate (and sent as SNI); the host when not set. */
  readonly servername?: string;
  readonly verify: boolean;
}

/** One `shared_store redis ...` line. */
export interface SharedStoreSettings {
  /** TCP address, or a Unix socket path. */
  readonly address: { readonly host: string; readonly port: number } | { readonly path: string };
  /** Every key Postern writes starts with this (several clusters may share one Redis). */
  readonly prefix: string;
  /** The most any login or handshake waits on the store before it falls back to node-local state. */
  readonly timeoutMs: number;
  readonly db: number;
  readonly username?: string;
  /** From password_file: never written in the configuration itself, never logged. */
  readonly password?: string;
  /**
   * From secret_file, the same on every node: seals every value written
   * (AES-256-GCM) and keys every name (HMAC), so the store never holds a
   * session secret, a ticket key or a client address in clear, and a value
   * it returns is used only if the seal holds.
   */
  readonly secret: Buffer;
  readonly tls?: StoreTls;
  /** How logs name the store: `redis 127.0.0.1:6379`. Never holds a secret. */
  readonly text: string;
}

/** True when two settings describe the same connection (a reload keeps the client then). */
export function sameStore(a: SharedStoreSettings, b: SharedStoreSettings): boolean {
  const tlsKey = (t: StoreTls | undefined): string =>
    t ? [t.ca?.toString("base64"), t.cert?.toString("base64"), t.key?.toString("base64"), t.servername, t.verify].join("|") : "";
  return (
    JSON.stringify(a.address) === JSON.stringify(b.address) &&
    a.prefix === b.prefix &&
    a.timeoutMs === b.timeoutMs &&
    a.db === b.db &&
    a.username === b.username &&
    a.password === b.password &&
    a.secret.equals(b.secret) &&
    tlsKey(a.tls) === tlsKey(b.tls)
  );
}

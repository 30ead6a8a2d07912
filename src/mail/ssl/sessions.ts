/**
 * Session resumption for one TLS server: ssl_session_cache (none, off,
 * builtin, shared), ssl_session_tickets, ssl_session_ticket_key and
 * ssl_session_timeout, mapped onto what Node's tls offers.
 *
 * Rule: docs/behaviour/tls.md#tls-5-sessions-and-tickets; differences from nginx:
 * docs/compat-tls.md.
 */
import { createHash } from "node:crypto";
import { readConfFile } from "../../core/conf-inputs.js";
import tls from "node:tls";
import { constants } from "node:crypto";
import { ConfError, describeSystemError } from "../../core/errors.js";
import type { ServerConf } from "../../conf/directive.js";
import { MemorySessionStore, type SharedSessionStore } from "../../event/tls-session-store.js";
import { sharedStore, subscribeTicketKey } from "../../event/tls-session-ipc.js";
import { isTls13Session, sessionIdOf } from "../../event/tls-session-der.js";

export { isTls13Session, sessionIdOf };
import { sslSessionCache, sslSessionTicketKey, sslSessionTickets, sslSessionTimeout } from "./module.js";
import { remoteLookup, remoteRemove, remoteSave, subscribeTicketRing } from "../../event/tls-store-ipc.js";
import { TicketContexts } from "./ticket-ring.js";

/** What the secure context needs from the session settings. */
export interface TicketSettings {
  /** SSL_OP_NO_TICKET when tickets are off. */
  readonly secureOptions: number;
  /** A key in Node's 48-byte layout, from the first ssl_session_ticket_key. */
  readonly ticketKeys?: Buffer;
  /** Keys come from the shared cache's owner (master) and rotate. */
  readonly autoKey?: { readonly cache: string; readonly size: number };
  /** `shared:NAME:SIZE sync`: keys come from the shared store's schedule, one context per key (docs/shared-tls.md). */
  readonly storeKeys?: { readonly cache: string; readonly periodSec: number };
  readonly sessionTimeout: number;
}

/** Per-server resumption state used at accept time. */
export interface SessionResumption {
  /** A never-listening tls.Server carrying the newSession/resumeSession handlers (pass as `server` to TLSSocket). */
  readonly server: tls.Server | undefined;
  /** Removes the socket's session from the caches (failed client certificate). */
  forget(socket: tls.TLSSocket): void;
  /** Present for ticket keys from the shared store: the context per key. */
  readonly ticketContexts?: TicketContexts;
  /**
   * A ClientHello with this session id will negotiate TLS 1.3: its id is
   * random and never in any cache, so the shared store is not asked.
   */
  expectTls13?(id: Buffer): void;
}

/**
 * Converts an nginx 48-byte key file (name | AES key | HMAC key) to Node's
 * layout (name | HMAC key | AES key).
 */
export function nodeTicketKey(file: Buffer): Buffer {
  return Buffer.concat([file.subarray(0, 16), file.subarray(32, 48), file.subarray(16, 32)]);
}

/**
 * Node has no AES-256 tickets: an 80-byte file becomes a 48-byte key derived
 * from it (same file, same key, so Postern servers sharing it agree).
 */
export function derivedTicketKey(file: Buffer): Buffer {
  const hmac = createHash("sha256").update("postern ticket hmac\0").update(file).digest().subarray(0, 16);
  const aes = createHash("sha256").update("postern ticket aes\0").update(file).digest().subarray(0, 16);
  return Buffer.concat([file.subarray(0, 16), hmac, aes]);
}

/** Reads the ticket key files and decides the ticket options. */
export function ticketSettings(server: ServerConf, warn: (message: string) => void): TicketSettings {
  const sessionTimeout = server.get(sslSessionTimeout);
  const tickets = server.get(sslSessionTickets);
  const files = server.get(sslSessionTicketKey);
  const cache = server.get(sslSessionCache);
  const location = server.locationOf(sslSessionTicketKey);
  if (!tickets) return { secureOptions: constants.SSL_OP_NO_TICKET, sessionTimeout };
  let first: Buffer | undefined;
  for (const [i, ref] of files.entries()) {
    let data: Buffer;
    try {
      data = readConfFile(ref.path);
    } catch (err) {
      throw new ConfError(`open() "${ref.path}" failed ${describeSystemError(err)}`, location);
    }
    if (data.length !== 48 && data.length !== 80) throw new ConfError(`"${ref.path}" must be 48 or 80 bytes`, location);
    if (i === 0) {
      if (data.length === 80)
        warn(`"${ref.path}" is an 80-byte ticket key: Node.js has no AES-256 tickets, a derived AES-128 key is used (not interoperable with nginx)`);
      first = data.length === 48 ? nodeTicketKey(data) : derivedTicketKey(data);
    } else {
      warn(`"${ref.path}" is not used: Node.js decrypts tickets with the first ssl_session_ticket_key only`);
    }
  }
  if (first) return { secureOptions: 0, ticketKeys: first, sessionTimeout };
  if (cache.shared?.sync) return { secureOptions: 0, storeKeys: { cache: cache.shared.name, periodSec: sessionTimeout }, sessionTimeout };
  if (cache.shared) return { secureOptions: 0, autoKey: { cache: cache.shared.name, size: cache.shared.size }, sessionTimeout };
  return { secureOptions: 0, sessionTimeout };
}

/** Applies an auto-generated ticket key to a context (Node keeps it on the native context). */
function setTicketKeys(context: tls.SecureContext, key: Buffer): void {
  (context.context as { setTicketKeys(key: Buffer): void }).setTicketKeys(key);
}

/** What resumption through the shared store needs from the server. */
export interface StoreBinding {
  /** The server's session id context: its TLS policy, part of every store key. */
  readonly sessionIdContext: string;
  /** A context like the server's with another ticket key. */
  readonly contextWithKey: (key: Buffer) => tls.SecureContext;
}

/**
 * The shared store's timeout for a server (sync.ts installs the lookup:
 * importing the shared_store module here would close an import cycle).
 */
let storeTimeoutOf: (server: ServerConf) => number = () => 100;

export function setStoreTimeoutLookup(lookup: (server: ServerConf) => number): void {
  storeTimeoutOf = lookup;
}

/** Ids of ClientHellos that go to TLS 1.3, at most this many remembered (a forgotten one costs one needless lookup). */
const MAX_TLS13_IDS = 4096;

/**
 * Installs the cache handlers and auto ticket keys for one server.
 * builtin and shared work as two layers, builtin first, as in nginx; a
 * `sync` cache has the shared store behind them, asked on a miss.
 */
export function setupResumption(server: ServerConf, context: tls.SecureContext, tickets: TicketSettings, store?: StoreBinding): SessionResumption {
  const cache = server.get(sslSessionCache);
  if (tickets.autoKey) {
    subscribeTicketKey(tickets.autoKey.cache, tickets.autoKey.size, Math.max(tickets.sessionTimeout, 3600), (k) => setTicketKeys(context, k));
  }
  let ticketContexts: TicketContexts | undefined;
  if (tickets.storeKeys && store) {
    ticketContexts = new TicketContexts(context, store.contextWithKey);
    subscribeTicketRing(tickets.storeKeys.cache, tickets.storeKeys.periodSec, ticketContexts.listener);
  }
  const layers: SharedSessionStore[] = [];
  // builtin:0 is OpenSSL's "no limit".
  const builtin = cache.mode === "builtin" ? new MemorySessionStore(cache.builtinSize || Infinity) : undefined;
  if (builtin) layers.push(builtin);
  if (cache.shared) layers.push(sharedStore(cache.shared.name, cache.shared.size));
  if (layers.length === 0) return { server: undefined, forget: () => undefined };

  const ttl = tickets.sessionTimeout;
  const sync = cache.shared?.sync && store ? { cache: cache.shared.name, context: store.sessionIdContext } : undefined;
  const timeoutMs = storeTimeoutOf(server);
  const tls13Ids = new Set<string>();
  // Never listens: it only carries the session events that TLSSocket emits on its `server`.
  const holder = new tls.Server({ secureContext: context });
  holder.on("newSession", (id: Buffer, data: Buffer, done: () => void) => {
    if (!isTls13Session(data)) {
      for (const l of layers) l.set(Buffer.from(id), Buffer.from(data), ttl);
      if (sync) remoteSave(sync.cache, sync.context, Buffer.from(id), Buffer.from(data), ttl);
    }
    done();
  });
  holder.on("resumeSession", (id: Buffer, done: (err: Error | null, data?: Buffer | null) => void) => {
    for (const l of layers) {
      const data = l.lookup(id);
      if (data) return done(null, data);
    }
    if (!sync || tls13Ids.delete(id.toString("hex"))) return done(null, null);
    // Node lets the handshake wait for the answer; it comes within the store's timeout
    void remoteLookup(sync.cache, sync.context, Buffer.from(id), timeoutMs).then((data) => {
      // kept in front for the next lookup on this node
      if (data) for (const l of layers) l.set(Buffer.from(id), data, ttl);
      done(null, data ?? null);
    });
  });
  return {
    server: holder,
    forget(socket) {
      const der = socket.getSession();
      const id = der ? sessionIdOf(der) : undefined;
      if (!id || id.length === 0) return;
      for (const l of layers) l.delete(id);
      if (sync) remoteRemove(sync.cache, sync.context, id);
    },
    ...(ticketContexts ? { ticketContexts } : {}),
    ...(sync
      ? {
          expectTls13(id: Buffer) {
            if (tls13Ids.size >= MAX_TLS13_IDS) tls13Ids.clear();
            tls13Ids.add(id.toString("hex"));
          },
        }
      : {}),
  };
}

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
import { sslSessionCache, sslSessionTicketKey, sslSessionTickets, sslSessionTimeout } from "./module.js";

/** What the secure context needs from the session settings. */
export interface TicketSettings {
  /** SSL_OP_NO_TICKET when tickets are off. */
  readonly secureOptions: number;
  /** A key in Node's 48-byte layout, from the first ssl_session_ticket_key. */
  readonly ticketKeys?: Buffer;
  /** Keys come from the shared cache's owner (master) and rotate. */
  readonly autoKey?: { readonly cache: string; readonly size: number };
  readonly sessionTimeout: number;
}

/** Per-server resumption state used at accept time. */
export interface SessionResumption {
  /** A never-listening tls.Server carrying the newSession/resumeSession handlers (pass as `server` to TLSSocket). */
  readonly server: tls.Server | undefined;
  /** Removes the socket's session from the caches (failed client certificate). */
  forget(socket: tls.TLSSocket): void;
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
  if (cache.shared) return { secureOptions: 0, autoKey: { cache: cache.shared.name, size: cache.shared.size }, sessionTimeout };
  return { secureOptions: 0, sessionTimeout };
}

/**
 * The first four fields of Node's serialized SSL_SESSION (ASN.1 SEQUENCE:
 * version, ssl_version, cipher, session_id), as raw contents.
 */
function sessionFields(der: Buffer): Buffer[] | undefined {
  let pos = 0;
  const header = (): { tag: number; len: number } | undefined => {
    if (pos + 2 > der.length) return undefined;
    const tag = der[pos++]!;
    let len = der[pos++]!;
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n > 4 || pos + n > der.length) return undefined;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + der[pos++]!;
    }
    return { tag, len };
  };
  if (header()?.tag !== 0x30) return undefined;
  const fields: Buffer[] = [];
  for (let field = 0; field < 4; field++) {
    const h = header();
    if (!h || pos + h.len > der.length) return undefined;
    if ((field < 2 && h.tag !== 0x02) || (field >= 2 && h.tag !== 0x04)) return undefined;
    fields.push(der.subarray(pos, pos + h.len));
    pos += h.len;
  }
  return fields;
}

/** The session id inside Node's serialized SSL_SESSION. */
export function sessionIdOf(der: Buffer): Buffer | undefined {
  return sessionFields(der)?.[3];
}

/**
 * True for a TLS 1.3 session. Those resume only through a ticket (PSK);
 * the session id a TLS 1.3 ClientHello carries is random (RFC 8446 4.1.2),
 * so storing them in an id-keyed cache would only cost memory and IPC.
 */
export function isTls13Session(der: Buffer): boolean {
  const version = sessionFields(der)?.[1];
  return version !== undefined && version.length === 2 && version.readUInt16BE(0) === 0x0304;
}

/** Applies an auto-generated ticket key to a context (Node keeps it on the native context). */
function setTicketKeys(context: tls.SecureContext, key: Buffer): void {
  (context.context as { setTicketKeys(key: Buffer): void }).setTicketKeys(key);
}

/**
 * Installs the cache handlers and auto ticket keys for one server.
 * builtin and shared work as two layers, builtin first, as in nginx.
 */
export function setupResumption(server: ServerConf, context: tls.SecureContext, tickets: TicketSettings): SessionResumption {
  const cache = server.get(sslSessionCache);
  if (tickets.autoKey) {
    subscribeTicketKey(tickets.autoKey.cache, tickets.autoKey.size, Math.max(tickets.sessionTimeout, 3600), (k) => setTicketKeys(context, k));
  }
  const layers: SharedSessionStore[] = [];
  // builtin:0 is OpenSSL's "no limit".
  const builtin = cache.mode === "builtin" ? new MemorySessionStore(cache.builtinSize || Infinity) : undefined;
  if (builtin) layers.push(builtin);
  if (cache.shared) layers.push(sharedStore(cache.shared.name, cache.shared.size));
  if (layers.length === 0) return { server: undefined, forget: () => undefined };

  const ttl = tickets.sessionTimeout;
  // Never listens: it only carries the session events that TLSSocket emits on its `server`.
  const holder = new tls.Server({ secureContext: context });
  holder.on("newSession", (id: Buffer, data: Buffer, done: () => void) => {
    if (!isTls13Session(data)) for (const l of layers) l.set(Buffer.from(id), Buffer.from(data), ttl);
    done();
  });
  holder.on("resumeSession", (id: Buffer, done: (err: Error | null, data?: Buffer | null) => void) => {
    for (const l of layers) {
      const data = l.lookup(id);
      if (data) return done(null, data);
    }
    done(null, null);
  });
  return {
    server: holder,
    forget(socket) {
      const der = socket.getSession();
      const id = der ? sessionIdOf(der) : undefined;
      if (id && id.length > 0) for (const l of layers) l.delete(id);
    },
  };
}

/**
 * limit_conn at the session's door. The check runs where nginx stream's
 * preaccess phase does: after the PROXY header and realip (the real
 * client's address is the key) and before the TLS handshake and the
 * greeting, so a refused client costs neither. The connection is counted
 * until it closes, whatever stage it reaches (proxied sessions included).
 *
 * A refused client gets its protocol's way of saying "not now" before a
 * greeting (IMAP `* BYE`, POP3 `-ERR`, SMTP `421`), then the close; on an
 * `ssl` listener it gets the close only, as no TLS is spoken yet.
 * Rules: docs/limits.md#limit_conn.
 */
import type { Socket } from "node:net";
import { type ConnectionLog, logEscape } from "../../core/log.js";
import { limitStore } from "../../event/limit-ipc.js";
import type { ConnClaim } from "../../event/limit-store.js";
import type { MailServer } from "../server.js";
import { type SessionPeer, socketPeer } from "../session-peer.js";
import { connLimits, limitConnLogLevel } from "./conn-module.js";
import { LIMIT_END_REASON, countLimitHit } from "./limit-events.js";
import type { MailProtocolName } from "../types.js";

/** The replies to a refused connection, by protocol. */
export const CONN_REFUSALS: Readonly<Record<MailProtocolName, string>> = {
  imap: "* BYE Too many connections\r\n",
  pop3: "-ERR Too many connections\r\n",
  smtp: "421 4.7.0 Too many connections\r\n",
};

/** The outcome: go on (and `release` when the connection is gone), or the refusal to send. */
export interface Admission {
  /** undefined: admitted; "": refused, close without a reply; else the reply, then close. */
  readonly refusal: string | undefined;
  release(): void;
}

const nothing = (): void => {};

/**
 * Takes the server's limit_conn counts for this connection; undefined (no
 * wait at all) when the server has no limit or every key is empty (nginx
 * does not count an empty key).
 */
export function admitConnection(server: MailServer, peer: SessionPeer, socket: Socket, ssl: boolean, log: ConnectionLog): Promise<Admission> | undefined {
  const limits = connLimits(server);
  if (limits.length === 0) return undefined;
  const own = socketPeer(socket, peer.unixClient);
  const cx = { ...peer, unixClient: peer.clientAddr === "unix:", socketAddr: own.clientAddr, socketPort: own.clientPort };
  const claims: ConnClaim[] = [];
  for (const l of limits) {
    const key = l.zone.key.evaluate(cx);
    if (key.length === 0) continue;
    if (key.length > 255) {
      log.error(`the value of the "${l.zone.key.source}" key is more than 255 bytes: "${logEscape(key.toString("latin1"))}"`);
      continue;
    }
    claims.push({ zone: { name: l.zone.name, size: l.zone.size, sync: l.zone.sync }, key: key.toString("hex"), limit: l.conn });
  }
  if (claims.length === 0) return undefined;
  const store = limitStore();
  return store.acquire(claims).then((result): Admission => {
    if (result.ok) {
      let released = false;
      return {
        refusal: undefined,
        release: () => {
          if (released) return;
          released = true;
          store.release(claims);
        },
      };
    }
    const zone = claims[result.index]!.zone.name;
    if (result.reason === "limit") log.write(server.conf.get(limitConnLogLevel), `limiting connections by zone "${zone}"`, { action: false });
    // nginx's slab allocator says this, in the zone's words, when a new key finds no room
    else log.log.write("crit", `ngx_slab_alloc() failed: no memory in limit_conn_zone "${zone}"`);
    countLimitHit(log, { kind: result.reason === "limit" ? "conn" : "conn_zone_full", zone, protocol: server.protocol });
    return { refusal: ssl ? "" : CONN_REFUSALS[server.protocol], release: nothing };
  });
}

/** What the session gives the door: its reply and close, and the promise that settles when it is gone. */
export interface DoorSession {
  send(data: string): void;
  close(reason?: string): void;
  readonly finished: Promise<void>;
}

/** Waits for the admission; true to go on. The counts are given back once the session is finished. */
export async function admitted(session: DoorSession, pending: Promise<Admission>): Promise<boolean> {
  const admission = await pending;
  void session.finished.then(() => admission.release());
  if (admission.refusal === undefined) return true;
  if (admission.refusal) session.send(admission.refusal);
  session.close(LIMIT_END_REASON);
  return false;
}

/**
 * The handshake bytes that arrived while the store answered: the stream
 * has buffered them, and startTls drops buffered bytes (plaintext after
 * STARTTLS), so they go to the handshake as its initial data instead.
 */
export function withBytesReadMeanwhile(socket: Socket, initial: Buffer | undefined): Buffer | undefined {
  const chunks: Buffer[] = initial ? [initial] : [];
  for (let chunk: unknown; (chunk = socket.read()) !== null;) if (Buffer.isBuffer(chunk)) chunks.push(chunk);
  return chunks.length > 0 ? Buffer.concat(chunks) : undefined;
}

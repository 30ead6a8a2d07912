/**
 * What the limits tell the access log and the metrics (built apart, wired
 * at start-up): one listener for every limit hit, and the end reason of a
 * session a limit closed. Nothing here knows how either is written.
 */
import type { ConnectionLog } from "../../core/log.js";
import type { MailProtocolName } from "../types.js";

/** How a session ends when a limit closes it (the access log's "how the session ended"). */
export const LIMIT_END_REASON = "limit";

/**
 * The kinds of limit hits: a connection refused by limit_conn (`conn`), or
 * because its zone was full (`conn_zone_full`); an authentication delayed
 * (`auth_delay`) or refused before auth_http (`auth_refuse`) by the
 * failure throttle.
 */
export type LimitHit = "conn" | "conn_zone_full" | "auth_delay" | "auth_refuse";

/** One hit: which kind, the zone's name, the session's protocol. */
export interface LimitHitEvent {
  readonly kind: LimitHit;
  readonly zone: string;
  readonly protocol: MailProtocolName;
}

const listeners = new Set<(e: LimitHitEvent) => void>();
/** The hits that ended or marked each session, for its access-log line. */
const bySession = new WeakMap<ConnectionLog, LimitHit>();

/** Subscribes to every limit hit (metrics: increment a counter by kind, zone, protocol); returns the unsubscribe. */
export function onLimitHit(listener: (e: LimitHitEvent) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Reports a hit; a listener that throws is not the session's problem. */
export function countLimitHit(log: ConnectionLog, event: LimitHitEvent): void {
  bySession.set(log, event.kind);
  for (const l of listeners) {
    try {
      l(event);
    } catch {
      // metrics must never break a session
    }
  }
}

/** The last limit that hit this session (its ConnectionLog identifies it), if any. */
export function sessionLimitHit(log: ConnectionLog): LimitHit | undefined {
  return bySession.get(log);
}

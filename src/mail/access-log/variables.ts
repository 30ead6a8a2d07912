/**
 * The access log's variables, nginx's stream names plus the mail ones
 * (docs/observability.md#variables). Each reads a finished session's facts
 * and returns its value as a byte string (one char per byte, latin1), or
 * undefined when the session has no such value (written `-`, or empty in
 * JSON). No variable can reach a password, an Auth-Pass or a token: the
 * facts do not hold them.
 */
import type { SessionFacts } from "../session-events.js";

/** A variable's value at write time; `nowMs` is the moment the line is written (Date.now()). */
export type VariableGetter = (f: SessionFacts, nowMs: number) => string | undefined;

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

function pad(n: number, width = 2): string {
  return String(n).padStart(width, "0");
}

/** The UTC offset as nginx prints it: `+0100` (`colon`: `+01:00`). */
function offset(d: Date, colon: boolean): string {
  const minutes = -d.getTimezoneOffset();
  const sign = minutes < 0 ? "-" : "+";
  const abs = Math.abs(minutes);
  return `${sign}${pad(Math.floor(abs / 60))}${colon ? ":" : ""}${pad(abs % 60)}`;
}

/**
 * A time string made once per second, as nginx caches its time strings: a
 * busy second writes many lines with the same one, and formatting a date
 * takes a Date and a dozen calls.
 */
function perSecond(format: (d: Date) => string): (ms: number) => string {
  let second = Number.NaN;
  let text = "";
  return (ms) => {
    const s = Math.floor(ms / 1000);
    if (s !== second) {
      second = s;
      text = format(new Date(ms));
    }
    return text;
  };
}

/** `02/Dec/2026:10:12:00 +0000`. */
export const timeLocal = perSecond((d) => {
  return `${pad(d.getDate())}/${MONTHS[d.getMonth()]}/${d.getFullYear()}:${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${offset(d, false)}`;
});

/** `2026-12-02T10:12:00+00:00`. */
export const timeIso8601 = perSecond((d) => {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}${offset(d, true)}`;
});

/** Seconds with millisecond resolution: `1.234` (what toFixed(3) gives, without its cost). */
export function seconds(ms: number): string {
  const t = Math.max(0, Math.round(ms));
  const frac = t % 1000;
  return `${(t - frac) / 1000}.${frac < 10 ? "00" : frac < 100 ? "0" : ""}${frac}`;
}

function addr(a: string): string | undefined {
  return a === "" ? undefined : a;
}

/** Every variable, by name without the `$`. */
export const VARIABLES: ReadonlyMap<string, VariableGetter> = new Map<string, VariableGetter>([
  ["remote_addr", (f) => addr(f.peer.clientAddr)],
  ["remote_port", (f) => (f.peer.unixClient ? "" : String(f.peer.clientPort))],
  ["server_addr", (f) => addr(f.peer.localAddr)],
  ["server_port", (f) => (f.peer.unixClient ? "" : String(f.peer.localPort))],
  ["server_name", (f) => f.serverName],
  ["protocol", (f) => f.server.protocol],
  ["time_local", (_f, now) => timeLocal(now)],
  ["time_iso8601", (_f, now) => timeIso8601(now)],
  ["msec", (_f, now) => seconds(now)],
  ["session_time", (f, now) => seconds(now - f.startMs)],
  ["bytes_sent", (f) => String(f.bytesSent)],
  ["bytes_received", (f) => String(f.bytesReceived)],
  ["connection", (f) => String(f.id)],
  ["pid", () => String(process.pid)],
  ["ssl_protocol", (f) => f.tls?.protocol],
  ["ssl_cipher", (f) => f.tls?.cipher],
  ["ssl_session_reused", (f) => (f.tls ? (f.tls.reused ? "r" : ".") : undefined)],
  ["ssl_server_name", (f) => f.tls?.serverName],
  ["ssl_client_s_dn", (f) => (f.tls ? f.tls.client().subject : undefined)],
  ["ssl_client_verify", (f) => (f.tls ? (f.tls.client().verify ?? "NONE") : undefined)],
  ["proxy_protocol_addr", (f) => f.peer.proxyProtocol?.srcAddr],
  ["proxy_protocol_port", (f) => (f.peer.proxyProtocol ? String(f.peer.proxyProtocol.srcPort) : undefined)],
  ["realip_remote_addr", (f) => addr(f.socketAddr)],
  ["realip_remote_port", (f) => (f.peer.unixClient ? "" : String(f.socketPort))],
  ["mail_login", (f) => f.login?.toString("latin1")],
  ["mail_auth_method", (f) => f.authMethod],
  ["mail_auth_status", (f) => f.authStatus],
  ["upstream_addr", (f) => f.upstream],
  ["mail_session_end", (f) => f.end],
]);

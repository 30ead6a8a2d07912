/**
 * The error log, in nginx's format:
 *
 *   2026/11/27 18:35:05 [error] 1234#1234: *7 text while <action>, client: 1.2.3.4, server: 0.0.0.0:993
 *
 * An `ErrorLog` is a set of sinks (files, stderr, syslog, memory), each with
 * its own level. Per-connection lines go through a `ConnectionLog`, which
 * adds the connection number, the current action and the session context.
 * Secrets never reach a log: callers pass logins, never passwords, and
 * `data:` values are shown as `data:...` where a message names a file.
 * Text that comes from a peer (client, auth server, backend, DNS) goes
 * through `logEscape` first, so it can neither end a line nor close a quote.
 *
 * Rule: docs/behaviour/cli.md#cli-8-the-error-log.
 */
import { writeSync } from "node:fs";
import { describeSystemError } from "./errors.js";
import { AppendFile } from "./append-file.js";
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { hostname } from "node:os";

const LOG_HEX = "0123456789ABCDEF";

/**
 * Makes peer-supplied text safe inside a log line, with the rule of nginx's
 * access log (`log_format escape=default`): `"`, `\`, bytes below 0x20 and
 * above 0x7E are written as `\xXX`. Strings are read as Latin-1 (one char
 * per byte, as the front ends decode client bytes). nginx's error log writes
 * such bytes raw, so a CR LF in a login forged a whole line there.
 */
export function logEscape(text: string | Buffer): string {
  const s = typeof text === "string" ? text : text.toString("latin1");
  let out = "";
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c <= 0x7e && c !== 0x22 && c !== 0x5c) continue;
    out += s.slice(from, i);
    // a character past Latin-1 (UTF-8 text read as UTF-16) is written per UTF-8 byte
    for (const b of c > 0xff ? Buffer.from(s[i]!, "utf8") : [c]) out += `\\x${LOG_HEX[b >> 4]}${LOG_HEX[b & 15]}`;
    from = i + 1;
  }
  return from === 0 ? s : out + s.slice(from);
}

/** nginx's levels, most severe first. */
export const LOG_LEVELS = ["emerg", "alert", "crit", "error", "warn", "notice", "info", "debug"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Lower is more severe, as in nginx. */
export function levelRank(level: LogLevel): number {
  return LOG_LEVELS.indexOf(level);
}

/** Where log lines go. */
export interface LogSink {
  /** The least severe level this sink writes. */
  readonly level: LogLevel;
  /**
   * `line` is the whole line with its newline, `message` the part after
   * `PID#TID: `; `time` is the moment the line is stamped with (syslog
   * repeats it in its header).
   */
  write(level: LogLevel, line: string, message: string, time?: Date): void;
  reopen(): void;
  close(): void;
  /** Called once by the ErrorLog the sink belongs to (a syslog sink reports its own failures there). */
  attach?(log: ErrorLog): void;
}

/** A log file opened for appending; reopened on USR1. */
export class FileSink implements LogSink {
  readonly level: LogLevel;
  readonly #file: AppendFile;

  constructor(path: string, level: LogLevel) {
    this.#file = new AppendFile(path);
    this.level = level;
  }

  get path(): string {
    return this.#file.path;
  }

  write(_level: LogLevel, line: string): void {
    try {
      this.#file.write(Buffer.from(line));
    } catch {
      // A full disk must not take the proxy down; nginx drops the line too.
    }
  }

  /** Opens the path again (after a rotation); on failure the old file stays in use and nginx's open() message is thrown. */
  reopen(): void {
    this.#file.reopen();
  }

  /** Hands the open file to the workers' user (fchown on the descriptor, never by path). */
  giveTo(uid: number): void {
    this.#file.giveTo(uid);
  }

  close(): void {
    this.#file.close();
  }
}

/** Standard error. */
export class StderrSink implements LogSink {
  readonly level: LogLevel;
  constructor(level: LogLevel) {
    this.level = level;
  }
  write(_level: LogLevel, line: string): void {
    try {
      writeSync(2, line);
    } catch {
      // stderr closed: nothing to do
    }
  }
  reopen(): void {}
  close(): void {}
}

/** `syslog:server=addr[:port][,facility=f][,severity=s][,tag=t][,nohostname]`. */
export interface SyslogTarget {
  readonly host: string;
  readonly port: number;
  readonly facility: number;
  /** Read and checked as nginx does, but only access logs use it: an error line's severity is its level. */
  readonly severity: LogLevel | undefined;
  readonly tag: string;
  readonly nohostname: boolean;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** Errors of a send() nginx's ngx_connection_error logs at `error`; any other at `alert`. */
const PEER_ERRORS = new Set(["ECONNRESET", "EPIPE", "ENOTCONN", "ETIMEDOUT", "ECONNREFUSED", "ENETDOWN", "ENETUNREACH", "EHOSTDOWN", "EHOSTUNREACH"]);

/** Lines kept while a syslog socket connects (one event-loop turn); more are dropped, as a full socket would. */
const MAX_WAITING = 256;

/** The host name syslog headers carry: gethostname(), lower-cased as nginx does. */
const SYSLOG_HOSTNAME = hostname().toLowerCase();

/** `Mmm dd hh:mm:ss` in local time (RFC 3164; the day padded with a space). */
export function syslogTimestamp(d: Date): string {
  return `${MONTHS[d.getMonth()]} ${String(d.getDate()).padStart(2, " ")} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

/**
 * Sends each line as an RFC 3164 datagram, as nginx's ngx_syslog_writer
 * does: `<PRI>Mmm dd hh:mm:ss HOST TAG: ` and then the whole error-log line
 * without its newline (date, `[level]`, `PID#TID:`, `*N`, context), so a
 * pipeline parses syslog and file lines alike.
 *
 * The socket is connected to the server, as nginx's is, so a peer that is
 * down shows up: after the ICMP "port unreachable" of one datagram the next
 * send fails with ECONNREFUSED, that message is lost, the failure is logged
 * (`send() failed (111: Connection refused)` at error, to the process's main
 * log, never to this sink itself) and a new socket takes over. Node reports
 * the failure a tick later than nginx's synchronous send does, so the line
 * can land after lines written in the same tick.
 */
export class SyslogSink implements LogSink {
  readonly level: LogLevel;
  readonly #target: SyslogTarget;
  #socket: UdpSocket | undefined;
  /** Datagrams written while the socket connects (Node refuses a send then); sent on connect. */
  #waiting: string[] | undefined;
  /** Set while this sink reports its own failure (nginx's peer->busy): no recursion. */
  #busy = false;
  #closed = false;
  #owner: ErrorLog | undefined;
  /** How lines become bytes: utf8 for the error log's text, latin1 for access-log lines (byte strings). */
  readonly #encoding: "utf8" | "latin1";

  constructor(target: SyslogTarget, level: LogLevel, encoding: "utf8" | "latin1" = "utf8") {
    this.level = level;
    this.#target = target;
    this.#encoding = encoding;
    // connected now, so that lines written just before an exit are not left waiting
    this.#connect();
  }

  attach(log: ErrorLog): void {
    this.#owner ??= log;
  }

  write(level: LogLevel, line: string, _message: string, time: Date = new Date()): void {
    if (this.#busy || this.#closed) return;
    const t = this.#target;
    // the error log's own level decides the severity; `severity=` is for access logs only (nginx ignores it here)
    const pri = t.facility * 8 + levelRank(level);
    const host = t.nohostname ? "" : `${SYSLOG_HOSTNAME} `;
    const text = line.endsWith("\n") ? line.slice(0, -1) : line;
    const datagram = `<${pri}>${syslogTimestamp(time)} ${host}${t.tag}: ${text}`;
    const socket = this.#socket ?? this.#connect();
    if (this.#waiting) {
      if (this.#waiting.length < MAX_WAITING) this.#waiting.push(datagram);
      return;
    }
    this.#send(socket, datagram);
  }

  #send(socket: UdpSocket, datagram: string): void {
    try {
      socket.send(Buffer.from(datagram, this.#encoding), (err) => {
        if (err) this.#failed(socket, err);
      });
    } catch (err) {
      this.#failed(socket, err);
    }
  }

  #connect(): UdpSocket {
    const t = this.#target;
    const socket = createSocket(t.host.includes(":") ? "udp6" : "udp4");
    socket.unref();
    socket.on("error", (err) => this.#failed(socket, err));
    this.#socket = socket;
    this.#waiting = [];
    socket.connect(t.port, t.host, () => {
      if (this.#socket !== socket) return;
      const waiting = this.#waiting ?? [];
      this.#waiting = undefined;
      for (const d of waiting) this.#send(socket, d);
    });
    return socket;
  }

  /** Drops the socket (the next line opens another) and logs why, as ngx_syslog_send does. */
  #failed(socket: UdpSocket, err: unknown): void {
    if (this.#socket !== socket) return; // already replaced: one report per socket
    this.#socket = undefined;
    this.#waiting = undefined;
    try {
      socket.close();
    } catch {
      // already closed
    }
    if (this.#closed) return;
    const e = err as NodeJS.ErrnoException;
    const syscall = e?.syscall === "connect" ? "connect" : "send";
    const level: LogLevel = syscall === "send" && PEER_ERRORS.has(e?.code ?? "") ? "error" : "alert";
    const log = mainLog ?? this.#owner;
    if (!log) return;
    this.#busy = true;
    try {
      log.write(level, `${syscall}() failed ${describeSystemError(err)}`);
    } finally {
      this.#busy = false;
    }
  }

  reopen(): void {}

  close(): void {
    // nginx's cleanup marks the peer busy: a closed log sends nothing more
    this.#closed = true;
    const socket = this.#socket;
    this.#socket = undefined;
    this.#waiting = undefined;
    try {
      socket?.close();
    } catch {
      // already closed
    }
  }
}

let mainLog: ErrorLog | undefined;

/**
 * Names the process's main log (nginx's ngx_cycle->log), where a syslog sink
 * of any level reports that it cannot send; until then a sink reports to
 * the log it belongs to.
 */
export function useAsMainLog(log: ErrorLog): void {
  mainLog = log;
}

/** An in-memory ring buffer (`memory:SIZE`), readable with a debugger or tests. */
export class MemorySink implements LogSink {
  readonly level: LogLevel;
  readonly size: number;
  #text = "";
  constructor(size: number, level: LogLevel) {
    this.size = size;
    this.level = level;
  }
  write(_level: LogLevel, line: string): void {
    this.#text = (this.#text + line).slice(-this.size);
  }
  get contents(): string {
    return this.#text;
  }
  reopen(): void {}
  close(): void {}
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** `YYYY/MM/DD HH:MM:SS` in local time, as nginx writes it. */
function logTimestamp(d: Date): string {
  return `${d.getFullYear()}/${pad2(d.getMonth() + 1)}/${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

/** nginx's NGX_MAX_ERROR_STR: a line and its newline fit in 2048 bytes. */
export const MAX_LINE_BYTES = 2047;

/**
 * Cuts a line to MAX_LINE_BYTES bytes of UTF-8, as nginx's fixed buffer
 * does (for files, stderr and syslog alike: syslog's buffer has room for
 * the header plus such a line).
 */
function capLine(line: string): string {
  // a UTF-8 character takes at most 3 bytes per UTF-16 unit: shorter lines fit
  if (line.length * 3 <= MAX_LINE_BYTES) return line;
  const bytes = Buffer.from(line, "utf8");
  if (bytes.length <= MAX_LINE_BYTES) return line;
  // never half a character: back off to the start of the one that does not fit
  let end = MAX_LINE_BYTES;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString("utf8");
}

/** A set of sinks; the process-wide or per-server error log. */
export class ErrorLog {
  readonly sinks: readonly LogSink[];
  /** The least severe level any sink writes: a quick filter for hot paths. */
  readonly level: LogLevel;
  readonly #rank: number;

  constructor(sinks: readonly LogSink[]) {
    this.sinks = sinks;
    this.#rank = sinks.reduce((r, s) => Math.max(r, levelRank(s.level)), -1);
    this.level = LOG_LEVELS[Math.max(this.#rank, 0)]!;
    for (const s of sinks) s.attach?.(this);
  }

  /** True when a line at `level` would be written anywhere. */
  enabled(level: LogLevel): boolean {
    return levelRank(level) <= this.#rank;
  }

  /** Writes `message` (already carrying any `*N` prefix and context). */
  write(level: LogLevel, message: string): void {
    const rank = levelRank(level);
    if (rank > this.#rank) return;
    const time = new Date();
    const line = `${capLine(`${logTimestamp(time)} [${level}] ${process.pid}#${process.pid}: ${message}`)}\n`;
    for (const s of this.sinks) if (rank <= levelRank(s.level)) s.write(level, line, message, time);
  }

  emerg(message: string): void {
    this.write("emerg", message);
  }
  alert(message: string): void {
    this.write("alert", message);
  }
  error(message: string): void {
    this.write("error", message);
  }
  warn(message: string): void {
    this.write("warn", message);
  }
  notice(message: string): void {
    this.write("notice", message);
  }
  info(message: string): void {
    this.write("info", message);
  }
  debug(message: string): void {
    this.write("debug", message);
  }

  /** Reopens every sink; returns the failures (each sink that failed keeps its old file). */
  reopen(): string[] {
    const failures: string[] = [];
    for (const s of this.sinks) {
      try {
        s.reopen();
      } catch (err) {
        failures.push(err instanceof Error ? err.message : String(err));
      }
    }
    return failures;
  }

  close(): void {
    for (const s of this.sinks) s.close();
  }
}

/** The context nginx appends to every line about a mail connection. */
export interface ConnectionContext {
  client: string;
  /** The listening address as configured, e.g. `0.0.0.0:993`. */
  server: string;
  login?: string | undefined;
  upstream?: string | undefined;
  /** `using starttls` after a STARTTLS upgrade. */
  starttls?: boolean;
}

/** A per-connection view of an ErrorLog: `*N message while action, client: ...`. */
export class ConnectionLog {
  readonly number: number;
  readonly context: ConnectionContext;
  /** What the connection is doing, for ` while <action>`. */
  action: string | undefined;
  log: ErrorLog;

  constructor(log: ErrorLog, number: number, context: ConnectionContext) {
    this.log = log;
    this.number = number;
    this.context = context;
  }

  enabled(level: LogLevel): boolean {
    return this.log.enabled(level);
  }

  /** A line with the connection number only (e.g. `client X connected to Y`). */
  plain(level: LogLevel, message: string): void {
    if (this.log.enabled(level)) this.log.write(level, `*${this.number} ${message}`);
  }

  /** A line with the action and the full context suffix. */
  write(level: LogLevel, message: string, options: { action?: boolean } = {}): void {
    if (!this.log.enabled(level)) return;
    const c = this.context;
    let text = `*${this.number} ${message}`;
    if (options.action !== false && this.action) text += ` while ${this.action}`;
    text += `, client: ${c.client}${c.starttls ? " using starttls" : ""}, server: ${c.server}`;
    // nginx names the upstream only after a non-empty login
    if (c.login) {
      text += `, login: "${logEscape(c.login)}"`;
      if (c.upstream !== undefined) text += `, upstream: ${c.upstream}`;
    }
    this.log.write(level, text);
  }

  error(message: string): void {
    this.write("error", message);
  }
  info(message: string): void {
    this.write("info", message);
  }
  debug(message: string): void {
    this.write("debug", message);
  }
}

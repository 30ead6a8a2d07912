/**
 * The mail session's debug lines (`error_log ... debug`), in nginx's format
 * `[debug] PID#TID: *N text`. Each function returns before building any text
 * when no sink takes debug lines, so a server without debug pays one level
 * comparison per event. The wording is nginx's where nginx logs the same
 * event (ngx_event_accept.c, ngx_event_openssl.c, ngx_mail_*.c), a short
 * line of Postern's own elsewhere.
 *
 * Secrets never reach these lines: commands are named without their
 * arguments, SASL responses by their step only, backend login steps by their
 * state, and auth_http headers that carry a password or a key are masked.
 * Peer text goes through logEscape.
 * Rule: docs/behaviour/cli.md#cli-10-debug-lines.
 */
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { addressWithPort, plainAddress } from "../core/inet.js";
import { type ConnectionLog, logEscape } from "../core/log.js";
import type { LoginStep } from "./proxy/login-step.js";
import type { SessionTls } from "./session-services.js";

/** What stands in for a masked header value. */
export const MASKED = "(masked)";

/** Header names whose values are secrets: Auth-Pass, and any name that suggests a key, a token or a password. */
const SECRET_HEADER = /pass|key|secret|token|credential/i;

/** True when a header's value must not be logged. */
export function secretHeader(name: string): boolean {
  return SECRET_HEADER.test(name);
}

/** `accept: PEER on LISTEN` (nginx: `accept: ADDR fd:N` after `accept on LISTEN`). */
export function debugAccept(log: ConnectionLog, socket: Socket, unix: boolean, listen: string): void {
  if (!log.enabled("debug")) return;
  const peer = unix ? "unix:" : addressWithPort(plainAddress(socket.remoteAddress), socket.remotePort ?? 0);
  log.plain("debug", `accept: ${peer} on ${listen}`);
}

/** A session stage change (session.ts's SessionStage). */
export function debugStage(log: ConnectionLog, from: string, to: string): void {
  if (from !== to && log.enabled("debug")) log.plain("debug", `mail stage: ${from} -> ${to}`);
}

/** The handshake's result: nginx's `SSL: PROTOCOL, cipher: "NAME"`, then resumption, SNI and the client certificate verdict. */
export function debugHandshake(log: ConnectionLog, socket: TLSSocket, tls: SessionTls): void {
  if (!log.enabled("debug")) return;
  log.plain("debug", `SSL: ${socket.getProtocol() ?? "unknown"}, cipher: "${socket.getCipher()?.name ?? ""}"`);
  log.plain("debug", socket.isSessionReused() ? "SSL reused session" : "SSL new session");
  const sni = (socket as { servername?: unknown }).servername;
  log.plain("debug", typeof sni === "string" && sni !== "" ? `SSL server name: "${logEscape(sni)}"` : "SSL server name: null");
  // Auth-SSL-Verify's value: SUCCESS, NONE or FAILED:reason; absent with ssl_verify_client off
  log.plain("debug", `SSL client certificate: ${tls.describe(socket).verify ?? "not requested"}`);
}

/** `close mail connection: REASON` (nginx: `close mail connection: FD`). */
export function debugClose(log: ConnectionLog, reason: string): void {
  if (log.enabled("debug")) log.plain("debug", `close mail connection: ${reason}`);
}

/** A command received: its name only, never an argument (nginx: `imap auth command: N`). */
export function debugCommand(log: ConnectionLog, protocol: string, name: string): void {
  if (log.enabled("debug")) log.plain("debug", `${protocol} auth command: ${logEscape(name.toUpperCase())}`);
}

/** A SASL response line: its step only, never its bytes. */
export function debugSaslResponse(log: ConnectionLog, protocol: string, step: string | undefined): void {
  if (log.enabled("debug")) log.plain("debug", `${protocol} auth sasl response${step === undefined ? " without an exchange" : ` for step ${step}`}`);
}

/** The dispatcher's command state change (POP3 after USER, SMTP after EHLO ...). */
export function debugCommandState(log: ConnectionLog, protocol: string, from: string, to: string): void {
  if (from !== to && log.enabled("debug")) log.plain("debug", `${protocol} state: ${from} -> ${to}`);
}

/** Debug timers that have fired: clearing them afterwards is no `del`. */
const expired = new WeakSet<NodeJS.Timeout>();

/**
 * Arms a timer (setTimeout) and, under debug, logs `event timer add: NAME: MS`
 * and `event timer expired: NAME` when it fires (nginx names the descriptor
 * where Postern names the directive).
 */
export function armTimer(log: ConnectionLog, name: string, ms: number, fire: () => void): NodeJS.Timeout {
  if (!log.enabled("debug")) return setTimeout(fire, ms);
  log.plain("debug", `event timer add: ${name}: ${ms}`);
  const timer = setTimeout(() => {
    expired.add(timer);
    log.plain("debug", `event timer expired: ${name}`);
    fire();
  }, ms);
  return timer;
}

/** Clears a timer armed by armTimer (`event timer del: NAME`); returns undefined for the caller's field. */
export function disarmTimer(log: ConnectionLog, name: string, timer: NodeJS.Timeout | undefined): undefined {
  if (timer === undefined) return undefined;
  clearTimeout(timer);
  if (log.enabled("debug") && !expired.has(timer)) log.plain("debug", `event timer del: ${name}`);
  return undefined;
}

/** Header lines of an HTTP header block, up to the empty line. */
function headerLines(block: Buffer): string[] {
  const text = block.toString("latin1");
  const end = text.search(/\r?\n\r?\n/);
  return (end >= 0 ? text.slice(0, end) : text).split(/\r?\n/);
}

/** `"Name: value"` escaped, the value masked when the name is a secret's. */
function headerText(line: string): string {
  const colon = line.indexOf(":");
  if (colon < 0) return `"${logEscape(line)}"`;
  const name = line.slice(0, colon);
  return `"${logEscape(name)}: ${secretHeader(name) ? MASKED : logEscape(line.slice(colon + 1).trimStart())}"`;
}

/** The auth_http request: its line and headers, secrets masked. */
export function debugAuthRequest(log: ConnectionLog, peer: string, request: Buffer): void {
  if (!log.enabled("debug")) return;
  const [first = "", ...headers] = headerLines(request);
  log.plain("debug", `mail auth http request to ${peer}: "${logEscape(first)}"`);
  for (const h of headers) log.plain("debug", `mail auth http request header: ${headerText(h)}`);
}

/** The auth server's answer: the status line and each header (nginx's `mail auth http header: "..."`), secrets masked. */
export function debugAuthResponse(log: ConnectionLog, received: Buffer): void {
  if (!log.enabled("debug")) return;
  const lines = headerLines(received);
  if (lines[0]?.startsWith("HTTP/")) log.plain("debug", `mail auth http status: "${logEscape(lines.shift()!)}"`);
  else log.plain("debug", "mail auth http status: none");
  for (const h of lines) log.plain("debug", `mail auth http header: ${headerText(h)}`);
  log.plain("debug", "mail auth http header done");
}

/** A plain debug line whose text is fixed or built by the caller behind its own `enabled("debug")` check. */
export function debugLine(log: ConnectionLog, text: string): void {
  if (log.enabled("debug")) log.plain("debug", text);
}

/**
 * One backend login step: the state whose reply was read and what follows
 * (nginx: `mail proxy send user` ...); never the line sent, which carries
 * the login or the password.
 */
export function debugLoginStep(log: ConnectionLog, step: LoginStep, valid: boolean): void {
  if (!log.enabled("debug")) return;
  const next = step.next;
  const what = !valid
    ? "invalid response"
    : next.kind === "send"
      ? next.action
      : next.kind === "done"
        ? "logged in"
        : next.kind === "starttls"
          ? "STARTTLS accepted"
          : "failed";
  log.plain("debug", `mail proxy ${step.state} state: ${what}`);
}

/** The relay's end: why, and the bytes each way (nginx: `close mail proxy connection: FD`). */
export function debugRelayEnd(log: ConnectionLog, reason: string, fromClient: number, fromUpstream: number): void {
  if (log.enabled("debug")) log.plain("debug", `close mail proxy connection: ${reason}, client sent ${fromClient} bytes, upstream sent ${fromUpstream} bytes`);
}

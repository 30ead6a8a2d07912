/**
 * STARTTLS to the backend, put in front of a protocol's login: ask for the
 * capabilities, require STARTTLS (STLS) among them, send it, require the
 * positive reply and nothing after it, hand the socket to the handshake,
 * read the capabilities again over TLS, then the login as without TLS.
 * The login's first step (its greeting check and first line) is kept: the
 * greeting is read before CAPABILITY, and its first line is sent after the
 * capabilities read over TLS (SMTP: the login's own EHLO reads them again).
 * Rules: docs/backend-tls.md#starttls-to-a-backend.
 */
import type { MailProtocolName } from "../types.js";
import { AGAIN, INVALID, OK, type LoginStep, type ReplyCheck, type ReplyVerdict, type StepDecision, commandLine } from "./login-step.js";

/** The log line when the backend's capabilities lack STARTTLS. */
export function notOfferedMessage(word: string): string {
  return `upstream does not advertise ${word}`;
}

/** The lines of a complete reply, without CRLF. */
function lines(buf: Buffer, len: number): string[] {
  return buf.toString("latin1", 0, len - 2).split("\r\n");
}

/** IMAP: untagged lines, then `a OK`; STARTTLS must be a word of a `* CAPABILITY` line. */
function imapCapabilities(requireStarttls: boolean): ReplyCheck {
  return (buf, len) => {
    const all = lines(buf, len);
    const last = all[all.length - 1]!;
    if (last.startsWith("* ")) return AGAIN;
    if (!last.startsWith("a OK")) return { kind: "invalid", from: len - 2 - last.length };
    if (!requireStarttls) return OK;
    const offered = all.some((l) => /^\* CAPABILITY /i.test(l) && l.split(" ").some((w) => w.toUpperCase() === "STARTTLS"));
    return offered ? OK : { kind: "refuse", message: notOfferedMessage("STARTTLS") };
  };
}

/** POP3: `+OK`, capability lines, `.`; STLS must be one of them. */
function pop3Capabilities(requireStls: boolean): ReplyCheck {
  return (buf, len) => {
    if (buf.toString("latin1", 0, 3) !== "+OK") return INVALID;
    const all = lines(buf, len);
    if (all[all.length - 1] !== "." || all.length < 2) return AGAIN;
    if (!requireStls) return OK;
    const offered = all.slice(1, -1).some((l) => l.split(" ")[0]!.toUpperCase() === "STLS");
    return offered ? OK : { kind: "refuse", message: notOfferedMessage("STLS") };
  };
}

/** SMTP: a complete 250 reply to EHLO; STARTTLS must be one of its keywords. */
const smtpEhlo: ReplyCheck = (buf, len) => {
  const all = lines(buf, len);
  const last = all[all.length - 1]!;
  if (last.length >= 4 && last[3] === "-") return AGAIN;
  if (!all.every((l) => l.startsWith("250"))) return INVALID;
  const offered = all.some((l) => l.slice(4).split(" ")[0]!.toUpperCase() === "STARTTLS");
  return offered ? OK : { kind: "refuse", message: notOfferedMessage("STARTTLS") };
};

/** A one-line reply starting with `prefix`. */
function oneLine(prefix: string): ReplyCheck {
  return (buf, len): ReplyVerdict => {
    const text = buf.toString("latin1", 0, len);
    return text.startsWith(prefix) ? OK : INVALID;
  };
}

/** How one protocol asks for TLS. */
interface StarttlsDialogue {
  readonly capability: Buffer;
  readonly offers: ReplyCheck;
  readonly starttls: Buffer;
  readonly accepted: ReplyCheck;
  /** Capabilities read again over TLS before the login (SMTP: the login's EHLO does it). */
  readonly again?: { readonly line: Buffer; readonly check: ReplyCheck };
}

function dialogue(protocol: MailProtocolName, serverName: string): StarttlsDialogue {
  switch (protocol) {
    case "imap":
      return {
        capability: commandLine("CAPABILITY", "a CAPABILITY"),
        offers: imapCapabilities(true),
        starttls: commandLine("STARTTLS", "a STARTTLS"),
        accepted: oneLine("a OK"),
        again: { line: commandLine("CAPABILITY", "a CAPABILITY"), check: imapCapabilities(false) },
      };
    case "pop3":
      return {
        capability: commandLine("CAPA", "CAPA"),
        offers: pop3Capabilities(true),
        starttls: commandLine("STLS", "STLS"),
        accepted: oneLine("+OK"),
        again: { line: commandLine("CAPA", "CAPA"), check: pop3Capabilities(false) },
      };
    case "smtp":
      return {
        capability: commandLine("server_name", `EHLO ${serverName}`),
        offers: smtpEhlo,
        starttls: commandLine("STARTTLS", "STARTTLS"),
        accepted: oneLine("220"),
      };
  }
}

/**
 * The login steps with STARTTLS in front. `serverName` is the server's
 * `server_name` (SMTP's EHLO before TLS).
 */
export function withStarttls(protocol: MailProtocolName, serverName: string, login: readonly LoginStep[]): LoginStep[] {
  const d = dialogue(protocol, serverName);
  const [first, ...rest] = login;
  if (!first || first.next.kind !== "send") throw new Error("a backend login starts by sending a line");
  const afterTls = d.again ? { kind: "send" as const, action: "sending capability request to upstream", line: d.again.line } : first.next;
  const askCapabilities = { kind: "send", action: "sending capability request to upstream", line: d.capability } as const;
  // A first step that decides from the greeting (POP3 XCLIENT offered in it)
  // decides on the greeting still, read before STARTTLS; its move is made
  // where the login's first line goes, after the capabilities read over TLS.
  let fromGreeting: StepDecision | undefined;
  const decide = first.decide;
  const steps: LoginStep[] = [
    {
      state: "starttls_start",
      check: first.check,
      next: askCapabilities,
      ...(decide && { decide: (greeting: Buffer) => ((fromGreeting = decide(greeting)), { next: askCapabilities }) }),
    },
    { state: "starttls_capability", check: d.offers, next: { kind: "send", action: "sending STARTTLS to upstream", line: d.starttls } },
    { state: "starttls", check: d.accepted, next: { kind: "starttls", then: afterTls } },
  ];
  if (decide && !d.again) throw new Error("a login that decides from the greeting needs the capabilities read again after STARTTLS");
  if (d.again) {
    const last: LoginStep = { state: "starttls_capability_again", check: d.again.check, next: first.next };
    steps.push(decide ? { ...last, decide: () => fromGreeting ?? { next: first.next } } : last);
  }
  return [...steps, ...rest];
}

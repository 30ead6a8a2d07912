/**
 * The client's identity on the backend, sent before the backend login
 * (not in nginx, whose IMAP and POP3 backends see only the proxy):
 * - IMAP (`imap_id on`): `ID ("x-originating-ip" ... "x-session-id" ...)`
 *   followed by the client's own ID fields, as Dovecot's own proxy does;
 *   the tagged reply must be OK (a backend refusing ID is a backend failure).
 * - POP3 (`pop3_xclient on`): `XCLIENT ADDR= PORT= SESSION=` when the
 *   greeting offers XCLIENT (Dovecot's `+OK [XCLIENT]`, which is how its own
 *   proxy decides); otherwise the login goes on without it and a warn line
 *   says so, since the backend would refuse the command.
 * The address is the session's after set_real_ip_from / PROXY protocol.
 * Every value is checked (IP text, numbers) or quoted (the client's ID
 * strings, already limited to printable ASCII by id-syntax.ts), and
 * commandLine refuses CR, LF and NUL all the same.
 * Rules: docs/client-identity.md, docs/behaviour/imap.md#imap-14-id-before-login.
 */
import { isIP } from "node:net";
import { ID_MAX_PAIRS, type IdField } from "../imap/id-syntax.js";
import { sessionId } from "../session-id.js";
import type { SessionInfo } from "../types.js";
import { AGAIN, INVALID, OK, type LoginStep, type ReplyCheck, commandLine, startsWith } from "./login-step.js";

/** `"text"` with `\` and `"` escaped (RFC 3501 quoted); CR, LF, NUL are refused later by commandLine. */
export function imapQuoted(text: string): string {
  return `"${text.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** The proxy's fields: where the client is, where it connected, and the session id. */
export function identityFields(session: SessionInfo): IdField[] {
  const fields: IdField[] = [];
  // a UNIX-socket client has no address to pass on
  if (isIP(session.clientAddr)) {
    fields.push({ name: "x-originating-ip", value: session.clientAddr }, { name: "x-originating-port", value: String(session.clientPort) });
  }
  if (isIP(session.localAddr)) {
    fields.push({ name: "x-connected-ip", value: session.localAddr }, { name: "x-connected-port", value: String(session.localPort) });
  }
  fields.push({ name: "x-session-id", value: sessionId(session.id) });
  return fields;
}

/**
 * The client's fields that are passed on: not those named `x-...`, which
 * backends read as the proxy's word (Dovecot: x-originating-ip, x-forward-*,
 * x-proxy-ttl...): a client must not set its own address or passdb fields.
 */
export function passedClientFields(fields: readonly IdField[]): IdField[] {
  return fields.filter((f) => !f.name.toLowerCase().startsWith("x-"));
}

/**
 * The longest ID line sent: the client's fields that would make it longer
 * are left out (whole pairs, in order). Dovecot's login process reads at
 * most 4 KiB per command; the client's ID alone may fill imap_client_buffer.
 */
export const ID_LINE_MAX = 2048;

function idItem(f: IdField): string {
  return `${imapQuoted(f.name)} ${f.value === undefined ? "NIL" : imapQuoted(f.value)}`;
}

/** `<tag> ID (...)`: the proxy's fields, then the client's that fit (RFC 2971: at most 30 pairs in all). */
export function imapIdLine(tag: string, session: SessionInfo, clientFields: readonly IdField[]): Buffer {
  const own = identityFields(session);
  const items = own.map(idItem);
  let length = `${tag} ID (${items.join(" ")})\r\n`.length;
  for (const f of passedClientFields(clientFields).slice(0, ID_MAX_PAIRS - own.length)) {
    const item = idItem(f);
    if (length + item.length + 1 > ID_LINE_MAX) break;
    items.push(item);
    length += item.length + 1;
  }
  return commandLine("ID", `${tag} ID (${items.join(" ")})`);
}

/** `<tag> OK` after any number of untagged lines (the `* ID ...` answer). */
export function taggedOkAfterUntagged(tag: string): ReplyCheck {
  const ok = Buffer.from(`${tag} OK`, "latin1");
  return (buf, len) => {
    // the last complete line decides; earlier ones must be untagged
    let start = 0;
    for (;;) {
      const end = buf.indexOf("\r\n", start, "latin1");
      if (end < 0 || end + 2 > len) return AGAIN;
      if (end + 2 === len) break;
      if (buf[start] !== 0x2a) return { kind: "invalid", from: start };
      start = end + 2;
    }
    if (buf[start] === 0x2a && buf[start + 1] === 0x20) return AGAIN;
    const matches = len - start >= ok.length + 2 && buf.compare(ok, 0, ok.length, start, start + ok.length) === 0;
    const after = buf[start + ok.length];
    return matches && (after === 0x20 || after === 0x0d) ? OK : start === 0 ? INVALID : { kind: "invalid", from: start };
  };
}

/**
 * The IMAP login with ID first: the greeting's step sends ID instead, and
 * a new step sends what the greeting's step sent once ID is answered.
 */
export function withImapId(steps: readonly LoginStep[], tag: string, session: SessionInfo, clientFields: readonly IdField[]): LoginStep[] {
  const [greeting, ...rest] = steps;
  const line = imapIdLine(tag, session, clientFields);
  return [
    { state: greeting!.state, check: greeting!.check, next: { kind: "send", action: "sending ID to upstream", line } },
    { state: "id", check: taggedOkAfterUntagged(tag), next: greeting!.next },
    ...rest,
  ];
}

/** `XCLIENT ADDR=<ip> PORT=<port> SESSION=<id>` (Dovecot's POP3 syntax; address and port left out for a UNIX-socket client). */
export function pop3XclientLine(session: SessionInfo): Buffer {
  const address = isIP(session.clientAddr) ? `ADDR=${session.clientAddr} PORT=${session.clientPort} ` : "";
  return commandLine("XCLIENT", `XCLIENT ${address}SESSION=${sessionId(session.id)}`);
}

/** The greeting offers XCLIENT: `+OK [XCLIENT]`, with any other codes in the same brackets. */
export function offersXclient(greeting: Buffer): boolean {
  const m = /^\+OK \[([^\]\r\n]*)\]/.exec(greeting.toString("latin1"));
  return m !== null && m[1]!.split(" ").some((code) => code.toUpperCase() === "XCLIENT");
}

/**
 * The POP3 login with XCLIENT first when the greeting offers it; else the
 * greeting's own move, the XCLIENT step skipped, and a warn line.
 */
export function withPop3Xclient(steps: readonly LoginStep[], session: SessionInfo): LoginStep[] {
  const [greeting, ...rest] = steps;
  const xclient = { kind: "send", action: "sending XCLIENT to upstream", line: pop3XclientLine(session) } as const;
  return [
    {
      state: greeting!.state,
      check: greeting!.check,
      next: xclient,
      decide: (reply) =>
        offersXclient(reply) ? { next: xclient } : { next: greeting!.next, skip: 1, warn: "upstream does not offer XCLIENT, client address not passed" },
    },
    { state: "xclient", check: startsWith("+OK"), next: greeting!.next },
    ...rest,
  ];
}

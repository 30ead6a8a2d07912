/**
 * ngx_mail_smtp_module: the `smtp_*` directives and the
 * wire strings they imply, built once per server.
 * Rules: docs/behaviour/smtp.md#smtp-2-greeting-and-smtp_greeting_delay,
 * #smtp-4-helo-and-ehlo.
 */
import { serverName } from "../core-module.js";
import { bitmask, list, msec, size } from "../../conf/slots.js";
import { oneOrMore } from "../../conf/directive.js";
import type { MailModule, MailServer } from "../server.js";

const BOTH = ["mail", "server"] as const;

/** The `smtp_auth` words, in nginx's bit order. */
export const SMTP_AUTH_METHODS = ["plain", "login", "cram-md5", "external", "none", "oauthbearer", "xoauth2"] as const;
/** One `smtp_auth` word. */
export type SmtpAuthMethod = (typeof SMTP_AUTH_METHODS)[number];

/** `smtp_auth`: what EHLO advertises; `none` enables MAIL/RCPT without AUTH. */
export const smtpAuthDirective = bitmask("smtp_auth", SMTP_AUTH_METHODS, ["plain", "login"], {
  contexts: BOTH,
  doc: "Sets permitted methods of authentication for SMTP clients; oauthbearer and xoauth2 (nginx PR #1590) take OAuth bearer tokens, see docs/oauth.md.",
});

/** `smtp_capabilities`: one EHLO line per argument. */
export const smtpCapabilitiesDirective = list<string>("smtp_capabilities", {
  contexts: BOTH,
  syntax: "extension ...",
  args: oneOrMore,
  defaultText: "—",
  doc: "Sets the SMTP protocol extensions list that is passed to the client in response to the EHLO command.",
  entry: (args) => [...args],
});

/** `smtp_client_buffer`: the command buffer. */
export const smtpClientBufferDirective = size("smtp_client_buffer", 4096, {
  contexts: BOTH,
  defaultText: "4k|8k",
  doc: "Sets the size of the buffer used for reading SMTP commands.",
});

/** `smtp_greeting_delay`: wait before greeting, refusing early talkers. */
export const smtpGreetingDelayDirective = msec("smtp_greeting_delay", 0, {
  contexts: BOTH,
  defaultText: "0",
  doc: "Allows setting a delay before sending an SMTP greeting in order to reject clients who fail to wait for the greeting before sending SMTP commands.",
});

/** What a server says, precomputed (nginx builds the same strings in its merge). */
export interface SmtpWire {
  /** `220 <server_name> ESMTP ready\r\n` */
  readonly greeting: string;
  /** `250 <server_name>\r\n`, the HELO reply. */
  readonly helo: string;
  /** EHLO reply: after TLS, or without STARTTLS. */
  readonly ehlo: string;
  /** EHLO reply for `starttls on` before TLS. */
  readonly ehloStarttls: string;
  /** EHLO reply for `starttls only` before TLS (no AUTH line). */
  readonly ehloStarttlsOnly: string;
  readonly authMethods: ReadonlySet<SmtpAuthMethod>;
  readonly bufferSize: number;
  readonly greetingDelay: number;
}

const AUTH_NAMES: ReadonlyArray<readonly [SmtpAuthMethod, string]> = [
  ["plain", "PLAIN"],
  ["login", "LOGIN"],
  ["cram-md5", "CRAM-MD5"],
  ["external", "EXTERNAL"],
  ["oauthbearer", "OAUTHBEARER"],
  ["xoauth2", "XOAUTH2"],
];

const wires = new WeakMap<MailServer, SmtpWire>();

/** Joins reply lines: every line `250-`, the last `250 `. */
function multiline(lines: readonly string[]): string {
  return lines.map((l, i) => `250${i === lines.length - 1 ? " " : "-"}${l}\r\n`).join("");
}

/** Builds a server's SMTP wire strings. */
export function buildSmtpWire(server: MailServer): SmtpWire {
  const conf = server.conf;
  const name = serverName(conf);
  const methods = conf.get(smtpAuthDirective);
  const base = [name, ...conf.get(smtpCapabilitiesDirective)];
  const mechanisms = AUTH_NAMES.filter(([m]) => methods.has(m)).map(([, n]) => n);
  const withAuth = mechanisms.length > 0 ? [...base, `AUTH ${mechanisms.join(" ")}`] : base;
  return {
    greeting: `220 ${name} ESMTP ready\r\n`,
    helo: `250 ${name}\r\n`,
    ehlo: multiline(withAuth),
    ehloStarttls: multiline([...withAuth, "STARTTLS"]),
    ehloStarttlsOnly: multiline([...base, "STARTTLS"]),
    authMethods: methods,
    bufferSize: conf.get(smtpClientBufferDirective),
    greetingDelay: conf.get(smtpGreetingDelayDirective),
  };
}

/** The precomputed wire strings of a finalized SMTP server. */
export function smtpWire(server: MailServer): SmtpWire {
  let wire = wires.get(server);
  if (!wire) {
    // a server built outside the mail block (tests): compute on first use
    wire = buildSmtpWire(server);
    wires.set(server, wire);
  }
  return wire;
}

/** The module: its directive table and the per-server precomputation. */
export const smtpModule: MailModule = {
  name: "ngx_mail_smtp_module",
  directives: [smtpClientBufferDirective, smtpGreetingDelayDirective, smtpCapabilitiesDirective, smtpAuthDirective],
  finalize(server: MailServer) {
    wires.set(server, buildSmtpWire(server));
  },
};

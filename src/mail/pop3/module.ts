/**
 * ngx_mail_pop3_module: `pop3_auth` and `pop3_capabilities`,
 * and the wire strings they imply, computed once per server.
 * Rules: docs/behaviour/pop3.md#pop3-4-capa, #pop3-6-auth-without-a-mechanism.
 */
import { oneOrMore } from "../../conf/directive.js";
import { bitmask, flag, list, size } from "../../conf/slots.js";
import type { MailModule, MailServer } from "../server.js";

const BOTH = ["mail", "server"] as const;

/** The `pop3_auth` words. There is no `login`: `plain` enables SASL PLAIN and LOGIN. */
export const POP3_AUTH_WORDS = ["plain", "apop", "cram-md5", "external", "oauthbearer", "xoauth2"] as const;
/** One `pop3_auth` word. */
export type Pop3AuthWord = (typeof POP3_AUTH_WORDS)[number];

/** nginx's built-in capability list, used when no level sets `pop3_capabilities`. */
export const DEFAULT_POP3_CAPABILITIES: readonly string[] = ["TOP", "USER", "UIDL"];

/** `pop3_auth method ...` (default plain). */
export const pop3AuthDirective = bitmask("pop3_auth", POP3_AUTH_WORDS, ["plain"], {
  contexts: BOTH,
  doc: "Sets permitted methods of authentication for POP3 clients; plain covers USER/PASS, AUTH PLAIN and AUTH LOGIN; oauthbearer and xoauth2 (nginx PR #1590) take OAuth bearer tokens, see docs/oauth.md.",
});

/** `pop3_capabilities extension ...` (default TOP USER UIDL). */
export const pop3CapabilitiesDirective = list<string>("pop3_capabilities", {
  contexts: BOTH,
  args: oneOrMore,
  syntax: "extension ...",
  defaultText: "TOP USER UIDL",
  doc: "Sets the POP3 protocol extensions list that is passed to the client in response to the CAPA command.",
  entry: (args) => [...args],
});

/**
 * `pop3_xclient on|off` (Postern, not nginx): send the backend
 * `XCLIENT ADDR= PORT= SESSION=` before USER when its greeting offers
 * XCLIENT (Dovecot's `[XCLIENT]` code, shown to trusted networks only).
 */
export const pop3XclientDirective = flag("pop3_xclient", false, {
  contexts: BOTH,
  doc: "Passes the client's address, port and session id to a POP3 backend whose greeting offers XCLIENT, before USER (not in nginx; see docs/client-identity.md).",
});

/** nginx 1.22.1 reads POP3 commands into a fixed 128-byte buffer. */
export const POP3_LEGACY_BUFFER_SIZE = 128;
/** One memory page, the default of imap_client_buffer and smtp_client_buffer. */
export const POP3_OAUTH_BUFFER_SIZE = 4096;

/**
 * `pop3_client_buffer size` (nginx PR #1590): the command buffer. Unset, it
 * stays nginx 1.22.1's 128 bytes unless `pop3_auth` enables an OAuth
 * mechanism (a bearer token does not fit in 128 bytes): then one page.
 */
export const pop3ClientBufferDirective = size("pop3_client_buffer", POP3_LEGACY_BUFFER_SIZE, {
  contexts: BOTH,
  defaultText: "128 (4k with pop3_auth oauthbearer or xoauth2)",
  doc: "Sets the size of the buffer used for reading POP3 commands (nginx PR #1590); unset, 128 bytes as in nginx 1.22.1, or one page when pop3_auth enables oauthbearer or xoauth2.",
});

/** What a POP3 session of one server needs, precomputed. */
export interface Pop3Wire {
  /** `pop3_auth`: PLAIN and LOGIN are accepted whatever it says; `plain` only advertises them. */
  readonly authMethods: ReadonlySet<Pop3AuthWord>;
  /** True when the greeting carries the salt (apop or cram-md5 enabled). */
  readonly saltedGreeting: boolean;
  /** CAPA on a TLS connection, in the USER state, or with starttls off. */
  readonly capa: string;
  /** CAPA with `starttls on` before TLS, in the start state. */
  readonly capaStarttls: string;
  /** CAPA with `starttls only` before TLS, in the start state. */
  readonly capaStarttlsOnly: string;
  /** The reply to AUTH without a mechanism. */
  readonly authList: string;
  /** The command buffer size (pop3_client_buffer). */
  readonly bufferSize: number;
}

const wires = new WeakMap<MailServer, Pop3Wire>();

const CAPA_HEADER = "+OK Capability list follows\r\n";
const END = ".\r\n";

/** SASL names in nginx's advertising order. */
function saslNames(auth: ReadonlySet<Pop3AuthWord>): string[] {
  const names: string[] = [];
  if (auth.has("plain")) names.push("PLAIN", "LOGIN");
  if (auth.has("cram-md5")) names.push("CRAM-MD5");
  if (auth.has("external")) names.push("EXTERNAL");
  if (auth.has("oauthbearer")) names.push("OAUTHBEARER");
  if (auth.has("xoauth2")) names.push("XOAUTH2");
  return names;
}

/** Builds the wire strings from the merged directive values. */
export function buildPop3Wire(auth: ReadonlySet<Pop3AuthWord>, capabilities: readonly string[], bufferSize?: number): Pop3Wire {
  const caps = capabilities.length > 0 ? capabilities : DEFAULT_POP3_CAPABILITIES;
  const names = saslNames(auth);
  const lines = caps.map((c) => `${c}\r\n`).join("");
  const body = `${CAPA_HEADER}${lines}${["SASL", ...names].join(" ")}\r\n`;
  // starttls only hides USER (plaintext login is refused until TLS) and the SASL line.
  const notUser = caps
    .filter((c) => c.toLowerCase() !== "user")
    .map((c) => `${c}\r\n`)
    .join("");
  return {
    authMethods: auth,
    saltedGreeting: auth.has("apop") || auth.has("cram-md5"),
    capa: body + END,
    capaStarttls: `${body}STLS\r\n${END}`,
    capaStarttlsOnly: `${CAPA_HEADER}${notUser}STLS\r\n${END}`,
    authList: `+OK methods supported:\r\n${names.map((n) => `${n}\r\n`).join("")}${END}`,
    bufferSize: bufferSize ?? (auth.has("oauthbearer") || auth.has("xoauth2") ? POP3_OAUTH_BUFFER_SIZE : POP3_LEGACY_BUFFER_SIZE),
  };
}

/** The precomputed strings of a finalized POP3 server. */
export function pop3Wire(server: MailServer): Pop3Wire {
  const wire = wires.get(server);
  if (!wire) throw new Error("pop3 module not finalized for this server");
  return wire;
}

/** The module: directive table and per-server precomputation. */
export const pop3Module: MailModule = {
  name: "ngx_mail_pop3_module",
  directives: [pop3ClientBufferDirective, pop3CapabilitiesDirective, pop3AuthDirective, pop3XclientDirective],
  finalize(server: MailServer) {
    // nginx merges pop3 settings for every server, whatever its protocol; only POP3 servers use them.
    const conf = server.conf;
    const buffer = conf.isSet(pop3ClientBufferDirective) ? conf.get(pop3ClientBufferDirective) : undefined;
    wires.set(server, buildPop3Wire(conf.get(pop3AuthDirective), conf.get(pop3CapabilitiesDirective), buffer));
  },
};

/**
 * ngx_mail_imap_module's directives and the per-server
 * wire strings built from them: the three CAPABILITY lines (plaintext with
 * STARTTLS, after TLS, and under `starttls only`), precomputed once in `finalize`.
 * Rules: docs/behaviour/imap.md#imap-4-noop-capability-logout.
 */
import { oneOrMore } from "../../conf/directive.js";
import { bitmask, flag, list, size } from "../../conf/slots.js";
import type { MailModule, MailServer } from "../server.js";

const BOTH = ["mail", "server"] as const;

/** The `imap_auth` method words, in nginx's bit order (which is also the AUTH= order). */
export const IMAP_AUTH_METHODS = ["plain", "login", "cram-md5", "external", "oauthbearer", "xoauth2"] as const;
/** One `imap_auth` method. */
export type ImapAuthMethod = (typeof IMAP_AUTH_METHODS)[number];

const DEFAULT_CAPABILITIES = ["IMAP4", "IMAP4rev1", "UIDPLUS"] as const;

/** `imap_client_buffer size`: the command buffer (a command and its literals must fit). */
export const imapClientBufferDirective = size("imap_client_buffer", 4096, {
  contexts: BOTH,
  defaultText: "4k",
  doc: "Sets the size of the buffer used for reading IMAP commands.",
});

/** `imap_capabilities extension ...`: empty means nginx's default list. */
export const imapCapabilitiesDirective = list<string>("imap_capabilities", {
  contexts: BOTH,
  syntax: "extension ...",
  args: oneOrMore,
  defaultText: DEFAULT_CAPABILITIES.join(" "),
  doc: "Sets the IMAP protocol extensions list that is passed to the client in response to the CAPABILITY command.",
  entry: (args) => [...args],
});

/** `imap_auth method ...`: what CAPABILITY advertises; CRAM-MD5 and EXTERNAL also need it to be accepted. */
export const imapAuthDirective = bitmask("imap_auth", IMAP_AUTH_METHODS, ["plain"], {
  contexts: BOTH,
  doc: "Sets permitted methods of authentication for IMAP clients; oauthbearer and xoauth2 (nginx PR #1590) take OAuth bearer tokens, see docs/oauth.md.",
});

/**
 * `imap_id on|off` (Postern, not nginx): answer the client's ID before
 * login (and advertise ID), and send the backend an ID with the client's
 * address, port, session id and the client's own ID fields before LOGIN.
 * Off (the default): ID is an unknown command, as in nginx.
 */
export const imapIdDirective = flag("imap_id", false, {
  contexts: BOTH,
  doc: "Answers the client's ID command before login and passes the client's address, port, session id and ID fields to the IMAP backend with ID before LOGIN (not in nginx; see docs/client-identity.md).",
});

const AUTH_NAMES: Readonly<Record<ImapAuthMethod, string>> = {
  plain: "AUTH=PLAIN",
  login: "AUTH=LOGIN",
  "cram-md5": "AUTH=CRAM-MD5",
  external: "AUTH=EXTERNAL",
  oauthbearer: "AUTH=OAUTHBEARER",
  xoauth2: "AUTH=XOAUTH2",
};

/** What a server's IMAP sessions need, computed once per server. */
export interface ImapWire {
  /** CAPABILITY for a TLS connection or `starttls off`. */
  readonly capability: string;
  /** CAPABILITY for `starttls on` before TLS: ` STARTTLS` appended. */
  readonly starttlsCapability: string;
  /** CAPABILITY for `starttls only` before TLS: no AUTH= items, ` STARTTLS LOGINDISABLED`. */
  readonly starttlsOnlyCapability: string;
  /** The enabled `imap_auth` methods. */
  readonly authMethods: ReadonlySet<ImapAuthMethod>;
}

const computed = new WeakMap<MailServer, ImapWire>();

/** Builds the three CAPABILITY lines exactly as nginx's merge step does. */
export function buildImapStrings(capabilities: readonly string[], methods: ReadonlySet<ImapAuthMethod>, id = false): ImapWire {
  const listed = capabilities.length > 0 ? capabilities : DEFAULT_CAPABILITIES;
  // imap_id on: ID is answered, so it is advertised (once, after the operator's list)
  const caps = id && !listed.some((c) => c.toUpperCase() === "ID") ? [...listed, "ID"] : listed;
  const head = "* CAPABILITY" + caps.map((c) => ` ${c}`).join("");
  // the fixed bit order decides the AUTH= order, not the order in imap_auth
  const auth = IMAP_AUTH_METHODS.filter((m) => methods.has(m))
    .map((m) => ` ${AUTH_NAMES[m]}`)
    .join("");
  return {
    capability: `${head}${auth}\r\n`,
    starttlsCapability: `${head}${auth} STARTTLS\r\n`,
    starttlsOnlyCapability: `${head} STARTTLS LOGINDISABLED\r\n`,
    authMethods: methods,
  };
}

function serverStrings(server: MailServer): ImapWire {
  const conf = server.conf;
  return buildImapStrings(conf.get(imapCapabilitiesDirective), conf.get(imapAuthDirective), conf.get(imapIdDirective));
}

/** The precomputed IMAP strings of a server (computed on demand if finalize has not run). */
export function imapWire(server: MailServer): ImapWire {
  let s = computed.get(server);
  if (!s) {
    s = serverStrings(server);
    computed.set(server, s);
  }
  return s;
}

/** The module: its directive table and the CAPABILITY precomputation. */
export const imapModule: MailModule = {
  name: "ngx_mail_imap_module",
  directives: [imapClientBufferDirective, imapCapabilitiesDirective, imapAuthDirective, imapIdDirective],
  finalize(server: MailServer) {
    if (server.protocol !== "imap") return;
    computed.set(server, serverStrings(server));
  },
};

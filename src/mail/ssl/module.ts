/**
 * ngx_mail_ssl_module's directive table: `starttls` and every `ssl_*`
 * directive. Values are parsed here; cross-directive checks and the loading
 * of certificates happen when a TLS server is built (context.ts), as nginx
 * does them at merge time.
 *
 * Rules: docs/behaviour/tls.md#tls-1-which-servers-use-tls, `starttls`
 * #tls-3-starttls-on-and-only.
 */
import { readConfFile } from "../../core/conf-inputs.js";
import { isAbsolute, join } from "node:path";
import { ConfError, describeSystemError } from "../../core/errors.js";
import { type ConfModule, type Directive, type SetContext, take } from "../../conf/directive.js";
import { bitmask, custom, enumeration, flag, list, number, sec, string } from "../../conf/slots.js";
import { parseNumber, parseSize } from "../../conf/values.js";

/** A file argument: as written (for messages) and resolved (for loading). */
export interface FileRef {
  readonly raw: string;
  /** Absolute path, or the raw value for `data:` and `engine:` forms. */
  readonly path: string;
}

/** `ssl_session_cache` as parsed; `builtin` is a session count. */
export interface SessionCacheConf {
  /** "off" and "none" are nginx's two ways of having no cache. */
  readonly mode: "unset" | "off" | "none" | "builtin";
  readonly builtinSize?: number;
  /** `sync` (Postern): the cache is shared across the nodes of a cluster through shared_store (docs/shared-tls.md). */
  readonly shared?: { readonly name: string; readonly size: number; readonly sync?: boolean };
}

/** nginx's builtin default: 20480 sessions. */
export const DEFAULT_BUILTIN_SESSIONS = 20480;
/** Smallest shared cache: 8 pages of 4k. */
const MIN_SHARED_CACHE = 8 * 4096;

/** Resolves a file name against the main file's directory, keeping `data:`/`engine:`/`store:` values. */
export function resolveFile(raw: string, cx: SetContext, special = false): FileRef {
  if (special && /^(data|engine|store):/.test(raw)) return { raw, path: raw };
  return { raw, path: isAbsolute(raw) ? raw : join(cx.confDir, raw) };
}

function fileDirective(name: string, doc: string, special = false): Directive<FileRef | undefined> {
  return custom<FileRef | undefined>({
    name,
    contexts: ["mail", "server"],
    args: take(1),
    syntax: "file",
    defaultValue: undefined,
    defaultText: "—",
    doc,
    parse: (args, _prev, cx) => resolveFile(args[0]!, cx, special),
  });
}

/** Splits a password file into passphrases (nginx rules: LF/CRLF lines, empty lines skipped, none = one empty). */
export function parsePasswordFile(text: Buffer, path: string): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf(0x0a, start);
    if (end === -1) end = text.length;
    let line = text.subarray(start, end);
    if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1);
    if (line.length > 4096) throw new ConfError(`too long line in "${path}"`);
    if (line.length > 0) out.push(Buffer.from(line));
    start = end + 1;
  }
  if (out.length === 0) out.push(Buffer.alloc(0));
  return out;
}

/** `starttls on | off | only`. */
export const starttls = enumeration("starttls", ["off", "on", "only"] as const, "off", {
  contexts: ["mail", "server"],
  doc: "Allows (on) or requires (only) STARTTLS/STLS before authentication.",
});

/**
 * The removed `ssl on|off`: latest nginx says `unknown directive "ssl"`; we
 * name the replacement instead (docs/compat-tls.md).
 */
export const sslRemoved = custom<undefined>({
  name: "ssl",
  contexts: ["mail", "server"],
  args: take(1),
  syntax: "on | off",
  defaultValue: undefined,
  defaultText: "—",
  doc: "Removed in nginx 1.25.1; use the ssl parameter of listen.",
  parse() {
    throw new ConfError(`the "ssl" directive is no longer supported, use the "listen ... ssl" directive instead`);
  },
});

/** `ssl_certificate file` (repeatable; `data:` accepted). */
export const sslCertificate = list<FileRef>("ssl_certificate", {
  contexts: ["mail", "server"],
  syntax: "file",
  args: take(1),
  doc: "Certificate chain in PEM; repeat for RSA and ECDSA certificates.",
  entry: (args, cx) => resolveFile(args[0]!, cx, true),
});

/** `ssl_certificate_key file` (repeatable; `data:` and `engine:` accepted). */
export const sslCertificateKey = list<FileRef>("ssl_certificate_key", {
  contexts: ["mail", "server"],
  syntax: "file",
  args: take(1),
  doc: "Private key in PEM, one per certificate, in the same order.",
  entry: (args, cx) => resolveFile(args[0]!, cx, true),
});

/** `ssl_password_file file`: read at parse time, like nginx. */
export const sslPasswordFile = custom<readonly Buffer[] | undefined>({
  name: "ssl_password_file",
  contexts: ["mail", "server"],
  args: take(1),
  syntax: "file",
  defaultValue: undefined,
  defaultText: "—",
  doc: "Passphrases for the keys, one per line, tried in order.",
  parse(args, _prev, cx) {
    const ref = resolveFile(args[0]!, cx);
    let text: Buffer;
    try {
      text = readConfFile(ref.path);
    } catch (err) {
      throw new ConfError(`open() "${ref.path}" failed ${describeSystemError(err)}`);
    }
    return parsePasswordFile(text, ref.path);
  },
});

/** `ssl_ciphers`. */
export const sslCiphers = string("ssl_ciphers", "HIGH:!aNULL:!MD5", {
  contexts: ["mail", "server"],
  syntax: "ciphers",
  doc: "OpenSSL cipher list for TLS 1.2 and older.",
});

/** `ssl_prefer_server_ciphers`. */
export const sslPreferServerCiphers = flag("ssl_prefer_server_ciphers", false, {
  contexts: ["mail", "server"],
  doc: "Server cipher order wins over the client's.",
});

/** The protocol names `ssl_protocols` knows. */
export const PROTOCOL_NAMES = ["SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"] as const;
/** One of `PROTOCOL_NAMES`. */
export type ProtocolName = (typeof PROTOCOL_NAMES)[number];

/** `ssl_protocols` (latest default: TLSv1.2 TLSv1.3). */
export const sslProtocols = bitmask("ssl_protocols", PROTOCOL_NAMES, ["TLSv1.2", "TLSv1.3"], {
  contexts: ["mail", "server"],
  doc: "Enabled protocol versions.",
});

/** `ssl_dhparam file`. */
export const sslDhparam = fileDirective("ssl_dhparam", "DH parameters enabling DHE cipher suites.");

/** `ssl_ecdh_curve`. */
export const sslEcdhCurve = string("ssl_ecdh_curve", "auto", {
  contexts: ["mail", "server"],
  syntax: "curve",
  doc: "ECDHE groups, colon-separated, or auto.",
});

function parseSessionCache(args: readonly string[], previous: SessionCacheConf | undefined): SessionCacheConf {
  let mode = previous?.mode ?? "unset";
  let builtinSize = previous?.builtinSize;
  let shared = previous?.shared;
  let sharedHere = false;
  for (const arg of args) {
    if (arg === "sync") {
      if (!sharedHere || !shared) throw new ConfError(`"sync" must follow "shared:name:size" in "ssl_session_cache"`);
      shared = { ...shared, sync: true };
    } else if (arg === "off" || arg === "none") {
      mode = arg;
    } else if (arg === "builtin") {
      mode = "builtin";
      builtinSize = DEFAULT_BUILTIN_SESSIONS;
    } else if (arg.startsWith("builtin:") && arg.length > 8) {
      const n = parseNumber(arg.slice(8));
      if (n === null) throw new ConfError(`invalid session cache "${arg}"`);
      mode = "builtin";
      builtinSize = n;
    } else if (arg.startsWith("shared:") && arg.length > 7) {
      const rest = arg.slice(7);
      const colon = rest.indexOf(":");
      if (colon <= 0) throw new ConfError(`invalid session cache "${arg}"`);
      const size = parseSize(rest.slice(colon + 1));
      if (size === null || rest.length === colon + 1) throw new ConfError(`invalid session cache "${arg}"`);
      if (size < MIN_SHARED_CACHE) throw new ConfError(`session cache "${arg}" is too small`);
      shared = { name: rest.slice(0, colon), size };
      sharedHere = true;
    } else {
      throw new ConfError(`invalid session cache "${arg}"`);
    }
  }
  const out: { mode: SessionCacheConf["mode"]; builtinSize?: number; shared?: SessionCacheConf["shared"] } = { mode };
  if (builtinSize !== undefined) out.builtinSize = builtinSize;
  if (shared !== undefined) out.shared = shared;
  return out;
}

/** `ssl_session_cache off | none | [builtin[:size]] [shared:name:size]`. */
export const sslSessionCache = custom<SessionCacheConf>({
  name: "ssl_session_cache",
  contexts: ["mail", "server"],
  args: { kind: "atLeast", min: 1 },
  syntax: "off | none | [builtin[:size]] [shared:name:size [sync]]",
  defaultValue: { mode: "unset" },
  defaultText: "none",
  duplicates: "accumulate",
  doc: "Session cache kind and size. Postern: `sync` after `shared:name:size` shares the cache's TLS 1.2 sessions and its ticket keys across nodes through shared_store (docs/shared-tls.md).",
  parse: (args, previous) => parseSessionCache(args, previous),
});

/** `ssl_session_tickets`. */
export const sslSessionTickets = flag("ssl_session_tickets", true, {
  contexts: ["mail", "server"],
  doc: "Session resumption with TLS tickets.",
});

/** `ssl_session_ticket_key file` (repeatable; the first key encrypts). */
export const sslSessionTicketKey = list<FileRef>("ssl_session_ticket_key", {
  contexts: ["mail", "server"],
  syntax: "file",
  args: take(1),
  doc: "48- or 80-byte ticket key files; the first encrypts.",
  entry: (args, cx) => resolveFile(args[0]!, cx),
});

/** `ssl_session_timeout` in seconds. */
export const sslSessionTimeout = sec("ssl_session_timeout", 300, {
  contexts: ["mail", "server"],
  defaultText: "5m",
  doc: "Lifetime of cached sessions and tickets.",
});

/** `ssl_verify_client`. */
export const sslVerifyClient = enumeration("ssl_verify_client", ["off", "on", "optional", "optional_no_ca"] as const, "off", {
  contexts: ["mail", "server"],
  doc: "Requests and verifies client certificates.",
});

/** `ssl_verify_depth`. */
export const sslVerifyDepth = number("ssl_verify_depth", 1, {
  contexts: ["mail", "server"],
  doc: "Maximum number of intermediate CAs in a client chain.",
});

/** `ssl_client_certificate file`: trusted and advertised CAs. */
export const sslClientCertificate = fileDirective("ssl_client_certificate", "Trusted client CAs, advertised to clients.");
/** `ssl_trusted_certificate file`: trusted, not advertised. */
export const sslTrustedCertificate = fileDirective("ssl_trusted_certificate", "Trusted client CAs, not advertised.");
/** `ssl_crl file`. */
export const sslCrl = fileDirective("ssl_crl", "Certificate revocation lists for client certificates.");

/** One `ssl_conf_command`. */
export interface ConfCommand {
  readonly name: string;
  readonly value: string;
  /** For file-valued commands: the value resolved against the config directory. */
  readonly path: string;
}

/** `ssl_conf_command name value` (list; inherited only when the server has none). */
export const sslConfCommand = list<ConfCommand>("ssl_conf_command", {
  contexts: ["mail", "server"],
  syntax: "name value",
  args: take(2),
  doc: "OpenSSL configuration commands, applied last.",
  entry: (args, cx) => ({ name: args[0]!, value: args[1]!, path: resolveFile(args[1]!, cx).path }),
});

/** `ssl_certificate_compression` (Node 26 compresses; an older Node warns as nginx on an OpenSSL without it). */
export const sslCertificateCompression = flag("ssl_certificate_compression", false, {
  contexts: ["mail", "server"],
  doc: "TLS 1.3 certificate compression (RFC 8879) with every algorithm Node's OpenSSL has; on Node 22 ignored with nginx's warning.",
});

/** The module, for the configuration engine. */
export const sslModule: ConfModule = {
  name: "ngx_mail_ssl_module",
  directives: [
    sslRemoved,
    starttls,
    sslCertificate,
    sslCertificateKey,
    sslCertificateCompression,
    sslPasswordFile,
    sslDhparam,
    sslEcdhCurve,
    sslProtocols,
    sslCiphers,
    sslPreferServerCiphers,
    sslSessionCache,
    sslSessionTickets,
    sslSessionTicketKey,
    sslSessionTimeout,
    sslVerifyClient,
    sslVerifyDepth,
    sslClientCertificate,
    sslTrustedCertificate,
    sslCrl,
    sslConfCommand,
  ],
};

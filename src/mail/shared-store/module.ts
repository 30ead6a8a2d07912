/**
 * `shared_store` and `shared_store_ssl*` (mail block only): the Redis
 * server the nodes of a cluster share. Named after nginx Plus's cluster
 * state sharing (`zone_sync`, `zone_sync_ssl*`), and used the same way:
 * a zone opts in with a `sync` parameter (`ssl_session_cache
 * shared:NAME:SIZE sync`, `limit_conn_zone ... sync`, `auth_fail_zone ...
 * sync`, `auth_http_cache ... sync`).
 *
 * Rules: docs/shared-store.md.
 */
import { isIP } from "node:net";
import { type ConfModule, oneOrMore, take } from "../../conf/directive.js";
import { custom, flag, string } from "../../conf/slots.js";
import { parseNumber, parseTime } from "../../conf/values.js";
import { readConfFile } from "../../core/conf-inputs.js";
import { ConfError, describeSystemError } from "../../core/errors.js";
import { MIN_SECRET_BYTES } from "../../event/shared-store/seal.js";
import type { SharedStoreSettings } from "../../event/shared-store/settings.js";
import { resolveFile } from "../ssl/module.js";

export { registerSyncUser, type SyncUser } from "./sync-users.js";

/** The default per-operation timeout: a handshake or login waits at most this long on the store. */
export const DEFAULT_STORE_TIMEOUT_MS = 100;
/** The longest timeout accepted: the store is a cache, never worth a slow login. */
const MAX_STORE_TIMEOUT_MS = 5000;
const MAX_PREFIX = 64;

/** `shared_store` as parsed, before the TLS directives join it. */
type StoreLine = Omit<SharedStoreSettings, "tls">;

function readFile(path: string): Buffer {
  try {
    return readConfFile(path);
  } catch (err) {
    throw new ConfError(`open() "${path}" failed ${describeSystemError(err)}`);
  }
}

/** `host:port`, `[v6]:port`, `host` (port 6379) or `unix:/path`. */
function parseStoreAddress(text: string): SharedStoreSettings["address"] {
  if (text.startsWith("unix:")) {
    if (text.length === 5) throw new ConfError(`no path in the unix domain socket in "${text}"`);
    return { path: text.slice(5) };
  }
  let host = text;
  let port = 6379;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (v6) {
    host = v6[1]!;
    if (isIP(host) !== 6) throw new ConfError(`invalid IPv6 address in "${text}"`);
    if (v6[2] !== undefined) port = Number(v6[2]);
  } else if (text.includes(":")) {
    const colon = text.lastIndexOf(":");
    host = text.slice(0, colon);
    const n = parseNumber(text.slice(colon + 1));
    if (n === null) throw new ConfError(`invalid port in "${text}"`);
    port = n;
  }
  if (host === "" || !/^[A-Za-z0-9.\-_:]+$/.test(host)) throw new ConfError(`invalid host in "${text}"`);
  if (port < 1 || port > 65535) throw new ConfError(`invalid port in "${text}"`);
  return { host, port };
}

/** The first line of a file, without its line end: a password must not carry one. */
function firstLine(data: Buffer, path: string): string {
  const text = data.toString("utf8").split(/\r?\n/)[0]!;
  if (text === "" || /[\0-\x1f\x7f]/.test(text)) throw new ConfError(`"${path}" must hold the password on its first line`);
  return text;
}

/** `shared_store redis address [prefix=] [timeout=] [db=] [username=] [password_file=] secret_file=`. */
export const sharedStore = custom<StoreLine | undefined>({
  name: "shared_store",
  contexts: ["mail"],
  args: oneOrMore,
  syntax: "redis address secret_file=file [prefix=string] [timeout=time] [db=number] [username=name] [password_file=file]",
  defaultValue: undefined,
  defaultText: "—",
  merge: "none",
  doc:
    "Postern: the Redis (or Valkey) server the nodes of a cluster share; zones opt in with `sync`. secret_file (at least 32 bytes, the same on every node) " +
    "seals every value; timeout (default 100ms) bounds every wait on the store (docs/shared-store.md).",
  parse(args, _previous, cx) {
    if (args[0] !== "redis") throw new ConfError(`invalid store type "${args[0]}", only "redis" is supported`);
    if (args.length < 2) throw new ConfError(`"shared_store" must have an address`);
    const address = parseStoreAddress(args[1]!);
    let prefix = "postern:";
    let timeoutMs = DEFAULT_STORE_TIMEOUT_MS;
    let db = 0;
    let username: string | undefined;
    let password: string | undefined;
    let secret: Buffer | undefined;
    for (const arg of args.slice(2)) {
      const eq = arg.indexOf("=");
      const key = eq < 0 ? arg : arg.slice(0, eq);
      const value = arg.slice(eq + 1);
      const bad = (): never => {
        throw new ConfError(`invalid parameter "${arg}"`);
      };
      if (eq < 0) bad();
      switch (key) {
        case "prefix":
          if (value.length > MAX_PREFIX || !/^[A-Za-z0-9_.:\-{}]*$/.test(value)) bad();
          prefix = value;
          break;
        case "timeout": {
          const t = parseTime(value, false);
          if (t === null || t < 1 || t > MAX_STORE_TIMEOUT_MS) bad();
          timeoutMs = t!;
          break;
        }
        case "db": {
          const n = parseNumber(value);
          if (n === null || n > 1_000_000) bad();
          db = n!;
          break;
        }
        case "username":
          if (value === "" || /[\0-\x20\x7f]/.test(value)) bad();
          username = value;
          break;
        case "password_file": {
          const ref = resolveFile(value, cx);
          password = firstLine(readFile(ref.path), ref.path);
          break;
        }
        case "secret_file": {
          const ref = resolveFile(value, cx);
          secret = readFile(ref.path);
          if (secret.length < MIN_SECRET_BYTES) throw new ConfError(`"${ref.path}" must hold at least ${MIN_SECRET_BYTES} bytes`);
          break;
        }
        default:
          bad();
      }
    }
    if (!secret) throw new ConfError(`"shared_store" must have "secret_file" parameter`);
    const text = `redis ${"path" in address ? `unix:${address.path}` : isIP(address.host) === 6 ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`}`;
    return { address, prefix, timeoutMs, db, username, password, secret, text };
  },
});

/** A file named by a shared_store_ssl_* directive, read when the configuration is (so `-t` reports it). */
interface ReadFile {
  readonly path: string;
  readonly data: Buffer;
}

const fileRef = (name: string, doc: string) =>
  custom<ReadFile | undefined>({
    name,
    contexts: ["mail"],
    args: take(1),
    syntax: "file",
    defaultValue: undefined,
    defaultText: "—",
    merge: "none",
    doc,
    parse: (args, _prev, cx) => {
      const { path } = resolveFile(args[0]!, cx);
      return { path, data: readFile(path) };
    },
  });

export const sharedStoreSsl = flag("shared_store_ssl", false, { contexts: ["mail"], doc: "TLS to the shared store (as nginx Plus's zone_sync_ssl)." });
export const sharedStoreSslTrustedCertificate = fileRef(
  "shared_store_ssl_trusted_certificate",
  "CA certificates (PEM) that verify the store's certificate; the system's when not set.",
);
export const sharedStoreSslCertificate = fileRef("shared_store_ssl_certificate", "Client certificate (PEM) presented to the store.");
export const sharedStoreSslCertificateKey = fileRef("shared_store_ssl_certificate_key", "Key (PEM, unencrypted) of shared_store_ssl_certificate.");
export const sharedStoreSslName = string("shared_store_ssl_name", undefined, {
  contexts: ["mail"],
  doc: "Name checked in the store's certificate and sent as SNI; the host of shared_store when not set.",
});
export const sharedStoreSslVerify = flag("shared_store_ssl_verify", true, {
  contexts: ["mail"],
  doc: "Verify the store's certificate chain and name (default on).",
});

const SSL_DIRECTIVES = [sharedStoreSslTrustedCertificate, sharedStoreSslCertificate, sharedStoreSslCertificateKey, sharedStoreSslName] as const;

/** The module's table. */
export const sharedStoreModule: ConfModule = {
  name: "postern_mail_shared_store_module",
  directives: [sharedStore, sharedStoreSsl, ...SSL_DIRECTIVES, sharedStoreSslVerify],
};

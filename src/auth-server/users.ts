/**
 * The users file of Postern's reference auth service. One user per line:
 *
 *   login:PASSWORD-HASH:BACKENDS[:clear=SECRET]
 *
 * - PASSWORD-HASH is `scrypt$N$r$p$SALT$HASH` (SALT and HASH in base64).
 * - BACKENDS is `host:port` for every protocol, or a comma-separated list of
 *   `protocol=host:port` (`imap=127.0.0.1:143,pop3=127.0.0.1:110`), and may
 *   mix both (`127.0.0.1:25,imap=10.0.0.2:143`: the bare entry is the
 *   default). Hosts are numeric (nginx accepts nothing else in Auth-Server);
 *   IPv6 hosts go in brackets: `[::1]:143`.
 * - `clear=SECRET` (optional, base64) stores the clear-text password, which
 *   APOP and CRAM-MD5 need to be verified; without it those methods are refused.
 *
 * Blank lines and lines starting with `#` are ignored. Logins may not contain `:`.
 */
import { createHash, createHmac, randomBytes, scrypt, scryptSync, timingSafeEqual } from "node:crypto";
import { isIP } from "node:net";
import type { MailProtocolName } from "../mail/types.js";

/** A backend for one protocol. */
export interface Backend {
  readonly host: string;
  readonly port: number;
}

/** One user. */
export interface UserEntry {
  readonly login: string;
  readonly hash: string;
  /** Backends per protocol; `default` applies to protocols not listed. */
  readonly backends: Readonly<Partial<Record<MailProtocolName | "default", Backend>>>;
  /** Clear-text password for APOP / CRAM-MD5, if stored. */
  readonly clear?: Buffer | undefined;
}

const SCRYPT_N = 16384;
const SCRYPT_R = 8;
const SCRYPT_P = 1;
const KEY_LENGTH = 32;

/** Hashes a password as `scrypt$N$r$p$salt$hash`. */
export function hashPassword(password: Buffer | string): string {
  const salt = randomBytes(16);
  const key = scryptSync(password, salt, KEY_LENGTH, { N: SCRYPT_N, r: SCRYPT_R, p: SCRYPT_P });
  return `scrypt$${SCRYPT_N}$${SCRYPT_R}$${SCRYPT_P}$${salt.toString("base64")}$${key.toString("base64")}`;
}

/** Checks a password against a stored hash in constant time. */
export function verifyPassword(password: Buffer | string, stored: string): boolean {
  const parts = stored.split("$");
  if (parts.length !== 6 || parts[0] !== "scrypt") return false;
  const [n, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  if (![n, r, p].every((x) => Number.isInteger(x) && x > 0)) return false;
  const salt = Buffer.from(parts[4]!, "base64");
  const expected = Buffer.from(parts[5]!, "base64");
  if (expected.length === 0) return false;
  let key: Buffer;
  try {
    key = scryptSync(password, salt, expected.length, { N: n, r, p, maxmem: 256 * n * r + 1024 * 1024 });
  } catch {
    return false;
  }
  return timingSafeEqual(key, expected);
}

/** verifyPassword without blocking the event loop (for the server). */
export function verifyPasswordAsync(password: Buffer | string, stored: string): Promise<boolean> {
  const parts = stored.split("$");
  if (parts.length !== 6 || parts[0] !== "scrypt") return Promise.resolve(false);
  const [n, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  if (![n, r, p].every((x) => Number.isInteger(x) && x > 0)) return Promise.resolve(false);
  const salt = Buffer.from(parts[4]!, "base64");
  const expected = Buffer.from(parts[5]!, "base64");
  if (expected.length === 0) return Promise.resolve(false);
  return new Promise((resolve) => {
    scrypt(password, salt, expected.length, { N: n, r, p, maxmem: 256 * n * r + 1024 * 1024 }, (err, key) => {
      resolve(err === null && timingSafeEqual(key, expected));
    });
  });
}

/** A hash of a random password, checked against for unknown users so they cost the same time. */
export const DUMMY_HASH = hashPassword(randomBytes(12));

/** APOP: digest = md5(salt + password), hex. */
export function verifyApop(digest: string, salt: string, clear: Buffer): boolean {
  const expected = createHash("md5").update(salt).update(clear).digest("hex");
  return constantTimeText(digest.toLowerCase(), expected);
}

/** CRAM-MD5: digest = hmac-md5(password, salt), hex. */
export function verifyCramMd5(digest: string, salt: string, clear: Buffer): boolean {
  const expected = createHmac("md5", clear).update(salt).digest("hex");
  return constantTimeText(digest.toLowerCase(), expected);
}

function constantTimeText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** A users-file syntax error. */
export class UsersFileError extends Error {
  override readonly name = "UsersFileError";
  readonly code = "ERR_USERS_FILE";
}

const PROTOCOLS: readonly string[] = ["imap", "pop3", "smtp"];

/** Parses `host:port` with a numeric host. */
export function parseBackend(text: string): Backend | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):([0-9]{1,5})$/.exec(text);
  if (!m) return undefined;
  const host = m[1] ?? m[2]!;
  const port = Number(m[3]);
  if (isIP(host) === 0 || port < 1 || port > 65535) return undefined;
  if (m[1] !== undefined && isIP(host) !== 6) return undefined;
  return { host, port };
}

/** Parses a BACKENDS field. */
export function parseBackends(text: string): UserEntry["backends"] {
  const out: Partial<Record<MailProtocolName | "default", Backend>> = {};
  for (const item of text.split(",")) {
    const eq = item.indexOf("=");
    const key = eq >= 0 ? item.slice(0, eq) : "default";
    const value = eq >= 0 ? item.slice(eq + 1) : item;
    if (key !== "default" && !PROTOCOLS.includes(key)) throw new UsersFileError(`unknown protocol "${key}" in backends "${text}"`);
    const b = parseBackend(value);
    if (!b) throw new UsersFileError(`invalid backend "${value}" (expected numeric host:port)`);
    out[key as MailProtocolName | "default"] = b;
  }
  return out;
}

/** Formats a BACKENDS field (inverse of parseBackends). */
export function formatBackends(b: UserEntry["backends"]): string {
  const fmt = (x: Backend): string => (x.host.includes(":") ? `[${x.host}]:${x.port}` : `${x.host}:${x.port}`);
  const items: string[] = [];
  if (b.default) items.push(fmt(b.default));
  for (const p of PROTOCOLS as MailProtocolName[]) {
    const x = b[p];
    if (x) items.push(`${p}=${fmt(x)}`);
  }
  return items.join(",");
}

/** Parses a whole users file. Throws UsersFileError naming the line. */
export function parseUsers(text: string): Map<string, UserEntry> {
  const users = new Map<string, UserEntry>();
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    try {
      const entry = parseUserLine(line);
      users.set(entry.login, entry);
    } catch (e) {
      throw new UsersFileError(`line ${i + 1}: ${(e as Error).message}`);
    }
  });
  return users;
}

/** One `login:hash:backends[:clear=...]` line. */
export function parseUserLine(line: string): UserEntry {
  const first = line.indexOf(":");
  const second = line.indexOf(":", first + 1);
  if (first <= 0 || second < 0) throw new UsersFileError("expected login:hash:backends");
  const login = line.slice(0, first);
  const hash = line.slice(first + 1, second);
  if (!hash.startsWith("scrypt$")) throw new UsersFileError(`invalid password hash for "${login}"`);
  let rest = line.slice(second + 1);
  let clear: Buffer | undefined;
  const clearAt = rest.lastIndexOf(":clear=");
  if (clearAt >= 0) {
    clear = Buffer.from(rest.slice(clearAt + 7), "base64");
    rest = rest.slice(0, clearAt);
  }
  return { login, hash, backends: parseBackends(rest), clear };
}

/** Formats one line (inverse of parseUserLine). */
export function formatUserLine(e: UserEntry): string {
  const clear = e.clear ? `:clear=${e.clear.toString("base64")}` : "";
  return `${e.login}:${e.hash}:${formatBackends(e.backends)}${clear}`;
}

/** The backend for a protocol: its own entry, else the default. */
export function backendFor(e: UserEntry, protocol: string): Backend | undefined {
  const p = PROTOCOLS.includes(protocol) ? (protocol as MailProtocolName) : undefined;
  return (p && e.backends[p]) ?? e.backends.default;
}

/**
 * Adds or replaces a user in the text of a users file, keeping every other
 * line (comments included) as it was.
 */
export function upsertUser(text: string, entry: UserEntry): string {
  const lines = text === "" ? [] : text.replace(/\n$/, "").split("\n");
  let replaced = false;
  const out = lines.map((l) => {
    const t = l.trim();
    if (!t.startsWith("#") && t.startsWith(`${entry.login}:`)) {
      replaced = true;
      return formatUserLine(entry);
    }
    return l;
  });
  if (!replaced) out.push(formatUserLine(entry));
  return out.join("\n") + "\n";
}

/**
 * The users file of Postern's reference auth service. One user per line:
 *
 *   login:PASSWORD-HASH:BACKENDS[:clear=SECRET]
 *
 * - PASSWORD-HASH is `scrypt$N$r$p$SALT$HASH` (SALT and HASH in base64):
 *   each entry carries its own cost, so entries made with an older default
 *   (N=2^14) still verify, and are rehashed with DEFAULT_SCRYPT on login.
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
import { createHash, createHmac, randomBytes, scrypt, timingSafeEqual } from "node:crypto";
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

/** scrypt's cost parameters, stored in every hash so each entry is verified with its own. */
export interface ScryptParams {
  readonly N: number;
  readonly r: number;
  readonly p: number;
}

/**
 * The cost for new hashes and for rehashing older entries on login: OWASP's
 * recommendation (Password Storage Cheat Sheet: N=2^17, r=8, p=1), 128 MiB
 * and about a second of CPU per hash on a small machine.
 */
export const DEFAULT_SCRYPT: ScryptParams = { N: 2 ** 17, r: 8, p: 1 };
/** The largest N accepted from a file or an option: 2^20 is already 1 GiB at r=8. */
const MAX_SCRYPT_N = 2 ** 20;
const KEY_LENGTH = 32;

/** A parsed `scrypt$N$r$p$SALT$HASH`. */
export interface ScryptHash extends ScryptParams {
  readonly salt: Buffer;
  readonly key: Buffer;
}

/** True for parameters scrypt accepts and that stay within memory bounds (N a power of 2, 2..2^20). */
export function validScryptParams(x: ScryptParams): boolean {
  const { N, r, p } = x;
  return (
    Number.isInteger(N) &&
    N >= 2 &&
    N <= MAX_SCRYPT_N &&
    (N & (N - 1)) === 0 &&
    Number.isInteger(r) &&
    r >= 1 &&
    r <= 32 &&
    Number.isInteger(p) &&
    p >= 1 &&
    p <= 16
  );
}

/** Node refuses to use more than maxmem (32 MiB by default); scrypt needs 128*N*r plus 128*r*p. */
function scryptOptions(x: ScryptParams): { N: number; r: number; p: number; maxmem: number } {
  return { N: x.N, r: x.r, p: x.p, maxmem: 128 * x.N * x.r + 128 * x.r * x.p + 1024 * 1024 };
}

/** Parses a stored hash; null if it is not one this service can check. */
export function parseScryptHash(stored: string): ScryptHash | null {
  const parts = stored.split("$");
  if (parts.length !== 6 || parts[0] !== "scrypt") return null;
  if (![parts[1], parts[2], parts[3]].every((x) => /^[0-9]{1,8}$/.test(x!))) return null;
  const params = { N: Number(parts[1]), r: Number(parts[2]), p: Number(parts[3]) };
  if (!validScryptParams(params)) return null;
  const salt = Buffer.from(parts[4]!, "base64");
  const key = Buffer.from(parts[5]!, "base64");
  if (key.length === 0 || key.length > 1024) return null;
  return { ...params, salt, key };
}

function formatHash(x: ScryptParams, salt: Buffer, key: Buffer): string {
  return `scrypt$${x.N}$${x.r}$${x.p}$${salt.toString("base64")}$${key.toString("base64")}`;
}

/** Hashes a password as `scrypt$N$r$p$salt$hash`, on libuv's thread pool so the auth service keeps answering meanwhile. */
export function hashPasswordAsync(password: Buffer | string, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  if (!validScryptParams(params)) return Promise.reject(new RangeError(`invalid scrypt parameters N=${params.N} r=${params.r} p=${params.p}`));
  const salt = randomBytes(16);
  return new Promise((resolve, reject) => {
    scrypt(password, salt, KEY_LENGTH, scryptOptions(params), (err, key) => (err ? reject(err) : resolve(formatHash(params, salt, key))));
  });
}

/** Checks a password against a stored hash in constant time, without blocking the event loop. */
export function verifyPasswordAsync(password: Buffer | string, stored: string): Promise<boolean> {
  const h = parseScryptHash(stored);
  if (!h) return Promise.resolve(false);
  return new Promise((resolve) => {
    scrypt(password, h.salt, h.key.length, scryptOptions(h), (err, key) => {
      resolve(err === null && timingSafeEqual(key, h.key));
    });
  });
}

/**
 * True when a stored hash costs less than `target` (old entries, N=2^14
 * before): the service then rehashes it after the next successful login.
 * Cost is memory (128*N*r) and time (N*r*p): an entry below the target in
 * either is upgraded; one at least as strong in both is left alone.
 */
export function needsRehash(stored: string, target: ScryptParams = DEFAULT_SCRYPT): boolean {
  const h = parseScryptHash(stored);
  if (!h) return false;
  return h.N * h.r < target.N * target.r || h.N * h.r * h.p < target.N * target.r * target.p;
}

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

/**
 * Replaces the hash of `login` in the text of a users file, only if it is
 * still `oldHash` (the file may have changed since it was read: a new
 * password set meanwhile must win). Every other byte stays as it was.
 * Returns null when there is nothing to replace. As parseUsers, the last
 * line of a login is the one in force.
 */
export function replaceHash(text: string, login: string, oldHash: string, newHash: string): string | null {
  const lines = text.split("\n");
  for (let i = lines.length - 1; i >= 0; i--) {
    const raw = lines[i]!;
    const cr = raw.endsWith("\r") ? "\r" : "";
    const line = raw.slice(0, raw.length - cr.length).trim();
    if (line.startsWith("#")) continue;
    const first = line.indexOf(":");
    const second = line.indexOf(":", first + 1);
    if (first <= 0 || second < 0 || line.slice(0, first) !== login) continue;
    if (line.slice(first + 1, second) !== oldHash) return null;
    lines[i] = `${login}:${newHash}${line.slice(second)}${cr}`;
    return lines.join("\n");
  }
  return null;
}

/**
 * Postern's reference auth_http service: answers nginx-style auth_http
 * requests from a users file (users.ts). It verifies plain passwords
 * against scrypt hashes, APOP and CRAM-MD5 digests against a stored
 * clear-text secret (refused without one), picks the user's backend for
 * the request's Auth-Protocol, and bounds failures per client IP.
 * Passwords and digests are never logged.
 *
 * With a shared secret, only requests carrying it (`X-Auth-Key`, sent by
 * the mail proxy's `auth_http_header`) are answered: anyone else who can
 * reach the port gets a 403 and nothing of the request is used, so nobody
 * can feed the per-IP limiter forged `Client-IP` values or probe passwords
 * past it.
 *
 * Hashes weaker than the service's scrypt target (older files) are
 * replaced on the user's next successful plain login.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { readFile, realpath, stat } from "node:fs/promises";
import { replaceFileAtomically } from "./atomic-file.js";
import {
  type Backend,
  DEFAULT_SCRYPT,
  type ScryptParams,
  type UserEntry,
  backendFor,
  hashPasswordAsync,
  needsRehash,
  parseUsers,
  replaceHash,
  verifyApop,
  verifyCramMd5,
  verifyPasswordAsync,
} from "./users.js";
import { type OauthSettings, answerOauth } from "./oauth.js";

/** The request header that carries the shared secret (nginx's documented example name). */
export const SECRET_HEADER = "X-Auth-Key";

/** Failures per client IP within FAILURE_WINDOW_MS after which every attempt from it is refused (docs/auth-server.md). */
const MAX_FAILURES = 20;
const FAILURE_WINDOW_MS = 5 * 60_000;
/** From this Auth-Login-Attempt on, refusals carry no Auth-Wait (nginx then disconnects the client). */
const LAST_WAIT_ATTEMPT = 10;

/** Settings of the service. */
export interface AuthServerOptions {
  readonly usersFile: string;
  /** Auth-Wait seconds sent with a refusal (0: none, nginx then closes the client). */
  readonly wait: number;
  /** Backend for SMTP without authentication (`Auth-Method: none`); refused when absent. */
  readonly relay?: Backend | undefined;
  /** Where log lines go (never containing secrets). */
  readonly log?: (line: string) => void;
  /** When set, requests must carry it in X-Auth-Key; others get 403 and are not looked at. */
  readonly secret?: Buffer | undefined;
  /** Cost of rehashed entries and of the unknown-user decoy (default DEFAULT_SCRYPT; tests lower it). */
  readonly scrypt?: ScryptParams | undefined;
  /** OAuth bearer tokens (oauthbearer, xoauth2): refused as unsupported when absent. */
  readonly oauth?: OauthSettings | undefined;
}

/** The reply headers of one request, in order. */
export type AuthReply = readonly (readonly [string, string])[];

/** A listening service. */
export interface RunningAuthServer {
  readonly address: AddressInfo;
  close(): Promise<void>;
}

/** The message a refused client sees. */
export const INVALID_LOGIN = "Invalid login or password";
const TOO_MANY = "Too many failed login attempts, try again later";

/** Decodes nginx's %XX escaping of Auth-User / Auth-Pass. */
export function unescapeAuthValue(text: string): Buffer {
  const src = Buffer.from(text, "latin1");
  const out: number[] = [];
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === 0x25 && i + 2 < src.length && /^[0-9A-Fa-f]{2}$/.test(src.toString("latin1", i + 1, i + 3))) {
      out.push(parseInt(src.toString("latin1", i + 1, i + 3), 16));
      i += 2;
    } else {
      out.push(c);
    }
  }
  return Buffer.from(out);
}

/** The users file, re-read whenever its mtime, size or inode changes. */
class UsersStore {
  readonly #path: string;
  readonly #log: (line: string) => void;
  #users = new Map<string, UserEntry>();
  #stamp = "";
  /** The last rewrite: the next one starts after it. */
  #writes: Promise<void> = Promise.resolve();

  constructor(path: string, log: (line: string) => void) {
    this.#path = path;
    this.#log = log;
  }

  async current(): Promise<Map<string, UserEntry>> {
    try {
      const st = await stat(this.#path);
      const stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
      if (stamp !== this.#stamp) {
        const users = parseUsers(await readFile(this.#path, "utf8"));
        this.#users = users;
        this.#stamp = stamp;
        this.#log(`users file "${this.#path}" loaded: ${users.size} user(s)`);
      }
    } catch (e) {
      // Keep serving the last good list; say why the new one was not taken.
      this.#log(`users file "${this.#path}" not reloaded: ${(e as Error).message}`);
    }
    return this.#users;
  }

  /**
   * Replaces `login`'s hash `oldHash` with `newHash` in the file, through
   * an exclusive temporary file renamed over it (the file's mode kept, a
   * symlinked file replaced at its target). One rewrite at a time, so two
   * logins never lose each other's change. False when the entry changed
   * meanwhile (a new password wins).
   */
  replaceHash(login: string, oldHash: string, newHash: string): Promise<boolean> {
    const run = this.#writes.then(async () => {
      const path = await realpath(this.#path);
      const mode = (await stat(path)).mode & 0o777;
      const updated = replaceHash(await readFile(path, "utf8"), login, oldHash, newHash);
      if (updated === null) return false;
      await replaceFileAtomically(path, updated, mode);
      return true;
    });
    this.#writes = run.then(
      () => {},
      () => {},
    );
    return run;
  }
}

/** Failures per client IP in a sliding window. */
class FailureLimiter {
  readonly #max: number;
  readonly #window: number;
  readonly #failures = new Map<string, number[]>();

  constructor(max: number, windowMs: number) {
    this.#max = max;
    this.#window = windowMs;
  }

  #recent(ip: string, now: number): number[] {
    const list = (this.#failures.get(ip) ?? []).filter((t) => now - t < this.#window);
    if (list.length === 0) this.#failures.delete(ip);
    else this.#failures.set(ip, list);
    return list;
  }

  blocked(ip: string): boolean {
    return this.#recent(ip, Date.now()).length >= this.#max;
  }

  fail(ip: string): void {
    const now = Date.now();
    const list = this.#recent(ip, now);
    list.push(now);
    this.#failures.set(ip, list);
    // Bound memory: forget the oldest client when too many are tracked.
    if (this.#failures.size > 100000) {
      const oldest = this.#failures.keys().next().value;
      if (oldest !== undefined) this.#failures.delete(oldest);
    }
  }
}

/** Decides one request from its headers. Exported for tests. */
export class AuthService {
  readonly #options: AuthServerOptions;
  readonly #store: UsersStore;
  readonly #limiter: FailureLimiter;
  readonly #log: (line: string) => void;
  readonly #scrypt: ScryptParams;
  readonly #secretDigest: Buffer | undefined;
  /** A hash of a random password at the target cost: unknown users cost as much as known ones. */
  #decoy: Promise<string> | undefined;
  /** Hashes whose rewrite failed (read-only file...): not retried on every login. */
  readonly #upgradeFailed = new Set<string>();

  constructor(options: AuthServerOptions) {
    this.#options = options;
    this.#log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.#store = new UsersStore(options.usersFile, this.#log);
    this.#limiter = new FailureLimiter(MAX_FAILURES, FAILURE_WINDOW_MS);
    this.#scrypt = options.scrypt ?? DEFAULT_SCRYPT;
    this.#secretDigest = options.secret ? sha256(options.secret) : undefined;
  }

  /** Loads the users file now (the server does it before listening). */
  async load(): Promise<number> {
    this.#decoy ??= hashPasswordAsync(randomBytes(12), this.#scrypt);
    await this.#decoy;
    return (await this.#store.current()).size;
  }

  /**
   * True when the request may be answered: no secret configured, or the
   * right X-Auth-Key (compared in constant time, as digests of equal length).
   */
  authorized(headers: IncomingHttpHeaders): boolean {
    if (!this.#secretDigest) return true;
    const key = headers[SECRET_HEADER.toLowerCase()];
    // a repeated header arrives joined or as an array: never the secret
    if (typeof key !== "string") return false;
    return timingSafeEqual(sha256(Buffer.from(key, "latin1")), this.#secretDigest);
  }

  async answer(headers: IncomingHttpHeaders): Promise<AuthReply> {
    const h = (name: string): string => {
      const v = headers[name];
      return Array.isArray(v) ? (v[v.length - 1] ?? "") : (v ?? "");
    };
    const method = h("auth-method");
    const protocol = h("auth-protocol");
    const ip = h("client-ip") || "-";
    const attempt = Number(h("auth-login-attempt")) || 1;
    const loginBytes = unescapeAuthValue(h("auth-user"));
    const login = loginBytes.toString("utf8");
    const who = `login "${printable(login)}" from ${ip} (${protocol || "-"}, ${method || "-"})`;

    if (method === "none") {
      const relay = this.#options.relay;
      if (relay) return this.#ok(who, relay, undefined);
      return this.#refuse(who, "no relay configured", protocol, ip, attempt, false, "Authentication required", "530 5.7.0");
    }
    if (this.#limiter.blocked(ip)) {
      return this.#refuse(who, "too many failures from this address", protocol, ip, attempt, false, TOO_MANY, "454 4.7.0", 0);
    }

    const users = await this.#store.current();
    const user = users.get(login);
    const password = unescapeAuthValue(h("auth-pass"));
    let verified: boolean;
    let clearForBackend: Buffer | undefined;
    if (method === "plain") {
      // Unknown users cost one scrypt too, so timing does not tell them apart.
      this.#decoy ??= hashPasswordAsync(randomBytes(12), this.#scrypt);
      const ok = await verifyPasswordAsync(password, user?.hash ?? (await this.#decoy));
      verified = ok && user !== undefined;
      if (verified && user) await this.#upgrade(user, password);
    } else if (method === "apop" || method === "cram-md5") {
      const salt = h("auth-salt");
      if (user?.clear && salt !== "" && isHeaderSafe(user.clear)) {
        const digest = password.toString("latin1");
        // nginx sends the salt with the greeting's form; APOP hashes it as is, CRAM-MD5 too.
        verified = method === "apop" ? verifyApop(digest, salt, user.clear) : verifyCramMd5(digest, salt, user.clear);
        clearForBackend = user.clear;
      } else {
        return this.#refuse(who, `${method} needs a stored clear-text secret`, protocol, ip, attempt, true);
      }
    } else if ((method === "oauthbearer" || method === "xoauth2") && this.#options.oauth) {
      return answerOauth(this.#options.oauth, password.toString("latin1"), login, protocol, users, {
        refuse: (reason, message, code) => this.#refuse(who, reason, protocol, ip, attempt, true, message, code),
        ok: (backend, pass) => this.#ok(who, backend, pass),
        temporary: (reason) => {
          this.#log(`${who}: ${reason}`);
          return [
            ["Auth-Status", "Temporary server problem, try again later"],
            ["Auth-Wait", "3"],
          ];
        },
      });
    } else {
      return this.#refuse(who, `method "${method}" not supported`, protocol, ip, attempt, false, "Authentication method not supported", "504 5.5.4");
    }

    if (!verified || user === undefined) return this.#refuse(who, user ? "wrong password" : "unknown user", protocol, ip, attempt, true);
    const backend = backendFor(user, protocol);
    if (!backend)
      return this.#refuse(who, `no backend for protocol "${protocol}"`, protocol, ip, attempt, false, "No mail server for this account", "454 4.7.0");
    return this.#ok(who, backend, clearForBackend);
  }

  /**
   * Rehashes a weaker entry with the password just verified, before the
   * reply (the first login after an upgrade waits one more hash). A failure
   * is logged and does not refuse the login.
   */
  async #upgrade(user: UserEntry, password: Buffer): Promise<void> {
    if (!needsRehash(user.hash, this.#scrypt) || this.#upgradeFailed.has(user.hash)) return;
    const { N, r, p } = this.#scrypt;
    try {
      const done = await this.#store.replaceHash(user.login, user.hash, await hashPasswordAsync(password, this.#scrypt));
      if (done) this.#log(`login "${printable(user.login)}": password hash upgraded to scrypt N=${N} r=${r} p=${p}`);
    } catch (e) {
      this.#upgradeFailed.add(user.hash);
      this.#log(`login "${printable(user.login)}": password hash not upgraded: ${(e as Error).message}`);
    }
  }

  #ok(who: string, backend: Backend, pass: Buffer | undefined): AuthReply {
    this.#log(`${who}: accepted, backend ${backend.host}:${backend.port}`);
    const reply: [string, string][] = [
      ["Auth-Status", "OK"],
      ["Auth-Server", backend.host],
      ["Auth-Port", String(backend.port)],
    ];
    // After APOP / CRAM-MD5 nginx has no password for the backend: it must come from here.
    if (pass) reply.push(["Auth-Pass", pass.toString("latin1")]);
    return reply;
  }

  #refuse(
    who: string,
    reason: string,
    protocol: string,
    ip: string,
    attempt: number,
    counts: boolean,
    message = INVALID_LOGIN,
    smtpCode = "535 5.7.8",
    wait?: number,
  ): AuthReply {
    if (counts) this.#limiter.fail(ip);
    this.#log(`${who}: refused, ${reason}`);
    const reply: [string, string][] = [["Auth-Status", message]];
    const w = wait ?? this.#options.wait;
    // Past maxAttempts, no Auth-Wait: nginx then closes the client, as its documentation advises.
    if (w > 0 && attempt < LAST_WAIT_ATTEMPT) reply.push(["Auth-Wait", String(w)]);
    if (protocol === "smtp") reply.push(["Auth-Error-Code", smtpCode]);
    return reply;
  }
}

function sha256(b: Buffer): Buffer {
  return createHash("sha256").update(b).digest();
}

function isHeaderSafe(b: Buffer): boolean {
  for (const c of b) if (c < 0x20 || c === 0x7f) return false;
  return true;
}

function printable(s: string): string {
  return s.replace(/[\x00-\x1f\x7f"\\]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

/** Starts the HTTP service on host:port (port 0: any free port). */
export async function startAuthServer(options: AuthServerOptions, host: string, port: number): Promise<RunningAuthServer> {
  const service = new AuthService(options);
  await service.load();
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  let refusedSince = 0;
  let refusedCount = 0;
  const server: Server = createServer((req, res) => {
    if (!service.authorized(req.headers)) {
      // Nothing of the request is used (Client-IP least of all). nginx ignores
      // the status and shows the client this Auth-Status as a failure.
      res.statusCode = 403;
      res.setHeader("Auth-Status", "Temporary server problem, try again later");
      res.end();
      // one line per 10 s at most: a flood of bad requests does not flood the log
      refusedCount++;
      const now = Date.now();
      if (now - refusedSince >= 10000) {
        log(`request from ${req.socket.remoteAddress ?? "-"} refused: missing or wrong ${SECRET_HEADER} (${refusedCount} refused since the last such line)`);
        refusedSince = now;
        refusedCount = 0;
      }
      return;
    }
    service.answer(req.headers).then(
      (reply) => {
        res.statusCode = 200;
        for (const [k, v] of reply) res.setHeader(k, Buffer.from(v, "latin1").toString("latin1"));
        res.end();
      },
      () => {
        res.statusCode = 500;
        res.setHeader("Auth-Status", "Temporary server problem, try again later");
        res.end();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    address: server.address() as AddressInfo,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * Postern's reference auth_http service: answers nginx-style auth_http
 * requests from a users file (users.ts). It verifies plain passwords
 * against scrypt hashes, APOP and CRAM-MD5 digests against a stored
 * clear-text secret (refused without one), picks the user's backend for
 * the request's Auth-Protocol, and bounds failures per client IP.
 * Passwords and digests are never logged.
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { readFile, stat } from "node:fs/promises";
import {
  type Backend, DUMMY_HASH, type UserEntry, backendFor, parseUsers, verifyApop, verifyCramMd5, verifyPasswordAsync,
} from "./users.js";

/** Settings of the service. */
export interface AuthServerOptions {
  readonly usersFile: string;
  /** Auth-Wait seconds sent with a refusal (0: none, nginx then closes the client). */
  readonly wait: number;
  /** Backend for SMTP without authentication (`Auth-Method: none`); refused when absent. */
  readonly relay?: Backend | undefined;
  /** Failures per client IP allowed within `failureWindowMs` before every attempt is refused. */
  readonly maxFailures?: number;
  readonly failureWindowMs?: number;
  /** From this Auth-Login-Attempt on, refusals carry no Auth-Wait (the client is disconnected). */
  readonly maxAttempts?: number;
  /** Where log lines go (never containing secrets). */
  readonly log?: (line: string) => void;
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

  constructor(options: AuthServerOptions) {
    this.#options = options;
    this.#log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
    this.#store = new UsersStore(options.usersFile, this.#log);
    this.#limiter = new FailureLimiter(options.maxFailures ?? 20, options.failureWindowMs ?? 300000);
  }

  /** Loads the users file now (the server does it before listening). */
  async load(): Promise<number> {
    return (await this.#store.current()).size;
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
    let verified = false;
    let clearForBackend: Buffer | undefined;
    if (method === "plain") {
      // Unknown users cost one scrypt too, so timing does not tell them apart.
      const ok = await verifyPasswordAsync(password, user?.hash ?? DUMMY_HASH);
      verified = ok && user !== undefined;
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
    } else {
      return this.#refuse(who, `method "${method}" not supported`, protocol, ip, attempt, false, "Authentication method not supported", "504 5.5.4");
    }

    if (!verified || user === undefined) return this.#refuse(who, user ? "wrong password" : "unknown user", protocol, ip, attempt, true);
    const backend = backendFor(user, protocol);
    if (!backend) return this.#refuse(who, `no backend for protocol "${protocol}"`, protocol, ip, attempt, false, "No mail server for this account", "454 4.7.0");
    return this.#ok(who, backend, clearForBackend);
  }

  #ok(who: string, backend: Backend, pass: Buffer | undefined): AuthReply {
    this.#log(`${who}: accepted, backend ${backend.host}:${backend.port}`);
    const reply: [string, string][] = [["Auth-Status", "OK"], ["Auth-Server", backend.host], ["Auth-Port", String(backend.port)]];
    // After APOP / CRAM-MD5 nginx has no password for the backend: it must come from here.
    if (pass) reply.push(["Auth-Pass", pass.toString("latin1")]);
    return reply;
  }

  #refuse(who: string, reason: string, protocol: string, ip: string, attempt: number, counts: boolean, message = INVALID_LOGIN, smtpCode = "535 5.7.8", wait?: number): AuthReply {
    if (counts) this.#limiter.fail(ip);
    this.#log(`${who}: refused, ${reason}`);
    const reply: [string, string][] = [["Auth-Status", message]];
    const w = wait ?? this.#options.wait;
    // Past maxAttempts, no Auth-Wait: nginx then closes the client, as its documentation advises.
    if (w > 0 && attempt < (this.#options.maxAttempts ?? 10)) reply.push(["Auth-Wait", String(w)]);
    if (protocol === "smtp") reply.push(["Auth-Error-Code", smtpCode]);
    return reply;
  }
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
  const server: Server = createServer((req, res) => {
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
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

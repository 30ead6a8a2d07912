/**
 * auth_http_cache: answers of the auth service kept for a while, so a
 * client logging in again with the same credentials skips the request.
 *
 *  - The key is an HMAC (per-master random key) of the auth_http target and
 *    of the request exactly as it would be sent: every header line, so a
 *    changed password, another client certificate, protocol, client
 *    address or server never finds the old entry; credentials are never a
 *    key in clear.
 *  - The answer is sealed (AES-256-GCM) with a second key derived from the
 *    same request: the store (master memory, later Redis) holds nothing it
 *    can read, and an Auth-Pass override in the answer can only be opened
 *    by a client that sends the same credentials again.
 *  - Only final answers are kept, whole (every header Postern reads): success
 *    for `ok=`, refusal for `fail=`; never Auth-Status: WAIT, an answer with
 *    Auth-Wait, an SMTP 4xx (temporary) refusal, an answer whose outcome is
 *    an error, or any failure to get an answer.
 *
 * Trade-offs: docs/auth-http-path.md#cache.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from "node:crypto";
import type { AuthAnswerStore } from "../../event/auth-answer-store.js";
import type { ConnectionLog } from "../../core/log.js";
import type { SourceLocation } from "../../core/errors.js";
import type { AuthOutcome, MailProtocolName } from "../types.js";
import type { AuthResponse } from "./response.js";

/** The auth_http_cache settings. */
export interface AuthCacheConf {
  readonly zone: string;
  readonly size: number;
  /** Lifetime of a success, ms. */
  readonly okMs: number;
  /** Lifetime of a refusal, ms (0: refusals are not cached). */
  readonly failMs: number;
  /** `sync`: shared across the nodes of a cluster through shared_store. */
  readonly sync?: boolean;
  /** Where it was set, for the error when `sync` finds no shared_store. */
  readonly location?: SourceLocation;
}

/** One lookup: its answer if cached, and what storing the fresh answer needs. */
export interface CacheProbe {
  readonly response: AuthResponse | undefined;
  readonly id: string;
  readonly sealKey: Buffer;
}

/** The answer's byte-valued headers: all of them are sealed, so a hit is the very answer the service gave. */
type SealedField = { [K in keyof AuthResponse]-?: NonNullable<AuthResponse[K]> extends Buffer ? K : never }[keyof AuthResponse];

/** Every SealedField: a header added to AuthResponse and missing here fails the build. */
const SEALED: Readonly<Record<SealedField, true>> = {
  failure: true,
  server: true,
  port: true,
  user: true,
  pass: true,
  errorCode: true,
  errorSasl: true,
  method: true,
  proxySsl: true,
  proxySslName: true,
};
const FIELDS = Object.keys(SEALED) as SealedField[];

/**
 * The sealed format's version. Entries of a Postern that sealed fewer
 * headers (before Auth-Proxy-SSL and the rest were kept) still sit in a
 * shared store for up to `ok=` after an upgrade: without it they would open
 * as answers without those headers.
 */
const FORMAT = "2";

export class AuthAnswerCache {
  readonly #store: AuthAnswerStore;
  readonly #conf: AuthCacheConf;
  /** Separates targets: the same request to another auth service is another question. */
  readonly #scope: string;

  constructor(store: AuthAnswerStore, conf: AuthCacheConf, scope: string) {
    this.#store = store;
    this.#conf = conf;
    this.#scope = scope;
  }

  /** Looks the request up; undefined when the cache cannot be used now. */
  async lookup(request: Buffer, log: ConnectionLog): Promise<CacheProbe | undefined> {
    const secret = await this.#store.secret();
    const id = derive(secret, "id", this.#scope, request).toString("hex");
    const sealKey = derive(secret, "seal", this.#scope, request);
    const sealed = await this.#store.get(id);
    const response = sealed ? open(sealed, sealKey) : undefined;
    if (response) {
      sealKey.fill(0);
      log.debug(`auth http cache hit`);
    } else {
      log.debug(`auth http cache miss`);
    }
    return { response, id, sealKey };
  }

  /** Keeps a fresh answer by its final outcome when that is cacheable; the seal key is wiped either way. */
  store(probe: CacheProbe, response: AuthResponse, outcome: AuthOutcome, protocol: MailProtocolName): void {
    try {
      const ttl = this.#lifetime(response, outcome, protocol);
      if (ttl > 0) this.#store.set(probe.id, seal(response, probe.sealKey), ttl);
    } finally {
      probe.sealKey.fill(0);
    }
  }

  #lifetime(response: AuthResponse, outcome: AuthOutcome, protocol: MailProtocolName): number {
    if (response.wait || response.sleep > 0) return 0;
    // an invalid Auth-Proxy-SSL(-Name) ends in the proxy's internal error (proxy-ssl/plan.ts)
    if (outcome.kind === "ok") return outcome.backend.tls?.kind === "invalid" ? 0 : this.#conf.okMs;
    if (outcome.kind !== "refused") return 0;
    if (protocol === "smtp" && (outcome.errorCode ?? "").startsWith("4")) return 0;
    return this.#conf.failMs;
  }
}

function derive(secret: Buffer, purpose: string, scope: string, request: Buffer): Buffer {
  return createHmac("sha256", secret).update(`${purpose}\0${scope}\0`).update(request).digest();
}

/** iv | tag | AES-256-GCM(JSON of the answer's fields, base64). */
function seal(response: AuthResponse, key: Buffer): Buffer {
  const plain: Record<string, string> = { v: FORMAT };
  for (const f of FIELDS) {
    const v = response[f];
    if (v !== undefined) plain[f] = v.toString("base64");
  }
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  const text = Buffer.from(JSON.stringify(plain), "utf8");
  const body = cipher.update(text);
  const final = cipher.final();
  text.fill(0);
  return Buffer.concat([iv, cipher.getAuthTag(), body, final]);
}

/** The answer, or undefined when the value does not open with this key or is malformed. */
function open(sealed: Buffer, key: Buffer): AuthResponse | undefined {
  if (sealed.length < 29) return undefined;
  let text: Buffer;
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, sealed.subarray(0, 12));
    decipher.setAuthTag(sealed.subarray(12, 28));
    text = Buffer.concat([decipher.update(sealed.subarray(28)), decipher.final()]);
  } catch {
    return undefined;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text.toString("utf8"));
  } catch {
    return undefined;
  } finally {
    text.fill(0);
  }
  if (typeof parsed !== "object" || parsed === null || (parsed as { v?: unknown }).v !== FORMAT) return undefined;
  const fields: Partial<Record<(typeof FIELDS)[number], Buffer>> = {};
  for (const f of FIELDS) {
    const v = (parsed as Record<string, unknown>)[f];
    if (v === undefined) continue;
    if (typeof v !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) return undefined;
    fields[f] = Buffer.from(v, "base64");
  }
  return {
    ...fields,
    failure: fields.failure,
    server: fields.server,
    port: fields.port,
    user: fields.user,
    pass: fields.pass,
    errorCode: fields.errorCode,
    wait: false,
    sleep: 0,
  };
}

/**
 * A scenario-side wrapper around MailClient that records what was sent and what
 * was read, in reading units (lines, replies), so the record does not depend on
 * how the proxy split its writes into TCP segments.
 */
import { createHmac } from "node:crypto";
import { MailClient, type ClientTlsOptions } from "../../support/client.js";
import type { AuthHandler, AuthReply, AuthRequest } from "../../support/fake-auth.js";
import type { PairEnv } from "./pair.js";

/** A client conversation with a readable log: `C: ...` sent, `S: ...` read, `closed: ...` EOF. */
export class Talk {
  readonly log: string[] = [];
  readonly client: MailClient;

  private constructor(client: MailClient) {
    this.client = client;
  }

  /** Connects to 127.0.0.1:port (optionally with implicit TLS). */
  static async open(port: number, tls?: ClientTlsOptions, timeoutMs = 5000): Promise<Talk> {
    const options = tls ? { port, tls, timeoutMs } : { port, timeoutMs };
    return new Talk(await MailClient.connect(options));
  }

  /** Sends bytes as they are. */
  async send(data: string): Promise<void> {
    this.log.push(`C: ${data}`);
    await this.client.send(data);
  }

  /** Reads one line. */
  async line(timeoutMs?: number): Promise<string> {
    const l = await this.client.readLine(timeoutMs);
    this.log.push(`S: ${l}`);
    return l;
  }

  /** Reads up to and including the first match of `re`. */
  async until(re: RegExp, timeoutMs?: number): Promise<string> {
    const data = await this.client.read(re, timeoutMs);
    this.log.push(`S: ${data}`);
    return data;
  }

  /** Sends a command and reads one line. */
  async cmd(data: string, timeoutMs?: number): Promise<string> {
    await this.send(data);
    return this.line(timeoutMs);
  }

  /** Waits for the server to close; records what came before. */
  async closed(timeoutMs?: number): Promise<string> {
    const data = await this.client.expectClosed(timeoutMs);
    this.log.push(`closed after: ${JSON.stringify(data)}`);
    return data;
  }

  /** Records whatever arrives within `ms` without expecting a close. */
  async quiet(ms: number): Promise<string> {
    const data = await this.client.readAll(ms);
    this.log.push(`within ${ms} ms: ${JSON.stringify(data)}${this.client.closed ? " (closed)" : ""}`);
    return data;
  }

  /** Upgrades to TLS (after the STARTTLS reply was read). */
  async startTls(options: ClientTlsOptions = {}): Promise<void> {
    await this.client.startTls(options);
    this.log.push("-- TLS --");
  }

  /** Notes something in the log (e.g. an elapsed-time bucket). */
  note(text: string): void {
    this.log.push(`note: ${text}`);
  }

  close(): void {
    this.client.close();
  }
}

/** An auth handler that answers the first `n` requests with `first` and later ones with `then`. */
export function firstThen(n: number, first: AuthHandler, then: AuthHandler): AuthHandler {
  let count = 0;
  return (req: AuthRequest): AuthReply | Promise<AuthReply> => (count++ < n ? first(req) : then(req));
}

/** An OK reply pointing to 127.0.0.1:port, with extra headers. */
export function ok(port: number, extra: Array<[string, string]> = []): AuthHandler {
  return () => ({ headers: [["Auth-Status", "OK"], ["Auth-Server", "127.0.0.1"], ["Auth-Port", String(port)], ...extra] });
}

/** base64 of a latin1 string. */
export function b64(text: string): string {
  return Buffer.from(text, "latin1").toString("base64");
}

/**
 * OK to the named backend of a side; methods that carry no clear-text password
 * (CRAM-MD5, APOP, EXTERNAL) get `Auth-Pass: secret`, as a real auth server must send.
 */
export function okToBackend(name: string, extra: Array<[string, string]> = []): (env: PairEnv) => AuthHandler {
  return (env) => (req) => {
    const pass: Array<[string, string]> = ["cram-md5", "apop", "external"].includes(req.header("Auth-Method") ?? "") ? [["Auth-Pass", "secret"]] : [];
    return ok(env.backends[name]!, [...pass, ...extra])(req);
  };
}

/** A failure reply with an optional Auth-Wait (and Auth-Error-Code). */
export function refusal(message: string, wait?: number, code?: string): AuthHandler {
  const headers: Array<[string, string]> = [["Auth-Status", message]];
  if (wait !== undefined) headers.push(["Auth-Wait", String(wait)]);
  if (code !== undefined) headers.push(["Auth-Error-Code", code]);
  return () => ({ headers });
}

/** The CRAM-MD5 response digest: HMAC-MD5 of the challenge keyed with the password. */
export function cramDigest(password: string, challenge: string): string {
  return createHmac("md5", password).update(challenge, "latin1").digest("hex");
}

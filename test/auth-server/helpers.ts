/** Helpers shared by the auth-server tests: CLI I/O, nginx-shaped requests. */
import assert from "node:assert/strict";
import { connect } from "node:net";
import { PassThrough, Readable } from "node:stream";
import { runPasswd, type CliIo } from "../../src/auth-server/cli.js";
import type { AuthHttpHeader } from "../../src/mail/auth-http/module.js";
import { buildAuthRequest } from "../../src/mail/auth-http/request.js";
import { parseAuthResponse, type AuthResponse } from "../../src/mail/auth-http/response.js";
import type { Credentials, MailProtocolName } from "../../src/mail/types.js";

/** CLI I/O with `stdinText` as input; out() and err() return what was written. */
export function io(stdinText: string): CliIo & { out: () => string; err: () => string } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = "";
  let err = "";
  stdout.on("data", (d) => (out += d));
  stderr.on("data", (d) => (err += d));
  return { stdin: Readable.from([stdinText]), stdout, stderr, out: () => out, err: () => err };
}

/** `postern passwd ARGS` with the password on stdin; asserts success. */
export async function passwd(args: string[], password: string): Promise<void> {
  const x = io(`${password}\n`);
  const code = await runPasswd(args, x);
  assert.equal(code, 0, x.err());
}

export const plain = (login: string, password: string): Credentials => ({ method: "plain", login: Buffer.from(login), password: Buffer.from(password) });

/** The raw bytes of an nginx-shaped request (HTTP/1.0, Client-IP `clientAddr`, `headers` as auth_http_header, Auth-Login-Attempt `attempt`). */
export function authRequest(
  protocol: MailProtocolName,
  credentials: Credentials,
  clientAddr = "127.0.0.1",
  headers: readonly AuthHttpHeader[] = [],
  attempt = 1,
): Buffer {
  const smtp = protocol === "smtp" ? { helo: "c", esmtp: true, clientHost: "[UNAVAILABLE]" } : undefined;
  return buildAuthRequest({
    session: { id: 1, protocol, clientAddr, clientPort: 1, localAddr: "127.0.0.1", localPort: 1, unixClient: false, smtp },
    credentials,
    attempt,
    uri: "/auth",
    hostHeader: "127.0.0.1",
    headers,
    passClientCert: false,
  });
}

/** Sends a request on its own connection and reads to close; the raw answer. */
export function exchange(port: number, request: Buffer): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const s = connect(port, "127.0.0.1");
    let data = "";
    s.on("data", (d) => (data += d.toString("latin1")));
    s.on("end", () => resolve(data));
    s.on("error", reject);
    s.setTimeout(10000, () => reject(new Error("timeout")));
    s.write(request);
  });
}

/** As nginx would ask; the parsed answer plus the raw text. */
export async function ask(
  port: number,
  protocol: MailProtocolName,
  credentials: Credentials,
  clientAddr = "127.0.0.1",
  headers: readonly AuthHttpHeader[] = [],
  attempt = 1,
): Promise<AuthResponse & { raw: string }> {
  const raw = await exchange(port, authRequest(protocol, credentials, clientAddr, headers, attempt));
  const state = parseAuthResponse(Buffer.from(raw, "latin1"));
  assert.equal(state.kind, "done", raw);
  if (state.kind !== "done") throw new Error("unreachable");
  return { ...state.response, raw };
}

export const text = (b: Buffer | undefined): string | undefined => b?.toString("latin1");

/** Shared set-up for the auth_http path tests: a connection log in memory and settings for authenticate(). */
import { ConnectionLog, ErrorLog, MemorySink } from "../../../src/core/log.js";
import { type AuthenticateParams } from "../../../src/mail/auth-http/client.js";
import type { AuthHttpSettings } from "../../../src/mail/auth-http/module.js";
import { parseAuthHttpTarget } from "../../../src/mail/auth-http/target.js";
import type { Credentials, SessionInfo } from "../../../src/mail/types.js";

export const SESSION: SessionInfo = {
  id: 7,
  protocol: "imap",
  clientAddr: "127.0.0.1",
  clientPort: 40000,
  localAddr: "127.0.0.1",
  localPort: 143,
  unixClient: false,
};

export function plain(login: string, password: string): Credentials {
  return { method: "plain", login: Buffer.from(login), password: Buffer.from(password) };
}

/** Settings for an `auth_http ARGS` line plus extra fields; one log shared by every login of the test. */
export function makeSetup(args: string[], extra: Partial<AuthHttpSettings> = {}) {
  const sink = new MemorySink(1 << 20, "debug");
  const errorLog = new ErrorLog([sink]);
  const target = parseAuthHttpTarget(args);
  const settings: AuthHttpSettings = { url: target, target, headers: [], timeout: 2000, passClientCert: false, ...extra };
  const params = (credentials: Credentials = plain("user", "secret"), session: SessionInfo = SESSION): AuthenticateParams => ({
    settings,
    address: target.address,
    session,
    credentials,
    attempt: 1,
    log: new ConnectionLog(errorLog, session.id, { client: session.clientAddr, server: "127.0.0.1:143", login: "user" }),
  });
  /** The log lines above debug, as `[level] message`. */
  const lines = (): string[] =>
    sink.contents
      .trim()
      .split("\n")
      .filter((l) => l !== "" && !/ \[debug\] /.test(l))
      .map((l) => l.replace(/^\S+ \S+ (\[\w+\]) \d+#\d+: \*\d+ /, "$1 ").replace(/, client: .*$/, ""));
  return { settings, params, lines, sink };
}

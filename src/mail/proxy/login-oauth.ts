/**
 * The backend login with a bearer token, when the auth service asks for it
 * with `Auth-Method: oauthbearer` or `xoauth2` in its OK answer: the
 * backend's capabilities are read first (IMAP CAPABILITY, POP3 CAPA) and
 * must offer the mechanism, else the login fails (internal error, the
 * backend's line logged); then AUTHENTICATE / AUTH without an initial
 * response (every SASL server takes that), the token built from Auth-User
 * and Auth-Pass. A token or user that does not fit the mechanism's syntax
 * is never sent (commandLine refuses CR, LF and NUL; ^A and spaces are
 * refused here).
 * Rules: docs/oauth.md#backend-login-with-the-token.
 */
import { AGAIN, INVALID, OK, type LoginStep, type ReplyCheck, UnsafeLineError, commandLine, startsWith } from "./login-step.js";
import { taggedOk } from "./login-imap.js";
import { SMTP_AUTH_OK, code220or250, code235, smtpLoginInput, smtpReply, xclientLine } from "./login-smtp.js";
import type { BackendLoginInput } from "./login-step.js";
import type { SmtpInfo } from "../types.js";

/** The mechanisms a backend login can use a token with. */
export type BackendOauthMechanism = "oauthbearer" | "xoauth2";

/** The SASL client response carrying `token` for `login`, base64. */
export function oauthClientResponse(mechanism: BackendOauthMechanism, login: Buffer, token: Buffer): string {
  const user = login.toString("latin1");
  const bearer = token.toString("latin1");
  if (/[\x00-\x20\x7f]/.test(bearer)) throw new UnsafeLineError("token");
  if (/[\x00-\x1f\x7f]/.test(user)) throw new UnsafeLineError("login");
  const text =
    mechanism === "xoauth2"
      ? `user=${user}\x01auth=Bearer ${bearer}\x01\x01`
      : `n,${user === "" ? "" : `a=${user.replace(/=/g, "=3D").replace(/,/g, "=2C")}`},\x01auth=Bearer ${bearer}\x01\x01`;
  return Buffer.from(text, "latin1").toString("base64");
}

/** True when the reply's text names the mechanism as a capability word (`AUTH=XOAUTH2`, `SASL ... XOAUTH2`). */
function offers(buf: Buffer, len: number, pattern: RegExp): boolean {
  return pattern.test(buf.toString("latin1", 0, len));
}

/** The tagged OK of CAPABILITY, holding `AUTH=<MECH>`. */
function imapCapability(tag: string, mechanism: BackendOauthMechanism): ReplyCheck {
  const ok = taggedOk(tag);
  const word = new RegExp(`[ =]AUTH=${mechanism}(?=[ \\r])`, "i");
  return (buf, len) => {
    const verdict = ok(buf, len);
    return verdict.kind === "ok" && !offers(buf, len, word) ? INVALID : verdict;
  };
}

/** greeting -> CAPABILITY, OK with AUTH=<MECH> -> AUTHENTICATE <MECH>, + -> token, tagged OK -> relay. */
export function imapOauthLoginSteps(tag: string, mechanism: BackendOauthMechanism, login: Buffer, token: Buffer): LoginStep[] {
  const name = mechanism.toUpperCase();
  const response = oauthClientResponse(mechanism, login, token);
  return [
    {
      state: "start",
      check: startsWith("* OK"),
      next: { kind: "send", action: "sending CAPABILITY command to upstream", line: commandLine("tag", `${tag} CAPABILITY`) },
    },
    {
      state: "capability",
      check: imapCapability(tag, mechanism),
      next: { kind: "send", action: `sending AUTHENTICATE ${name} command to upstream`, line: commandLine("tag", `${tag} AUTHENTICATE ${name}`) },
    },
    { state: "authenticate", check: startsWith("+"), next: { kind: "send", action: "sending token to upstream", line: commandLine("token", response) } },
    { state: "token", check: taggedOk(tag), next: { kind: "done", reply: "relay" } },
  ];
}

/** POP3 CAPA's multi-line answer, complete, with `SASL ... <MECH>`. */
function pop3Capa(mechanism: BackendOauthMechanism): ReplyCheck {
  const word = new RegExp(`\\r\\nSASL [^\\r]*\\b${mechanism}(?=[ \\r])`, "i");
  return (buf, len) => {
    if (buf.toString("latin1", 0, 3) !== "+OK") return INVALID;
    const text = buf.toString("latin1", 0, len);
    if (!text.endsWith("\r\n.\r\n")) return AGAIN;
    return offers(buf, len, word) ? OK : INVALID;
  };
}

/** greeting -> CAPA, +OK with SASL <MECH> -> AUTH <MECH>, + -> token, +OK -> relay. */
export function pop3OauthLoginSteps(mechanism: BackendOauthMechanism, login: Buffer, token: Buffer): LoginStep[] {
  const name = mechanism.toUpperCase();
  const response = oauthClientResponse(mechanism, login, token);
  return [
    { state: "start", check: startsWith("+OK"), next: { kind: "send", action: "sending CAPA command to upstream", line: commandLine("capa", "CAPA") } },
    {
      state: "capa",
      check: pop3Capa(mechanism),
      next: { kind: "send", action: `sending AUTH ${name} command to upstream`, line: commandLine("auth", `AUTH ${name}`) },
    },
    { state: "auth", check: startsWith("+ "), next: { kind: "send", action: "sending token to upstream", line: commandLine("token", response) } },
    { state: "token", check: startsWith("+OK"), next: { kind: "done", reply: "relay" } },
  ];
}

/** An EHLO reply whose AUTH line names the mechanism. */
function smtpEhloOffering(mechanism: BackendOauthMechanism): ReplyCheck {
  const word = new RegExp(`(^|\\n)250[ -]AUTH[ =][^\\r]*\\b${mechanism}(?=[ \\r])`, "i");
  return smtpReply((buf, len) => (startsWith("250")(buf, len).kind === "ok" && offers(buf, len, word) ? OK : INVALID));
}

/**
 * EHLO server_name [-> XCLIENT (no LOGIN: the backend authenticates the
 * token) -> EHLO again, the capabilities after XCLIENT], 250 with AUTH
 * <MECH> -> `AUTH <MECH> <token>` (RFC 4954's initial response), 235 ->
 * nginx's own 235 to the client.
 */
export function smtpOauthLoginSteps(input: BackendLoginInput, dialogue: SmtpInfo, mechanism: BackendOauthMechanism): LoginStep[] {
  const smtp = smtpLoginInput(input, dialogue);
  const ehlo = commandLine("server_name", `EHLO ${smtp.serverName}`);
  const auth = commandLine("auth", `AUTH ${mechanism.toUpperCase()} ${oauthClientResponse(mechanism, input.login, input.password)}`);
  const offering = smtpEhloOffering(mechanism);
  const steps: LoginStep[] = [{ state: "start", check: smtpReply(startsWith("220")), next: { kind: "send", action: "sending EHLO to upstream", line: ehlo } }];
  if (smtp.xclient) {
    const xclient = xclientLine({ ...smtp, smtpAuth: true });
    steps.push({ state: "helo_xclient", check: smtpReply(startsWith("250")), next: { kind: "send", action: "sending XCLIENT to upstream", line: xclient } });
    steps.push({ state: "xclient_helo", check: code220or250, next: { kind: "send", action: "sending EHLO to upstream", line: ehlo } });
  }
  steps.push({ state: "helo_auth", check: offering, next: { kind: "send", action: `sending AUTH ${mechanism.toUpperCase()} to upstream`, line: auth } });
  steps.push({ state: "auth_token", check: code235, next: { kind: "done", reply: SMTP_AUTH_OK } });
  return steps;
}

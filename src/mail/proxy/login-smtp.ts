/**
 * The SMTP backend login: EHLO/HELO with our server_name,
 * optionally XCLIENT and a replay of the client's HELO, then MAIL/RCPT
 * (smtp_auth none), AUTH PLAIN (proxy_smtp_auth) or nothing.
 * Rules: docs/behaviour/smtp.md#smtp-12-backend-login.
 */
import { AGAIN, OK, type LoginStep, type ReplyCheck, type StepNext, UnsafeLineError, commandLine, startsWith } from "./login-step.js";
import { hasLineBreakOrNul } from "../line-bytes.js";
import type { SmtpInfo } from "../types.js";
import { serverName } from "../core-module.js";
import { proxySmtpAuth, xclient } from "./module.js";
import type { BackendLoginInput } from "./login-step.js";

/** Inputs of the SMTP dialogue. */
export interface SmtpLoginInput {
  /** `server_name` of this server. */
  readonly serverName: string;
  /** The `xclient` and `proxy_smtp_auth` directives. */
  readonly xclient: boolean;
  readonly smtpAuth: boolean;
  /** The client's HELO/EHLO argument ("" if none) and whether it used EHLO. */
  readonly helo: string;
  readonly esmtp: boolean;
  /** True for `smtp_auth none` sessions (started by RCPT TO). */
  readonly authNone: boolean;
  /** The client's MAIL and RCPT lines, without CRLF (authNone only). */
  readonly from: string;
  readonly to: string;
  /** Client address text (after realip) and whether it is IPv6 / a UNIX socket. */
  readonly clientAddr: string;
  readonly clientIpv6: boolean;
  /** Resolved client name, `[UNAVAILABLE]` or `[TEMPUNAVAIL]`. */
  readonly clientHost: string;
  readonly login: Buffer;
  /** Empty when there is none (e.g. EXTERNAL without Auth-Pass). */
  readonly password: Buffer;
}

/** nginx's own reply to an authenticated client at the switch to proxying. */
export const SMTP_AUTH_OK = Buffer.from("235 2.0.0 OK\r\n", "latin1");

/**
 * SMTP replies may be multi-line (`250-...`); only a reply whose last line
 * has a space after the code is complete. Then `inner` checks the code.
 */
export function smtpReply(inner: ReplyCheck): ReplyCheck {
  return (buf, len) => {
    if (buf[3] === 0x2d) {
      // Find the CRLF that starts the last line (the final CRLF excluded).
      let m = len - 7;
      while (m > 0) {
        if (buf[m] === 0x0d && buf[m + 1] === 0x0a) break;
        m--;
      }
      if (m <= 0 || buf[m + 5] === 0x2d) return AGAIN;
    }
    return inner(buf, len);
  };
}

const code220 = smtpReply(startsWith("220"));
const code250 = smtpReply(startsWith("250"));
export const code235 = smtpReply(startsWith("235"));
export const code220or250: ReplyCheck = smtpReply((buf, len) => (startsWith("220")(buf, len).kind === "ok" ? OK : startsWith("250")(buf, len)));
const anyReply = smtpReply(() => OK);

/** xtext (RFC 1891): bytes <= SP, `+`, `=` and >= DEL become `+XX`. */
export function xtext(value: Buffer): Buffer {
  let out = "";
  for (const b of value) {
    out += b <= 0x20 || b >= 0x7f || b === 0x2b || b === 0x3d ? `+${b.toString(16).toUpperCase().padStart(2, "0")}` : String.fromCharCode(b);
  }
  return Buffer.from(out, "latin1");
}

/** `XCLIENT ADDR=[IPV6:]<ip>[ LOGIN=<xtext>] NAME=<host>\r\n`. */
export function xclientLine(input: SmtpLoginInput): Buffer {
  const parts: Buffer[] = [Buffer.from(`XCLIENT ADDR=${input.clientIpv6 ? "IPV6:" : ""}${input.clientAddr}`, "latin1")];
  if (input.login.length > 0 && !input.smtpAuth) parts.push(Buffer.from(" LOGIN=", "latin1"), xtext(input.login));
  parts.push(Buffer.from(` NAME=${input.clientHost}`, "latin1"));
  return commandLine("XCLIENT", ...parts);
}

/** `AUTH PLAIN base64(NUL login NUL password)`. */
function authPlainLine(input: SmtpLoginInput): Buffer {
  // base64 hides CR and LF, but a NUL would move the field boundaries
  if (hasLineBreakOrNul(input.login)) throw new UnsafeLineError("login");
  if (hasLineBreakOrNul(input.password)) throw new UnsafeLineError("password");
  const token = Buffer.concat([Buffer.from([0]), input.login, Buffer.from([0]), input.password]).toString("base64");
  return commandLine("AUTH", `AUTH PLAIN ${token}`);
}

/** The SMTP login for a session: the proxy's directives, auth_http's answer, and what the client said. */
export function smtpBackendLogin(input: BackendLoginInput, dialogue: SmtpInfo): LoginStep[] {
  return smtpLoginSteps(smtpLoginInput(input, dialogue));
}

/** The SMTP dialogue's inputs (also for login-oauth.ts). */
export function smtpLoginInput(input: BackendLoginInput, dialogue: SmtpInfo): SmtpLoginInput {
  return {
    serverName: serverName(input.conf),
    xclient: input.conf.get(xclient),
    smtpAuth: input.conf.get(proxySmtpAuth),
    helo: dialogue.helo,
    esmtp: dialogue.esmtp,
    authNone: input.authMethod === "none",
    from: dialogue.from ?? "",
    to: dialogue.to ?? "",
    clientAddr: input.session.unixClient ? "unix:" : input.session.clientAddr,
    clientIpv6: !input.session.unixClient && input.session.clientAddr.includes(":"),
    clientHost: dialogue.clientHost,
    login: input.login,
    password: input.password,
  };
}

/** The steps for this session; the branch is fixed by the inputs up front. */
export function smtpLoginSteps(input: SmtpLoginInput): LoginStep[] {
  const steps: LoginStep[] = [];
  const greet = commandLine("server_name", `${input.esmtp || input.xclient ? "EHLO" : "HELO"} ${input.serverName}`);
  steps.push({ state: "start", check: code220, next: { kind: "send", action: "sending HELO/EHLO to upstream", line: greet } });
  // The check of the reply to whatever was sent last before the auth part.
  let pending = code250;
  let pendingState = "helo";
  if (input.xclient) {
    steps.push({ state: "helo_xclient", check: code250, next: { kind: "send", action: "sending XCLIENT to upstream", line: xclientLine(input) } });
    pending = code220or250;
    pendingState = "xclient";
    if (input.helo.length > 0) {
      const line = commandLine("HELO", `${input.esmtp ? "EHLO" : "HELO"} ${input.helo}`);
      steps.push({ state: "xclient_helo", check: code220or250, next: { kind: "send", action: "sending client HELO/EHLO to upstream", line } });
      pending = code250;
      pendingState = "helo";
    }
  }
  if (input.authNone) {
    steps.push({
      state: `${pendingState}_from`,
      check: pending,
      next: { kind: "send", action: "sending MAIL FROM to upstream", line: commandLine("MAIL", input.from) },
    });
    steps.push({ state: "from", check: code250, next: { kind: "send", action: "sending RCPT TO to upstream", line: commandLine("RCPT", input.to) } });
    steps.push({ state: "to", check: anyReply, next: { kind: "done", reply: "relay" } });
  } else if (input.smtpAuth) {
    const next: StepNext =
      input.password.length === 0
        ? { kind: "fail", action: "sending AUTH to upstream", message: "no password available" }
        : { kind: "send", action: "sending AUTH to upstream", line: authPlainLine(input) };
    steps.push({ state: `${pendingState}_auth`, check: pending, next });
    steps.push({ state: "auth_plain", check: code235, next: { kind: "done", reply: SMTP_AUTH_OK } });
  } else {
    steps.push({ state: pendingState, check: pending, next: { kind: "done", reply: SMTP_AUTH_OK } });
  }
  return steps;
}

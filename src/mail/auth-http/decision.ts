/**
 * What a parsed auth_http response means for the session: refuse (with
 * Auth-Wait honoured), ask again later, or proxy to a backend. Pure: the
 * log line to write is returned, not written.
 *
 * Rule: docs/behaviour/auth-http.md#ah-5-decision.
 */
import { isIP } from "node:net";
import type { LogLevel } from "../../core/log.js";
import type { AuthOutcome, BackendTlsChoice, MailProtocolName } from "../types.js";
import { isValidTlsName } from "../proxy-ssl/module.js";
import type { AuthResponse } from "./response.js";
import { hasLineBreakOrNul } from "../line-bytes.js";
import { logEscape } from "../../core/log.js";

/** The login state going into the decision. */
export interface DecisionInput {
  readonly protocol: MailProtocolName;
  readonly login: Buffer;
  /** The password nginx still holds; undefined when it has none (EXTERNAL, none, or a digest withdrawn with the salt). */
  readonly password: Buffer | undefined;
  /** The auth server as log lines name it (`127.0.0.1:9000`). */
  readonly peer: string;
}

/** A line for the connection log. */
export interface DecisionLog {
  readonly level: LogLevel;
  readonly message: string;
}

/** Either a final outcome or "send the request again after `sleep` seconds". */
export type Decision =
  | { readonly kind: "final"; readonly outcome: AuthOutcome; readonly log?: DecisionLog | undefined }
  | { readonly kind: "again"; readonly sleep: number; readonly login: Buffer; readonly password: Buffer | undefined };

/** The SMTP reply code used when the auth server sends no Auth-Error-Code. */
export const DEFAULT_SMTP_ERROR_CODE = "535 5.7.0";

/** Decides what a complete response means. */
export function decide(response: AuthResponse, input: DecisionInput): Decision {
  // Auth-User and Auth-Pass apply whatever the status, as in nginx.
  const login = response.user ?? input.login;
  const password = response.pass ?? input.password;
  // Auth-User and Auth-Pass go into the backend's login lines (and the next
  // request): a NUL there would split an AUTH PLAIN token or a USER line.
  // (CR and LF cannot arrive: they end the header line.) nginx passes them on.
  const fail = (message: string): Decision => ({ kind: "final", outcome: { kind: "error" }, log: { level: "error", message } });
  if (response.user && hasLineBreakOrNul(response.user)) return fail(`auth http server ${input.peer} sent invalid login with CR, LF or NUL`);
  if (response.pass && hasLineBreakOrNul(response.pass)) return fail(`auth http server ${input.peer} sent invalid password with CR, LF or NUL`);

  const failure = response.failure;
  // nginx keeps the SMTP message as is, so an empty one counts as no failure;
  // for IMAP and POP3 it has already built a non-empty reply line.
  if (failure !== undefined && (input.protocol !== "smtp" || failure.length > 0)) {
    // one char per byte: the client gets the service's bytes as they came (session.ts sends the reply in latin1)
    const message = failure.toString("latin1");
    const code = response.errorCode && response.errorCode.length > 0 ? response.errorCode.toString("latin1") : DEFAULT_SMTP_ERROR_CODE;
    const outcome: AuthOutcome = {
      kind: "refused",
      message,
      errorCode: input.protocol === "smtp" ? code : undefined,
      wait: response.sleep > 0 ? response.sleep : undefined,
      ...withErrorSasl(response),
    };
    return { kind: "final", outcome, log: { level: "info", message: `client login failed: "${logEscape(failure)}"` } };
  }

  if (response.wait) return { kind: "again", sleep: response.sleep, login, password };

  const server = response.server;
  const port = response.port;
  if (!server || server.length === 0 || !port || port.length === 0) {
    return fail(`auth http server ${input.peer} did not send server or port`);
  }
  if (password === undefined && input.protocol !== "smtp") {
    return fail(`auth http server ${input.peer} did not send password`);
  }
  const host = serverAddress(server.toString("latin1"));
  if (host === undefined) return fail(`auth http server ${input.peer} sent invalid server address:"${logEscape(server)}"`);
  const portText = port.toString("latin1");
  const portNumber = /^[0-9]+$/.test(portText) ? Number(portText) : NaN;
  if (!(portNumber >= 1 && portNumber <= 65535)) {
    return fail(`auth http server ${input.peer} sent invalid server port:"${logEscape(port)}"`);
  }
  const tls = backendTlsChoice(response, input.peer);
  const backend = tls ? { host, port: portNumber, tls } : { host, port: portNumber };
  return {
    kind: "final",
    outcome: { kind: "ok", backend, login, password: password ?? Buffer.alloc(0), ...withErrorSasl(response), ...withBackendMethod(response) },
  };
}

/** Auth-Error-SASL carried on unchecked, only when sent (outcome.ts checks it for OAuth logins). */
function withErrorSasl(response: AuthResponse): { authErrorSasl?: Buffer } {
  return response.errorSasl ? { authErrorSasl: response.errorSasl } : {};
}

/**
 * Auth-Server as nginx's ngx_parse_addr takes it: IPv4 (octets may have
 * leading zeros: `010.0.0.1` is 10.0.0.1) or IPv6 without a zone (`%eth0`);
 * the address in its usual form, or undefined.
 */
function serverAddress(text: string): string | undefined {
  if (/^[0-9]+(\.[0-9]+){3}$/.test(text)) {
    const octets = text.split(".").map(Number);
    return octets.every((o) => o <= 255) ? octets.join(".") : undefined;
  }
  return isIP(text) === 6 && !text.includes("%") ? text : undefined;
}

/** An OK answer's Auth-Method (the backend login's mechanism), carried on unchecked only when sent. */
function withBackendMethod(response: AuthResponse): { backendMethod?: Buffer } {
  return response.method ? { backendMethod: response.method } : {};
}

/**
 * `Auth-Proxy-SSL: on | starttls | off` and `Auth-Proxy-SSL-Name: name`,
 * checked strictly (exact lower-case words; a host name or IP address).
 * Rule: docs/backend-tls.md#per-user-choice-from-auth_http.
 */
export function backendTlsChoice(response: AuthResponse, peer: string): BackendTlsChoice | undefined {
  const { proxySsl, proxySslName } = response;
  if (proxySsl === undefined && proxySslName === undefined) return undefined;
  let mode: "off" | "on" | "starttls" | undefined;
  if (proxySsl !== undefined) {
    const text = proxySsl.toString("latin1");
    if (text !== "on" && text !== "off" && text !== "starttls") {
      return { kind: "invalid", message: `auth http server ${peer} sent invalid Auth-Proxy-SSL:"${logEscape(proxySsl)}"` };
    }
    mode = text;
  }
  let name: string | undefined;
  if (proxySslName !== undefined) {
    const text = proxySslName.toString("latin1");
    if (!isValidTlsName(text)) return { kind: "invalid", message: `auth http server ${peer} sent invalid Auth-Proxy-SSL-Name:"${logEscape(proxySslName)}"` };
    name = text;
  }
  return { kind: "valid", mode, name };
}

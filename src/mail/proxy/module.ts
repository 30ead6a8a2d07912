/**
 * ngx_mail_proxy_module's directives. The session side
 * lives in proxy.ts, the login dialogues in login-*.ts, the relay in relay.ts.
 * Rules: docs/behaviour/session.md#session-9-backend-login, #session-10-relay.
 */
import type { ConfModule, Context } from "../../conf/directive.js";
import { enumeration, flag, msec, size } from "../../conf/slots.js";

const both: readonly Context[] = ["mail", "server"];

/**
 * `proxy on|off`: nginx still parses it but reads the value nowhere;
 * proxying always happens. Kept so old configs load.
 */
export const proxyFlag = flag("proxy", false, { contexts: both, doc: "Parsed and ignored, as in nginx (proxying always happens)." });
/** Buffer for backend -> client data; also the longest backend reply during login. */
export const proxyBuffer = size("proxy_buffer", 4096, {
  contexts: both,
  defaultText: "4k",
  doc: "Size of the backend-to-client buffer and the longest backend reply accepted during login.",
});
/** Pass a failing backend reply to the client instead of the internal error line. */
export const proxyPassErrorMessage = flag("proxy_pass_error_message", false, {
  contexts: both,
  doc: "Send the backend's error reply during login to the client.",
});
/** Send a PROXY protocol header (v1 text or v2 binary) to the backend. */
export const proxyProtocol = enumeration("proxy_protocol", ["off", "on", "v2"], "off", {
  contexts: both,
  doc: "Send a PROXY protocol header (on = v1, v2 = binary) to the backend.",
});
/** SMTP: log in to the backend with AUTH PLAIN. */
export const proxySmtpAuth = flag("proxy_smtp_auth", false, { contexts: both, doc: "Authenticate to the SMTP backend with AUTH PLAIN." });
/** Idle timeout while proxying, re-armed by client-socket activity only. */
export const proxyTimeout = msec("proxy_timeout", 24 * 3600 * 1000, {
  contexts: both,
  defaultText: "24h",
  doc: "Idle timeout while proxying (client-side activity re-arms it).",
});
/** SMTP: send XCLIENT to the backend. */
export const xclient = flag("xclient", true, { contexts: both, doc: "Pass client address, login and name to the SMTP backend with XCLIENT." });

/** The module as the configuration engine loads it. */
export const proxyModule: ConfModule = {
  name: "ngx_mail_proxy_module",
  directives: [proxyFlag, proxyBuffer, proxyPassErrorMessage, proxyProtocol, proxySmtpAuth, proxyTimeout, xclient],
};

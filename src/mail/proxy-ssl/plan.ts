/**
 * ngx_mail_proxy_ssl_module as a mail module (its directives, and each
 * server's backend TLS context built when the mail block closes), and the
 * per-login plan: the server's proxy_ssl settings with auth_http's
 * Auth-Proxy-SSL and Auth-Proxy-SSL-Name applied.
 *
 * Rules: docs/backend-tls.md#per-user-choice-from-auth_http.
 */
import type { ServerConf } from "../../conf/directive.js";
import type { MailModule } from "../server.js";
import type { BackendAddress } from "../types.js";
import { type BackendTlsSetup, buildBackendTls } from "./context.js";
import type { BackendTlsTarget } from "./handshake.js";
import { proxySslConfModule } from "./module.js";

const setups = new WeakMap<ServerConf, BackendTlsSetup>();

/** The module: directives, then the context per server (in nginx's order, after the proxy module). */
export const proxySslMailModule: MailModule = {
  ...proxySslConfModule,
  finalize(server) {
    const setup = buildBackendTls(server.conf);
    if (setup) setups.set(server.conf, setup);
  },
};

/** What one login does about TLS to its backend. */
export type BackendTlsPlan =
  | { readonly kind: "plain" }
  | { readonly kind: "tls"; readonly mode: "on" | "starttls"; readonly setup: BackendTlsSetup; readonly target: BackendTlsTarget }
  /** auth_http sent a bad Auth-Proxy-SSL header: log `message`, internal error to the client */
  | { readonly kind: "invalid"; readonly message: string };

/**
 * The plan for a login. A server without any proxy_ssl directive ignores
 * the auth headers (nginx ignores headers it does not know), so a
 * configuration that uses none of this behaves as before.
 */
export function planBackendTls(conf: ServerConf, backend: BackendAddress, upstream: string): BackendTlsPlan {
  const setup = setups.get(conf);
  if (!setup) return { kind: "plain" };
  let mode = setup.mode;
  let name = setup.name;
  const choice = backend.tls;
  if (choice?.kind === "invalid") return { kind: "invalid", message: choice.message };
  if (choice?.kind === "valid") {
    mode = choice.mode ?? mode;
    name = choice.name ?? name;
  }
  if (mode === "off") return { kind: "plain" };
  return { kind: "tls", mode, setup, target: { upstream, name: name ?? backend.host } };
}

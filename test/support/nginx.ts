/** Runs the real nginx (the oracle) with a mail config. */
import { existsSync } from "node:fs";
import { startMailProxy, type MailProxyOptions, type MailProxyProcess } from "./mail-proxy.js";

/** The nginx binary used as the oracle. */
export const NGINX_BIN = "/usr/sbin/nginx";
/** The dynamic mail module nginx loads. */
export const NGINX_MAIL_MODULE = "/usr/lib/nginx/modules/ngx_mail_module.so";

/** True when nginx and its mail module are installed (tests must fail, not skip, when false). */
export function nginxAvailable(): boolean {
  return existsSync(NGINX_BIN) && existsSync(NGINX_MAIL_MODULE);
}

/** Starts nginx with `mailBlock` in a new temp prefix and waits until it listens. */
export function startNginx(mailBlock: string, options: MailProxyOptions = {}): Promise<MailProxyProcess> {
  if (!nginxAvailable()) throw new Error(`nginx or its mail module is missing (${NGINX_BIN}, ${NGINX_MAIL_MODULE})`);
  return startMailProxy("nginx", [NGINX_BIN], mailBlock, options);
}

/**
 * The mail modules in nginx's module order (auto/modules): core, ssl, pop3,
 * imap, smtp, auth_http, proxy, realip; Postern's proxy_ssl (TLS to the
 * backends) follows the proxy module it extends; then Postern's limits. Their `finalize` steps run in this
 * order for every server, so the first error reported is nginx's.
 */
import { accessLogModule } from "./access-log/module.js";
import { authHttpModule, checkAuthHttp } from "./auth-http/module.js";
import { mailCoreModule } from "./core-module.js";
import { imapModule } from "./imap/module.js";
import { pop3Module } from "./pop3/module.js";
import { proxyModule } from "./proxy/module.js";
import { proxySslMailModule } from "./proxy-ssl/plan.js";
import { realipModule } from "./realip/module.js";
import { smtpModule } from "./smtp/module.js";
import { sslMailModule } from "./ssl/server-tls.js";
import type { MailModule } from "./server.js";
import { limitConnModule } from "./limits/conn-module.js";
import { authFailModule } from "./limits/auth-fail-module.js";
import { sharedStoreModule } from "./shared-store/module.js";

const authHttp: MailModule = { ...authHttpModule, finalize: (server) => checkAuthHttp(server.conf) };

/** Every mail module, in order. */
export const MAIL_MODULES: readonly MailModule[] = [
  mailCoreModule,
  sslMailModule,
  pop3Module,
  imapModule,
  smtpModule,
  authHttp,
  proxyModule,
  proxySslMailModule,
  realipModule,
  limitConnModule,
  authFailModule,
  accessLogModule,
  sharedStoreModule,
];

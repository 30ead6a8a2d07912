/**
 * What a configuration's `shared_store` amounts to, and the check that a
 * `sync` zone has one. Apart from module.ts, which mail-modules.ts loads:
 * this file reads the mail block (block.js), and module.ts must not, or a
 * test that loads the module first would close an import cycle.
 */
import type { ParsedConf } from "../../conf/engine.js";
import { ConfError } from "../../core/errors.js";
import type { SharedStoreSettings, StoreTls } from "../../event/shared-store/settings.js";
import { mailDirective } from "../block.js";
import {
  sharedStore,
  sharedStoreSsl,
  sharedStoreSslCertificate,
  sharedStoreSslCertificateKey,
  sharedStoreSslName,
  sharedStoreSslTrustedCertificate,
  sharedStoreSslVerify,
} from "./module.js";
import { syncUsers } from "./sync-users.js";

/**
 * The store a configuration names, files read, or undefined. Throws a
 * ConfError when TLS settings are given without what they need.
 */
export function sharedStoreOf(conf: ParsedConf): SharedStoreSettings | undefined {
  const level = conf.main.get(mailDirective)?.level;
  const line = level?.own(sharedStore);
  if (!level || !line) return undefined;
  if (!level.own(sharedStoreSsl)) return line;
  const cert = level.own(sharedStoreSslCertificate);
  const key = level.own(sharedStoreSslCertificateKey);
  if ((cert === undefined) !== (key === undefined))
    throw ConfError.unlocated(`"shared_store_ssl_certificate" and "shared_store_ssl_certificate_key" go together`);
  const ca = level.own(sharedStoreSslTrustedCertificate);
  const tls: StoreTls = {
    ca: ca?.data,
    cert: cert?.data,
    key: key?.data,
    servername: level.own(sharedStoreSslName),
    verify: level.own(sharedStoreSslVerify) ?? true,
  };
  return { ...line, tls };
}

/** The configuration-time checks: TLS settings complete, and no `sync` without a store. */
export function checkSharedStore(conf: ParsedConf): void {
  const store = sharedStoreOf(conf);
  if (store) return;
  const mail = conf.main.get(mailDirective);
  if (!mail) return;
  for (const user of syncUsers) {
    const first = user(mail)[0];
    if (!first) continue;
    const message = `"${first.directive}" zone "${first.zone}" is "sync" but no "shared_store" is configured`;
    // nginx's " in FILE:LINE" names the zone's line when the module knows it
    throw first.location ? new ConfError(message, first.location) : ConfError.unlocated(message);
  }
}

/**
 * The SMTP client name (ngx_mail_smtp_init_session and its
 * resolver handlers): PTR of the client address, then A/AAAA of that name,
 * kept only when it leads back to the client. The result goes to auth_http
 * (`Client-Host`) and XCLIENT `NAME=`.
 * Rules: docs/behaviour/smtp.md#smtp-1-client-name.
 */
import { resolverDirective, resolverTimeoutDirective } from "../core-module.js";
import type { SessionPort } from "../front-end.js";
import { logEscape } from "../../core/log.js";
import { RESOLVE_NXDOMAIN, canonicalAddress, resolverFor, resolverStrerror } from "../../event/resolver.js";

/** No name: no resolver, NXDOMAIN, or the forward lookup does not match. */
export const UNAVAILABLE = "[UNAVAILABLE]";
/**
 * A temporary failure: timeout, SERVFAIL and the like, a bad PTR name, a
 * UNIX-socket client. A response nginx drops (a PTR answered with records
 * of another type, a malformed packet) ends here too, through the timeout.
 */
export const TEMPUNAVAIL = "[TEMPUNAVAIL]";

/**
 * Latest nginx accepts only RFC 1034 host name characters, so that a PTR
 * answer can never put other bytes into the auth_http request or XCLIENT.
 */
export function isValidHostName(name: string): boolean {
  return /^[A-Za-z0-9.-]+$/.test(name);
}

function failure(code: number): string {
  return code === RESOLVE_NXDOMAIN ? UNAVAILABLE : TEMPUNAVAIL;
}

/** Resolves the client's name as nginx does, logging failures at `error`. */
export async function resolveClientName(session: SessionPort): Promise<string> {
  const conf = session.server.conf;
  const spec = conf.get(resolverDirective);
  if (!spec) return UNAVAILABLE;
  if (session.unixClient) return TEMPUNAVAIL;
  const timeout = conf.get(resolverTimeoutDirective);
  const resolver = resolverFor(spec);
  const addr = session.clientAddr;
  const log = session.log;

  log.action = "in resolving client address";
  // the resolver's own lines (a dropped response) go to the log without this connection, as nginx's
  const ptr = await resolver.reverse(addr, timeout, log.log);
  if (!ptr.ok) {
    log.error(`${addr} could not be resolved (${ptr.code}: ${resolverStrerror(ptr.code)})`);
    return failure(ptr.code);
  }
  if (!isValidHostName(ptr.name)) {
    log.error(`${addr} resolved to invalid host name "${logEscape(ptr.name)}"`);
    return TEMPUNAVAIL;
  }

  log.action = "in resolving client hostname";
  const forward = await resolver.lookup(ptr.name, timeout, log.log);
  if (!forward.ok) {
    log.error(`"${ptr.name}" could not be resolved (${forward.code}: ${resolverStrerror(forward.code)})`);
    return failure(forward.code);
  }
  const client = canonicalAddress(addr);
  return forward.addresses.some((a) => canonicalAddress(a) === client) ? ptr.name : UNAVAILABLE;
}

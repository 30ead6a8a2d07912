/**
 * The `mail {}` block (ngx_mail.c): parses the servers, then merges and
 * finalizes them module by module, as nginx does when the block closes.
 */
import { type ConfModule, type Directive, Level, ServerConf, noArgs } from "../conf/directive.js";
import { custom } from "../conf/slots.js";
import { markModulesUsed } from "../core/core-module.js";
import { listenDirective, resolveProtocol, serverDirective } from "./core-module.js";
import { MAIL_MODULES } from "./mail-modules.js";
import type { FinalizeContext, MailServer } from "./server.js";
import { buildSniGroups } from "./sni-groups.js";

/** The parsed and finalized `mail {}` block. */
export interface MailConf {
  readonly level: Level;
  readonly servers: readonly MailServer[];
}

/** `mail { ... }`. */
export const mailDirective: Directive<MailConf | undefined> = custom<MailConf | undefined>({
  name: "mail",
  contexts: ["main"],
  args: noArgs,
  block: true,
  syntax: "{ ... }",
  defaultValue: undefined,
  defaultText: "—",
  doc: "Provides the configuration file context in which the mail server directives are specified.",
  parse(_args, _previous, cx) {
    markModulesUsed(cx);
    const level = new Level("mail", cx.location, cx.level);
    cx.parseBlock("mail", level);
    return finalizeMail(level, { warn: (m) => cx.warnUnlocated(m) });
  },
});

/** Builds every MailServer and runs the modules' finalize steps, modules outermost. */
export function finalizeMail(level: Level, cx: FinalizeContext): MailConf {
  // Deciding the protocol is the core module's merge step, the first in nginx's order.
  const servers: MailServer[] = (level.own(serverDirective) ?? []).map((own, index) => ({
    conf: new ServerConf(own, level),
    protocol: resolveProtocol(own),
    listens: own.own(listenDirective) ?? [],
    index,
  }));
  // shared listen addresses first: nginx reports a duplicate address while parsing
  buildSniGroups(servers, cx);
  for (const module of MAIL_MODULES) {
    for (const server of servers) module.finalize?.(server, cx);
  }
  return { level, servers };
}

/** The module holding the `mail` block directive. */
export const mailBlockModule: ConfModule = { name: "ngx_mail_module", directives: [mailDirective] };

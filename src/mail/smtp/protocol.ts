/** The SMTP protocol descriptor the mail core calls through. */
import type { MailProtocol } from "../front-end.js";
import { SmtpFrontEnd } from "./handler.js";
import { smtpModule, smtpWire } from "./module.js";
import { SMTP_REPLY } from "./replies.js";

/** SMTP, as ngx_mail_smtp_module. */
export const smtpProtocol: MailProtocol = {
  name: "smtp",
  alpn: "smtp",
  module: smtpModule,
  replies: { internalError: SMTP_REPLY.internalError, certError: SMTP_REPLY.certError, noCert: SMTP_REPLY.noCert },
  bufferSize: (server) => smtpWire(server).bufferSize,
  create: (session) => new SmtpFrontEnd(session),
};

/**
 * The IMAP protocol descriptor: what the session core needs to run an IMAP
 * server (ngx_mail_imap_protocol).
 */
import type { MailProtocol } from "../front-end.js";
import { ImapFrontEnd } from "./handler.js";
import { imapClientBufferDirective, imapModule } from "./module.js";

/** IMAP: ALPN `imap`, the imap_* directives, nginx's canned lines and the front end. */
export const imapProtocol: MailProtocol = {
  name: "imap",
  alpn: "imap",
  module: imapModule,
  replies: {
    internalError: "* BAD internal server error\r\n",
    certError: "* BYE SSL certificate error\r\n",
    noCert: "* BYE No required SSL certificate\r\n",
  },
  bufferSize: (server) => server.conf.get(imapClientBufferDirective),
  create: (session) => new ImapFrontEnd(session),
};

/** The POP3 protocol descriptor the session core calls through (ngx_mail_pop3_module's protocol). */
import type { MailProtocol } from "../front-end.js";
import { Pop3FrontEnd } from "./handler.js";
import { pop3Module } from "./module.js";

/** nginx reads POP3 commands into a fixed 128-byte buffer (no directive). */
export const POP3_BUFFER_SIZE = 128;

/** POP3: ALPN `pop3`, fixed buffer, `-ERR` replies. */
export const pop3Protocol: MailProtocol = {
  name: "pop3",
  alpn: "pop3",
  module: pop3Module,
  replies: {
    internalError: "-ERR internal server error\r\n",
    certError: "-ERR SSL certificate error\r\n",
    noCert: "-ERR No required SSL certificate\r\n",
  },
  bufferSize: () => POP3_BUFFER_SIZE,
  create: (session) => new Pop3FrontEnd(session),
};

/** The POP3 protocol descriptor the session core calls through (ngx_mail_pop3_module's protocol). */
import type { MailProtocol } from "../front-end.js";
import { Pop3FrontEnd } from "./handler.js";
import { POP3_LEGACY_BUFFER_SIZE, pop3Module, pop3Wire } from "./module.js";

/** nginx 1.22.1 reads POP3 commands into a fixed 128-byte buffer (pop3_client_buffer unset, no OAuth). */
export const POP3_BUFFER_SIZE = POP3_LEGACY_BUFFER_SIZE;

/** POP3: ALPN `pop3`, `pop3_client_buffer`, `-ERR` replies. */
export const pop3Protocol: MailProtocol = {
  name: "pop3",
  alpn: "pop3",
  module: pop3Module,
  replies: {
    internalError: "-ERR internal server error\r\n",
    certError: "-ERR SSL certificate error\r\n",
    noCert: "-ERR No required SSL certificate\r\n",
  },
  bufferSize: (server) => pop3Wire(server).bufferSize,
  create: (session) => new Pop3FrontEnd(session),
};

/**
 * The SMTP front end's fixed replies (ngx_mail_smtp_handler.c).
 * Rules: docs/behaviour/smtp.md#smtp-7-mail-and-rcpt,
 * #smtp-11-auth-failure-and-auth-wait.
 */
export const SMTP_REPLY = {
  ok: "250 2.0.0 OK\r\n",
  bye: "221 2.0.0 Bye\r\n",
  starttls: "220 2.0.0 Start TLS\r\n",
  next: "334 \r\n",
  username: "334 VXNlcm5hbWU6\r\n",
  password: "334 UGFzc3dvcmQ6\r\n",
  invalidCommand: "500 5.5.1 Invalid command\r\n",
  invalidPipelining: "503 5.5.0 Improper use of SMTP command pipelining\r\n",
  invalidArgument: "501 5.5.4 Invalid argument\r\n",
  authRequired: "530 5.7.1 Authentication required\r\n",
  badSequence: "503 5.5.1 Bad sequence of commands\r\n",
  /**
   * Postern only: MAIL/RCPT under `starttls only` before TLS (nginx lets
   * them through). RFC 3207's reply for commands refused until STARTTLS.
   */
  starttlsRequired: "530 5.7.0 Must issue a STARTTLS command first\r\n",
  internalError: "451 4.3.2 Internal server error\r\n",
  certError: "421 4.7.1 SSL certificate error\r\n",
  noCert: "421 4.7.1 No required SSL certificate\r\n",
} as const;

/** `smtp_auth` refusal reply: `<Auth-Error-Code or "535 5.7.0"> <message>\r\n`. */
export function smtpAuthFailedReply(message: string, errorCode: string | undefined): string {
  return `${errorCode ?? "535 5.7.0"} ${message}\r\n`;
}

/** A buffer for nginx's `client was rejected...` lines: CR and LF shown as `_`. */
export function rejectedText(data: Buffer): string {
  return data.toString("latin1").replace(/[\r\n]/g, "_");
}

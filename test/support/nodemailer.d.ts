/** The small part of nodemailer's API the tests use (the package ships no type declarations). */
declare module "nodemailer" {
  /** SMTP transport options (subset). */
  export interface SmtpTransportOptions {
    host: string;
    port: number;
    secure?: boolean;
    ignoreTLS?: boolean;
    name?: string;
    /** a password login, or XOAUTH2 with a ready access token (`type: "OAuth2"`) */
    auth?: { user: string; pass: string } | { type: "OAuth2"; user: string; accessToken: string };
    connectionTimeout?: number;
    greetingTimeout?: number;
    socketTimeout?: number;
  }
  /** One message (subset). */
  export interface MailOptions {
    from: string;
    to: string | string[];
    subject?: string;
    text?: string;
    raw?: string | Buffer;
    envelope?: { from: string; to: string[] };
  }
  /** What sendMail resolves with (subset). */
  export interface SentMessageInfo {
    accepted: string[];
    rejected: string[];
    response: string;
    messageId: string;
  }
  /** A transport (subset). */
  export interface Transporter {
    sendMail(message: MailOptions): Promise<SentMessageInfo>;
    close(): void;
  }
  /** Creates an SMTP transport. */
  export function createTransport(options: SmtpTransportOptions): Transporter;
  const nodemailer: { createTransport: typeof createTransport };
  export default nodemailer;
}

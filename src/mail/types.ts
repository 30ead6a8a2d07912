/**
 * Types shared by the mail modules: what a session knows about its client,
 * the credentials it collected, and what auth_http decided. The front ends
 * fill them in; auth_http and the proxy read them.
 */
import type { ProxyProtocolAddresses } from "../event/proxy-protocol.js";

/** The three protocols of nginx's mail proxy. */
export type MailProtocolName = "imap" | "pop3" | "smtp";

/**
 * The `Auth-Method` values nginx sends (SASL LOGIN is sent as `plain`), and
 * nginx PR #1590's `oauthbearer` and `xoauth2` (the token in Auth-Pass).
 */
export type AuthMethod = "plain" | "apop" | "cram-md5" | "external" | "none" | "oauthbearer" | "xoauth2";

/** What the client typed to authenticate. Buffers: logins and passwords are bytes. */
export interface Credentials {
  readonly method: AuthMethod;
  readonly login: Buffer;
  /** The password, or the APOP / CRAM-MD5 digest; empty for EXTERNAL and none. */
  readonly password: Buffer;
  /** The APOP / CRAM-MD5 salt, without CRLF. */
  readonly salt?: string | undefined;
}

/** The client's TLS state as auth_http reports it. */
export interface ClientTlsInfo {
  readonly protocol: string;
  readonly cipher: string;
  /** `SUCCESS`, `FAILED:reason` or `NONE`; absent when ssl_verify_client is off. */
  readonly verify?: string | undefined;
  readonly subject?: string | undefined;
  readonly issuer?: string | undefined;
  readonly serial?: string | undefined;
  readonly fingerprint?: string | undefined;
  /** PEM of the client certificate, for auth_http_pass_client_cert. */
  readonly certPem?: string | undefined;
  /** The client's SNI (validated) on an address servers share (docs/sni.md); Auth-SSL-Server-Name. */
  readonly serverName?: string | undefined;
}

/** Addresses from a PROXY protocol header (declared in event/, where the header is parsed). */
export type { ProxyProtocolAddresses };

/** What the SMTP front end learned before authentication. */
export interface SmtpInfo {
  /** The HELO/EHLO argument, empty if none was sent. */
  readonly helo: string;
  /** True once the client used EHLO. */
  readonly esmtp: boolean;
  /** The raw MAIL and RCPT lines (smtp_auth none). */
  readonly from?: string | undefined;
  readonly to?: string | undefined;
  /** Resolved client name, `[UNAVAILABLE]` or `[TEMPUNAVAIL]`. */
  readonly clientHost: string;
}

/** Everything about one client connection that auth_http and the proxy need. */
export interface SessionInfo {
  /** The connection number, `*N` in the log. */
  readonly id: number;
  readonly protocol: MailProtocolName;
  /** Client address (after realip), text form without brackets. */
  readonly clientAddr: string;
  readonly clientPort: number;
  /** The address and port of Postern the client connected to. */
  readonly localAddr: string;
  readonly localPort: number;
  /** True for a UNIX-socket client. */
  readonly unixClient: boolean;
  readonly proxyProtocol?: ProxyProtocolAddresses | undefined;
  readonly tls?: ClientTlsInfo | undefined;
  /** SMTP: what auth_http's Client-Host and Auth-SMTP-* headers carry. */
  readonly smtp?: SmtpInfo | undefined;
}

/** A backend address from `Auth-Server` / `Auth-Port`. */
export interface BackendAddress {
  readonly host: string;
  readonly port: number;
  /** What auth_http chose for TLS to this backend (Auth-Proxy-SSL, Auth-Proxy-SSL-Name), if anything. */
  readonly tls?: BackendTlsChoice | undefined;
}

/**
 * auth_http's per-login choice of backend TLS, checked by the decision; an
 * invalid value carries the log line (the proxy fails the login with it in
 * servers that use backend TLS, and ignores it elsewhere, as nginx ignores
 * headers it does not know).
 */
export type BackendTlsChoice =
  | { readonly kind: "valid"; readonly mode?: "off" | "on" | "starttls" | undefined; readonly name?: string | undefined }
  | { readonly kind: "invalid"; readonly message: string };

/** What auth_http decided for one attempt. */
export type AuthOutcome =
  /** proxy to `backend`, logging in as `login` / `password` */
  | {
      readonly kind: "ok";
      readonly backend: BackendAddress;
      readonly login: Buffer;
      readonly password: Buffer;
      /** an Auth-Error-SASL sent with it: an error of the auth service's for OAuth logins (oauth-outcome.ts) */
      readonly authErrorSasl?: Buffer | undefined;
      /** the answer's Auth-Method, unchecked; oauth-outcome.ts makes it `backendMechanism` */
      readonly backendMethod?: Buffer | undefined;
      /** log in to the backend with the token in this mechanism (docs/oauth.md) */
      readonly backendMechanism?: "oauthbearer" | "xoauth2" | undefined;
    }
  /**
   * refused: the client gets `message` (SMTP: `errorCode message`); with
   * `wait` seconds the session continues after the wait, else it closes
   */
  | {
      readonly kind: "refused";
      /** The auth service's bytes, one char per byte (latin1). */
      readonly message: string;
      readonly errorCode?: string | undefined;
      readonly wait?: number | undefined;
      /** Auth-Error-SASL as the auth service sent it, unchecked */
      readonly authErrorSasl?: Buffer | undefined;
      /** Auth-Error-SASL checked (OAuth logins only): base64 sent as a challenge before the refusal (RFC 7628 §3.2.2) */
      readonly saslError?: string | undefined;
      /** Refused by the failure throttle (limits/auth-throttle.ts): auth_http was not asked */
      readonly throttled?: true | undefined;
    }
  /** transport or protocol failure, already logged: the client gets the internal error */
  | { readonly kind: "error" };

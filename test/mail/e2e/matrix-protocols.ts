/**
 * What each protocol brings to the failure/limit/PROXY matrix of
 * protocol-matrix-{auth,input}.test.ts: the pair set-up (one server block per scenario
 * family, the same config text for nginx and Postern) and the protocol's own
 * lines for the steps every scenario shares (greeting, login, a client that
 * shows the proxy still serves after a failure).
 *
 * The listen and backend names are the same for the three protocols, so the
 * normalised log lines (`<port:limits>`, `<backend-port:rejecting>`) read alike;
 * the main listener and backend are named after the protocol (`<port:imap>`).
 */
import type { PairSetup } from "./pair.js";
import { b64, okToBackend, Talk } from "./talk.js";

export type Protocol = "imap" | "pop3" | "smtp";

/** One protocol's side of the matrix. */
export interface MatrixProtocol {
  protocol: Protocol;
  /** How test names spell the protocol. */
  label: "IMAP" | "POP3" | "SMTP";
  setup: PairSetup;
  /** The greeting line as the transcript records it (POP3's main listener adds its APOP salt to it). */
  greeting: string;
  /** Sends the login of test@example.com/secret; intermediate replies are read, the final one is not. */
  sendLogin(t: Talk): Promise<void>;
  /** A client that logs in and does some work: the "served normally" check after a failure. */
  normalClient(port: number): Promise<string[]>;
  /** Where the normal client's log shows the successful login: [index, line]. */
  served: [number, string];
  /** What the client reads before the close when the proxy fails the session ("internal server error"). */
  internal: string;
  /** The refusal line of the `rejecting` fake backend (accept: false). */
  backendRefusal: string;
}

/** The server blocks every protocol has; `blocks` adds each block's own directives (`http`: the mail block's). */
function matrixConfig(protocol: Protocol, blocks: Record<string, string>): PairSetup["config"] {
  return ({ ports, authUrl, closed }) => {
    const extra = (name: string): string => blocks[name] ?? "";
    return `
      auth_http ${authUrl};
      ${extra("http")}
      server { listen 127.0.0.1:${ports[protocol]}; protocol ${protocol}; ${extra(protocol)} }
      server { listen 127.0.0.1:${ports.short}; protocol ${protocol}; ${extra("short")} }
      server { listen 127.0.0.1:${ports.limits}; protocol ${protocol}; ${extra("limits")} }
      server { listen 127.0.0.1:${ports.authDown}; protocol ${protocol}; auth_http 127.0.0.1:${closed.authDown}/auth; }
      server { listen 127.0.0.1:${ports.slowAuth}; protocol ${protocol}; auth_http_timeout 500ms; }
      server { listen 127.0.0.1:${ports.passError}; protocol ${protocol}; proxy_pass_error_message on; ${extra("passError")} }
      server { listen 127.0.0.1:${ports.pp} proxy_protocol; protocol ${protocol}; set_real_ip_from 127.0.0.1;
               proxy_protocol on; ${extra("pp")} }
    `;
  };
}

/** Listeners, closed ports and fake backends of one protocol's pair. */
function matrixSetup(protocol: Protocol, blocks: Record<string, string>): PairSetup {
  const fake = { protocol } as const;
  return {
    listen: [protocol, "short", "limits", "authDown", "slowAuth", "passError", "pp"],
    closed: ["backendDown", "authDown"],
    backends: {
      [protocol]: fake,
      noGreet: { ...fake, options: { neverGreet: true } },
      closing: { ...fake, options: { closeDuringLogin: true } },
      rejecting: { ...fake, options: { accept: false } },
      garbage: { ...fake, options: { garbage: "garbage\r\n" } },
      pp: { ...fake, proxyProtocol: true },
    },
    auth: okToBackend(protocol),
    config: matrixConfig(protocol, blocks),
  };
}

/** Connects and reads the greeting. */
export async function greet(port: number): Promise<Talk> {
  const t = await Talk.open(port);
  await t.line();
  return t;
}

/** Reads a (possibly multi-line) SMTP reply. */
export function smtpReply(t: Talk): Promise<string> {
  return t.until(/^\d{3} .*\r\n/m);
}

const plainSecret = b64("\0test@example.com\0secret");

export const IMAP: MatrixProtocol = {
  protocol: "imap",
  label: "IMAP",
  setup: matrixSetup("imap", {
    http: "imap_auth plain login cram-md5;",
    imap: "server_name imap.example.test;",
    short: "timeout 1s; proxy_timeout 1s;",
    limits: "max_errors 3; imap_client_buffer 256;",
  }),
  greeting: "S: * OK IMAP4 ready\r\n",
  async sendLogin(t) {
    await t.send("a1 LOGIN test@example.com secret\r\n");
  },
  async normalClient(port) {
    const t = await greet(port);
    await t.cmd("n1 LOGIN test@example.com secret\r\n");
    await t.send("n2 SELECT INBOX\r\n");
    await t.until(/n2 .*\r\n/);
    await t.send("n3 LOGOUT\r\n");
    await t.closed();
    return t.log;
  },
  served: [2, "S: n1 OK LOGIN completed\r\n"],
  internal: 'closed after: "* BAD internal server error\\r\\n"',
  backendRefusal: "NO [AUTHENTICATIONFAILED] invalid credentials",
};

export const POP3: MatrixProtocol = {
  protocol: "pop3",
  label: "POP3",
  setup: matrixSetup("pop3", {
    pop3: "server_name pop.example.test; pop3_auth plain apop cram-md5 external;",
    short: "timeout 1s;",
    limits: "max_errors 3;",
  }),
  greeting: "S: +OK POP3 ready\r\n",
  async sendLogin(t) {
    await t.cmd("USER test@example.com\r\n");
    await t.send("PASS secret\r\n");
  },
  async normalClient(port) {
    const t = await greet(port);
    await t.cmd("USER test@example.com\r\n");
    await t.cmd("PASS secret\r\n");
    await t.cmd("STAT\r\n");
    await t.send("QUIT\r\n");
    await t.closed();
    return t.log;
  },
  served: [4, "S: +OK logged in\r\n"],
  internal: 'closed after: "-ERR internal server error\\r\\n"',
  backendRefusal: "-ERR [AUTH] invalid credentials",
};

export const SMTP: MatrixProtocol = {
  protocol: "smtp",
  label: "SMTP",
  setup: matrixSetup("smtp", {
    http: "server_name mx.example.test; smtp_auth plain login cram-md5; xclient off;",
    short: "timeout 1s; proxy_smtp_auth on;",
    limits: "max_errors 3; smtp_client_buffer 256;",
    passError: "proxy_smtp_auth on;",
    pp: "xclient on;",
  }),
  greeting: "S: 220 mx.example.test ESMTP ready\r\n",
  async sendLogin(t) {
    await t.send(`AUTH PLAIN ${plainSecret}\r\n`);
  },
  async normalClient(port) {
    const t = await greet(port);
    await t.send("EHLO client.example\r\n");
    await smtpReply(t);
    await t.cmd(`AUTH PLAIN ${plainSecret}\r\n`);
    await t.cmd("MAIL FROM:<a@example.com>\r\n");
    await t.send("QUIT\r\n");
    await t.closed();
    return t.log;
  },
  served: [4, "S: 235 2.0.0 OK\r\n"],
  internal: 'closed after: "451 4.3.2 Internal server error\\r\\n"',
  backendRefusal: "535 5.7.8 Authentication failed",
};

export const MATRIX_PROTOCOLS: readonly MatrixProtocol[] = [IMAP, POP3, SMTP];

/**
 * A real SMTP backend built on the `smtp-server` package (loopback only).
 * smtp-server supports XCLIENT (option useXClient): it advertises
 * `XCLIENT NAME ADDR PORT PROTO HELO LOGIN`, answers XCLIENT with a new
 * `220` greeting, and passes `LOGIN=` to onAuth as method `XCLIENT` without
 * a password. We enable it and record the attributes it received.
 */
import type { AddressInfo } from "node:net";
import { SMTPServer, type SMTPServerAuthentication, type SMTPServerSession } from "smtp-server";

/** One accepted message. */
export interface SmtpRecord {
  mailFrom: string;
  rcptTo: string[];
  /** The message bytes as delivered by DATA (dot-stuffing removed). */
  data: Buffer;
  /** The authenticated user (AUTH or XCLIENT LOGIN), if any. */
  user: string | undefined;
  /** XCLIENT attributes of the session (NAME, ADDR, LOGIN, ...). */
  xclient: Record<string, string>;
  /** The HELO/EHLO name the session used. */
  helo: string;
  /** True when the session ran over TLS (STARTTLS). */
  secure: boolean;
}

/** Options for startSmtpBackend(). */
export interface SmtpBackendOptions {
  /** Accepted AUTH credentials (login -> password); default: any. */
  users?: Record<string, string>;
  /** Require AUTH (or XCLIENT LOGIN) before MAIL (default false). */
  requireAuth?: boolean;
  /** Server name in the greeting (default `smtp.backend.test`). */
  name?: string;
  /** Offer STARTTLS with this certificate and key (PEM text); without it STARTTLS is disabled. */
  tls?: { cert: string; key: string };
}

/** A running smtp-server backend. */
export interface SmtpBackend {
  port: number;
  /** Accepted messages, in order. */
  messages: SmtpRecord[];
  /** Every AUTH/XCLIENT authentication attempt (password null for XCLIENT). */
  auths: Array<{ method: string; username: string; password: string | null; accepted: boolean }>;
  close(): Promise<void>;
}

/** Starts smtp-server on 127.0.0.1 (ephemeral port unless `port` is given), XCLIENT enabled. */
export async function startSmtpBackend(options: SmtpBackendOptions = {}, port = 0): Promise<SmtpBackend> {
  const messages: SmtpRecord[] = [];
  const auths: SmtpBackend["auths"] = [];
  const server = new SMTPServer({
    name: options.name ?? "smtp.backend.test",
    authOptional: !options.requireAuth,
    useXClient: true,
    disabledCommands: options.tls ? [] : ["STARTTLS"],
    ...(options.tls ? { key: options.tls.key, cert: options.tls.cert } : {}),
    authMethods: ["PLAIN", "LOGIN"],
    logger: false,
    onAuth(auth: SMTPServerAuthentication, _session: SMTPServerSession, callback) {
      const username = auth.username ?? "";
      const password = auth.password ?? null;
      const accepted = auth.method === "XCLIENT" || !options.users || options.users[username] === password;
      auths.push({ method: auth.method, username, password, accepted });
      if (!accepted) callback(new Error("Invalid username or password"));
      else callback(null, { user: username });
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        const xclient: Record<string, string> = {};
        for (const [k, v] of session.xClient ?? new Map<string, unknown>()) {
          if (!k.includes(":")) xclient[k] = String(v);
        }
        messages.push({
          mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
          rcptTo: session.envelope.rcptTo.map((r) => r.address),
          data: Buffer.concat(chunks),
          user: typeof session.user === "string" ? session.user : undefined,
          xclient,
          helo: session.hostNameAppearsAs ?? "",
          secure: Boolean((session as { secure?: boolean }).secure),
        });
        callback();
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  server.on("error", () => {
    /* client resets are not test failures */
  });
  return {
    port: (server.server.address() as AddressInfo).port,
    messages,
    auths,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

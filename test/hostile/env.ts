/**
 * The hostile-client test bed: a running proxy (Postern by default) with
 * IMAP, POP3 and SMTP on plain (STARTTLS on) and implicit-TLS ports, a fake
 * auth_http server and fake backends; plus a well-formed session per
 * protocol and the log checks every hostile test ends with.
 *
 * POSTERN_HOSTILE_TARGET=nginx runs the same tests against nginx 1.22.1, to
 * check a test's own expectations against the oracle.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { certs } from "../support/certs.js";
import { MailClient } from "../support/client.js";
import { startFakeAuth, type AuthHandler, type FakeAuth } from "../support/fake-auth.js";
import { startFakeImap, startFakePop3, startFakeSmtp, type FakeBackend, type FakeBackendOptions } from "../support/fake-backend.js";
import type { MailProxyOptions, MailProxyProcess } from "../support/mail-proxy.js";
import { startNginx } from "../support/nginx.js";
import { startPostern } from "../support/postern.js";
import { freePorts } from "../support/ports.js";
import type { ProxyStarter } from "../support/differential.js";

/** The three protocols. */
export type Protocol = "imap" | "pop3" | "smtp";
/** The six listening ports: plain (STARTTLS available) and implicit TLS. */
export type PortName = "imap" | "imaps" | "pop3" | "pop3s" | "smtp" | "smtps";
/** Every port name with its protocol and whether it is implicit TLS. */
export const PORTS: ReadonlyArray<{ name: PortName; protocol: Protocol; tls: boolean }> = [
  { name: "imap", protocol: "imap", tls: false },
  { name: "imaps", protocol: "imap", tls: true },
  { name: "pop3", protocol: "pop3", tls: false },
  { name: "pop3s", protocol: "pop3", tls: true },
  { name: "smtp", protocol: "smtp", tls: false },
  { name: "smtps", protocol: "smtp", tls: true },
];

/** The login every well-formed session uses (distinctive, so a leak is findable). */
export const USER = "hostile-user";
export const PASSWORD = "Pw-hostile-7c1e";

/** The proxy under test: Postern, or nginx with POSTERN_HOSTILE_TARGET=nginx. */
export function target(): ProxyStarter {
  return process.env.POSTERN_HOSTILE_TARGET === "nginx" ? startNginx : startPostern;
}

/** Options of startBed(). */
export interface BedOptions {
  /** Directives added to the mail block (before the servers). */
  extra?: string;
  /** Replaces the default auth reply (OK to the fake backend of Auth-Protocol). */
  auth?: (bed: { imap: FakeBackend; pop3: FakeBackend; smtp: FakeBackend }) => AuthHandler;
  backends?: { imap?: FakeBackendOptions; pop3?: FakeBackendOptions; smtp?: FakeBackendOptions };
  proxyOptions?: MailProxyOptions;
  /** The proxy to start (default target()). */
  start?: ProxyStarter;
  /** `timeout` (default 10s). */
  timeout?: string;
  /** The ssl_certificate_key value (default the RSA key file), e.g. `data:...` (quote it). */
  sslKey?: string;
  /** Also enable OAUTHBEARER and XOAUTH2 in the three `*_auth` lines (Postern only). */
  oauth?: boolean;
}

/** A running bed; stop() ends everything it started. */
export interface Bed {
  proxy: MailProxyProcess;
  auth: FakeAuth;
  imap: FakeBackend;
  pop3: FakeBackend;
  smtp: FakeBackend;
  ports: Record<PortName, number>;
  stop(): Promise<void>;
}

/** The mail block for the bed's ports. */
export function bedConfig(ports: Record<PortName, number>, authUrl: string, options: BedOptions = {}): string {
  const c = certs();
  const servers = PORTS.map(
    ({ name, protocol, tls }) => `  server { listen 127.0.0.1:${ports[name]}${tls ? " ssl" : ""}; protocol ${protocol};${tls ? "" : " starttls on;"} }`,
  ).join("\n");
  return [
    `  auth_http ${authUrl};`,
    "  proxy_pass_error_message on;",
    `  ssl_certificate ${c.serverRsa.cert};`,
    `  ssl_certificate_key ${options.sslKey ?? c.serverRsa.key};`,
    `  imap_auth login plain${options.oauth ? " oauthbearer xoauth2" : ""};`,
    `  pop3_auth plain${options.oauth ? " oauthbearer xoauth2" : ""};`,
    `  smtp_auth login plain${options.oauth ? " oauthbearer xoauth2" : ""};`,
    `  timeout ${options.timeout ?? "10s"};`,
    options.extra ?? "",
    servers,
  ].join("\n");
}

/** Starts fakes and the proxy. */
export async function startBed(options: BedOptions = {}): Promise<Bed> {
  const imap = await startFakeImap(options.backends?.imap);
  const pop3 = await startFakePop3(options.backends?.pop3);
  const smtp = await startFakeSmtp(options.backends?.smtp);
  const fakes = { imap, pop3, smtp };
  const defaultAuth: AuthHandler = (request) => {
    const protocol = request.header("Auth-Protocol") as Protocol | undefined;
    const port = protocol && protocol in fakes ? fakes[protocol].port : 0;
    return {
      headers: [
        ["Auth-Status", "OK"],
        ["Auth-Server", "127.0.0.1"],
        ["Auth-Port", String(port)],
      ],
    };
  };
  const auth = await startFakeAuth(options.auth ? options.auth(fakes) : defaultAuth);
  let proxy: MailProxyProcess | undefined;
  let ports!: Record<PortName, number>;
  // free ports are released before the proxy binds them: another test process may take one meanwhile
  for (let attempt = 1; proxy === undefined; attempt++) {
    const list = await freePorts(PORTS.length);
    ports = Object.fromEntries(PORTS.map((p, i) => [p.name, list[i]!])) as Record<PortName, number>;
    try {
      proxy = await (options.start ?? target())(bedConfig(ports, auth.url, options), options.proxyOptions);
    } catch (e) {
      if (attempt < 3 && /Address already in use/.test((e as Error).message)) continue;
      await auth.close();
      await Promise.all([imap.close(), pop3.close(), smtp.close()]);
      throw e;
    }
  }
  const started = proxy;
  return {
    proxy: started,
    auth,
    imap,
    pop3,
    smtp,
    ports,
    async stop(): Promise<void> {
      await started.stop();
      await auth.close();
      await Promise.all([imap.close(), pop3.close(), smtp.close()]);
    },
  };
}

/** Connects to a bed port (implicit TLS where the port is TLS). */
export function connectTo(bed: Bed, name: PortName, timeoutMs = 5000): Promise<MailClient> {
  const tls = PORTS.find((p) => p.name === name)!.tls;
  return MailClient.connect({ port: bed.ports[name], timeoutMs, ...(tls ? { tls: {} } : {}) });
}

/** The greeting line a protocol starts with. */
export const GREETING: Record<Protocol, RegExp> = { imap: /^\* OK/, pop3: /^\+OK/, smtp: /^220 / };

/**
 * A complete well-formed session through the proxy: login via auth_http to
 * the fake backend, one command relayed, logout. Asserts each reply.
 */
export async function goodSession(bed: Bed, name: PortName, password = PASSWORD): Promise<void> {
  const protocol = PORTS.find((p) => p.name === name)!.protocol;
  const c = await connectTo(bed, name);
  try {
    assert.match(await c.readLine(), GREETING[protocol], c.transcriptText());
    if (protocol === "imap") {
      await c.send(`g1 LOGIN ${USER} ${password}\r\n`);
      assert.match(await c.read(/^g1 .*\r\n/m), /^g1 OK/m, c.transcriptText());
      await c.send("g2 LOGOUT\r\n");
      assert.match(await c.read(/^g2 .*\r\n/m), /^g2 OK/m, c.transcriptText());
    } else if (protocol === "pop3") {
      await c.send(`USER ${USER}\r\n`);
      assert.match(await c.readLine(), /^\+OK/, c.transcriptText());
      await c.send(`PASS ${password}\r\n`);
      assert.match(await c.readLine(), /^\+OK/, c.transcriptText());
      await c.send("STAT\r\n");
      assert.match(await c.readLine(), /^\+OK 1 \d+\r\n$/, c.transcriptText());
      await c.send("QUIT\r\n");
      assert.match(await c.readLine(), /^\+OK/, c.transcriptText());
    } else {
      await c.send("EHLO client.example\r\n");
      assert.match(await c.read(/^250 .*\r\n/m), /^250[ -]/, c.transcriptText());
      await c.send(`AUTH PLAIN ${Buffer.from(`\0${USER}\0${password}`).toString("base64")}\r\n`);
      assert.match(await c.readLine(), /^235 /, c.transcriptText());
      await c.send("MAIL FROM:<a@example.com>\r\n");
      assert.match(await c.readLine(), /^250 /, c.transcriptText());
      await c.send("QUIT\r\n");
      assert.match(await c.readLine(), /^221 /, c.transcriptText());
    }
    await c.expectClosed();
  } finally {
    c.close();
  }
}

/**
 * Error-log lines at alert or crit (or emerg): none may appear after a hostile
 * client. nginx 1.22.1 (the oracle, only when it is the target) logs a client's
 * data after its close_notify as crit; latest nginx logs it at info (commit
 * 828fb94e1), so that one line is not held against nginx.
 */
export function severeLines(log: string, kind: "nginx" | "postern" = "postern"): string[] {
  return log
    .split("\n")
    .filter((l) => / \[(alert|crit|emerg)\] /.test(l))
    .filter((l) => !(kind === "nginx" && l.includes("application data after close notify")));
}

/** Asserts the proxy is still running and logged nothing severe. */
export function assertHealthy(bed: Bed): void {
  assert.equal(processAlive(bed.proxy.pid), true, `proxy pid ${bed.proxy.pid} is gone`);
  assert.deepEqual(severeLines(bed.proxy.errorLog(), bed.proxy.kind), [], "alert/crit lines in the error log");
}

/** True while the process exists. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Lines of the error log at `level` containing `text`. */
export function logLines(bed: Bed, level: string, text: string | RegExp): string[] {
  return bed.proxy
    .errorLog()
    .split("\n")
    .filter((l) => l.includes(` [${level}] `) && (typeof text === "string" ? l.includes(text) : text.test(l)));
}

/** Waits until `check` holds (polling every 20 ms) or fails after `timeoutMs`. */
export async function eventually(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Sleeps. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** PIDs of the worker processes (children of the master `pid`), from /proc. */
export function workerPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Resident set size of a process in bytes (VmRSS from /proc). */
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

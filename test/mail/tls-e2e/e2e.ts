/**
 * End-to-end TLS harness: the same mail config served by nginx 1.22.1 (the
 * oracle) and by the subject (Postern), each with its own fake auth server and
 * fake backends, driven by real TLS clients spawned as processes
 * (`openssl s_client`, curl, Python's imaplib/poplib/smtplib).
 *
 * The subject is Postern; `POSTERN_E2E_SUBJECT=nginx` runs nginx on both
 * sides, which proves a scenario is known-good before Postern can run it.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { certs, type TestCerts } from "../../support/certs.js";
import { normalizeDeep, routeByProtocol, type BackendPorts } from "../../support/differential.js";
import { startFakeAuth, type AuthHandler, type AuthRequest, type FakeAuth } from "../../support/fake-auth.js";
import { startFakeImap, startFakePop3, startFakeSmtp, type FakeBackend } from "../../support/fake-backend.js";
import type { MailProxyOptions, MailProxyProcess } from "../../support/mail-proxy.js";
import { startNginx } from "../../support/nginx.js";
import { startPostern, repoRoot } from "../../support/postern.js";
import { freePorts } from "../../support/ports.js";

/** Which program serves one side. */
export type Kind = "nginx" | "postern";

/** The part a side plays in a pair: nginx as the oracle, or the program under test. */
export type Role = "oracle" | "subject";

/** The program under test: Postern, or nginx when validating scenarios (POSTERN_E2E_SUBJECT=nginx). */
export function subjectKind(): Kind {
  return process.env.POSTERN_E2E_SUBJECT === "nginx" ? "nginx" : "postern";
}

/** Certificates this suite needs beyond certs(): a CA nobody trusts and a client it signed. */
export interface ExtraCerts {
  /** Client certificate signed by an untrusted CA. */
  untrustedCert: string;
  untrustedKey: string;
  /** Client certificate two intermediates below the root CA (depth 3 with the root). */
  deepCert: string;
  deepKey: string;
  /** The two intermediates (for s_client -cert_chain). */
  deepChain: string;
}

let extra: ExtraCerts | undefined;

/** Generates (once per process) the extra certificates, in a temp dir removed at exit. */
export function extraCerts(): ExtraCerts {
  if (extra) return extra;
  const dir = mkdtempSync(path.join(os.tmpdir(), "postern-e2e-certs-"));
  if (!process.env.POSTERN_KEEP_TMP) process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  const run = (args: string[]): void => void execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  run([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    "other-ca.key",
    "-out",
    "other-ca.crt",
    "-subj",
    "/O=Elsewhere/CN=Other CA",
    "-days",
    "3650",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  run([
    "req",
    "-new",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    "untrusted.key",
    "-out",
    "untrusted.csr",
    "-subj",
    "/O=Elsewhere/CN=client untrusted",
  ]);
  run([
    "x509",
    "-req",
    "-in",
    "untrusted.csr",
    "-CA",
    "other-ca.crt",
    "-CAkey",
    "other-ca.key",
    "-set_serial",
    "0x4242",
    "-days",
    "3650",
    "-out",
    "untrusted.crt",
  ]);
  // A second intermediate under the shared one, and a client below it: a chain of depth 3.
  const pki = certs();
  writeFileSync(path.join(dir, "ca.ext"), "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n");
  run([
    "req",
    "-new",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    "inter2.key",
    "-out",
    "inter2.csr",
    "-subj",
    "/O=Postern Test/CN=Postern Test Intermediate Two",
  ]);
  run([
    "x509",
    "-req",
    "-in",
    "inter2.csr",
    "-CA",
    pki.intermediate.cert,
    "-CAkey",
    pki.intermediate.key,
    "-set_serial",
    "0x3001",
    "-days",
    "3650",
    "-extfile",
    "ca.ext",
    "-out",
    "inter2.crt",
  ]);
  run([
    "req",
    "-new",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    "deep.key",
    "-out",
    "deep.csr",
    "-subj",
    "/O=Postern Test/CN=client deep",
  ]);
  run(["x509", "-req", "-in", "deep.csr", "-CA", "inter2.crt", "-CAkey", "inter2.key", "-set_serial", "0x3002", "-days", "3650", "-out", "deep.crt"]);
  writeFileSync(path.join(dir, "deep-chain.crt"), readFileSync(path.join(dir, "inter2.crt"), "utf8") + readFileSync(pki.intermediate.cert, "utf8"));
  extra = {
    untrustedCert: path.join(dir, "untrusted.crt"),
    untrustedKey: path.join(dir, "untrusted.key"),
    deepCert: path.join(dir, "deep.crt"),
    deepKey: path.join(dir, "deep.key"),
    deepChain: path.join(dir, "deep-chain.crt"),
  };
  return extra;
}

/** What a config function gets for one side. */
export interface E2eEnv {
  kind: Kind;
  ports: Record<string, number>;
  authUrl: string;
  backends: BackendPorts;
  pki: TestCerts;
  extra: ExtraCerts;
}

/** One running side: proxy, auth server and fake backends. */
export interface Side {
  kind: Kind;
  proxy: MailProxyProcess;
  auth: FakeAuth;
  imap: FakeBackend;
  pop3: FakeBackend;
  smtp: FakeBackend;
  ports: Record<string, number>;
  /** Replaces this side's port numbers by names, in every string of a value. */
  normalize<T>(value: T): T;
  stop(): Promise<void>;
}

/** Options of startSide()/startPair(). */
export interface SideOptions {
  proxyOptions?: MailProxyOptions;
  /** The auth reply function for one side (default: OK to the fake backend of the request's protocol). */
  auth?: (backends: BackendPorts, role: Role) => AuthHandler;
  /** Which side of a pair this is (default: `oracle` for nginx, else `subject`). */
  role?: Role;
  /** Override backend ports given to the config (e.g. Dovecot's). */
  backends?: Partial<BackendPorts>;
}

/** The config function of a pair. */
export type ConfigFn = (env: E2eEnv) => string;

/** Starts one side: fakes, auth server, then the proxy with `config`. */
export async function startSide(kind: Kind, listen: string[], config: ConfigFn, options: SideOptions = {}): Promise<Side> {
  const imap = await startFakeImap();
  const pop3 = await startFakePop3();
  const smtp = await startFakeSmtp();
  const backends: BackendPorts = { imap: imap.port, pop3: pop3.port, smtp: smtp.port, ...options.backends };
  const role = options.role ?? (kind === "nginx" ? "oracle" : "subject");
  const auth = await startFakeAuth(options.auth ? options.auth(backends, role) : routeByProtocol(backends));
  const closeFakes = async (): Promise<void> => {
    await auth.close();
    await Promise.all([imap.close(), pop3.close(), smtp.close()]);
  };
  try {
    const start = kind === "nginx" ? startNginx : startPostern;
    let ports: Record<string, number> = {};
    let proxy: MailProxyProcess | undefined;
    // A port found free can be taken (by a client's ephemeral port, another test file)
    // before the proxy binds it: try again with new ports, a bounded number of times.
    for (let attempt = 1; !proxy; attempt++) {
      const allocated = await freePorts(listen.length);
      ports = {};
      listen.forEach((name, i) => {
        ports[name] = allocated[i]!;
      });
      const env: E2eEnv = { kind, ports, authUrl: auth.url, backends, pki: certs(), extra: extraCerts() };
      try {
        proxy = await start(config(env), options.proxyOptions);
      } catch (err) {
        if (attempt >= 3 || !/Address already in use|EADDRINUSE/.test(String(err))) throw err;
      }
    }
    const names = new Map<number, string>();
    for (const [name, port] of Object.entries(ports)) names.set(port, `<port:${name}>`);
    names.set(auth.port, "<auth-port>");
    for (const [name, port] of Object.entries(backends) as [string, number][]) names.set(port, `<backend-port:${name}>`);
    return {
      kind,
      proxy,
      auth,
      imap,
      pop3,
      smtp,
      ports,
      normalize: <T>(value: T): T => normalizeDeep(value, names),
      async stop(): Promise<void> {
        await proxy.stop();
        await closeFakes();
      },
    };
  } catch (err) {
    await closeFakes();
    throw err;
  }
}

/** nginx and the subject serving the same config. */
export interface Pair {
  nginx: Side;
  subject: Side;
  /** Runs `scenario` on both sides (concurrently) and returns the normalised results. */
  both<T>(scenario: (side: Side) => Promise<T>): Promise<{ nginx: T; subject: T }>;
  stop(): Promise<void>;
}

/** Starts nginx and the subject with the same config (both are stopped if either fails). */
export async function startPair(listen: string[], config: ConfigFn, options: SideOptions = {}): Promise<Pair> {
  const [n, s] = await Promise.allSettled([
    startSide("nginx", listen, config, { ...options, role: "oracle" }),
    startSide(subjectKind(), listen, config, { ...options, role: "subject" }),
  ]);
  if (n.status === "rejected" || s.status === "rejected") {
    if (n.status === "fulfilled") await n.value.stop();
    if (s.status === "fulfilled") await s.value.stop();
    throw (n.status === "rejected" ? n.reason : (s as PromiseRejectedResult).reason) as Error;
  }
  const nginx = n.value;
  const subject = s.value;
  return {
    nginx,
    subject,
    async both<T>(scenario: (side: Side) => Promise<T>): Promise<{ nginx: T; subject: T }> {
      const [a, b] = await Promise.all([scenario(nginx), scenario(subject)]);
      const out = { nginx: nginx.normalize(a), subject: subject.normalize(b) };
      // POSTERN_E2E_DUMP=1 shows what each side did (to read a failure or check a scenario by eye).
      if (process.env.POSTERN_E2E_DUMP) process.stderr.write(`${JSON.stringify(out, null, 1)}\n`);
      return out;
    },
    async stop(): Promise<void> {
      await Promise.all([nginx.stop(), subject.stop()]);
    },
  };
}

/** Auth requests that arrived while `fn` ran (plus `settleMs` after it). */
export async function withAuth<T>(side: Side, fn: () => Promise<T>, settleMs = 50): Promise<{ result: T; auth: AuthRequest[] }> {
  const before = side.auth.parsed.length;
  const result = await fn();
  await sleep(settleMs);
  return { result, auth: side.auth.parsed.slice(before) };
}

/** The Auth-SSL* headers of a request, in order (`Auth-SSL-Cert` included when present). */
export function sslHeaders(request: AuthRequest | undefined): Array<[string, string]> {
  return request ? request.headers.filter(([k]) => /^Auth-SSL/i.test(k)) : [];
}

/** Sleeps `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A temp dir for one test file, removed by `remove()`. */
export function tempDir(): { dir: string; file: (name: string, content?: string | Buffer) => string; remove: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), "postern-e2e-"));
  return {
    dir,
    file(name: string, content?: string | Buffer): string {
      const p = path.join(dir, name);
      mkdirSync(path.dirname(p), { recursive: true });
      if (content !== undefined) writeFileSync(p, content);
      return p;
    },
    remove: () => {
      if (!process.env.POSTERN_KEEP_TMP) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Output of a spawned client. */
export interface ProcessRun {
  stdout: string;
  stderr: string;
  code: number | null;
}

/** One s_client step: a line to send (s_client's -crlf makes it CRLF), or a pattern to wait for in its output. */
export type SClientStep = string | RegExp;

/** How s_client reports: `brief` (stdout is exactly the server's data) or `full` (session details, ALPN, CA names). */
export type SClientMode = "brief" | "full";

/** What `openssl s_client` showed. */
export interface SClientResult extends ProcessRun {
  /** Protocol and cipher (full mode: also `New`/`Reused`); undefined when no handshake completed. */
  session?: { state?: "New" | "Reused"; protocol: string; cipher: string };
  /** Full mode: `Session-ID:` of the first SSL-Session block (TLS 1.2: empty when the server issued none). */
  sessionId?: string;
  /** Brief: `Signature type:`; full: `Peer signature type:` (absent on a resumed handshake). */
  peerSignatureType?: string;
  /** Brief mode: `Peer certificate:`. */
  peerCertificate?: string;
  /** Full mode: `Server public key is N bit` (RSA 2048, ECDSA P-256 256). */
  serverKeyBits?: string;
  serverTempKey?: string;
  /** Full mode: the ALPN protocol, '' for `No ALPN negotiated`. */
  alpn?: string;
  /** Verification of the server certificate (brief: `OK` or the error; full: the return code). */
  verify?: string;
  /** Full mode: `Acceptable client certificate CA names` lines (undefined when no certificate was requested). */
  clientCaNames?: string[];
  /** Brief mode: the server's bytes inside TLS, exactly (full mode: ''). */
  appData: string;
  /** OpenSSL error reasons from stderr, process-specific prefixes removed (e.g. `ssl3_read_bytes:...:SSL alert number 120`). */
  errors: string[];
}

/**
 * Runs `openssl s_client -connect 127.0.0.1:PORT -crlf -nocommands ... args`,
 * playing `steps` (wait for a pattern in the server's data, or send a line);
 * stdin is closed after the last step, which makes s_client end the connection.
 * In brief mode stdout holds only the decrypted data; in full mode s_client
 * writes its notices to the same stream through a buffer, interleaved with that
 * data at arbitrary points, so patterns are matched against the raw output.
 */
export function sClient(
  port: number,
  args: string[],
  steps: SClientStep[] = [],
  options: { mode?: SClientMode; timeoutMs?: number } = {},
): Promise<SClientResult> {
  const mode = options.mode ?? "brief";
  return new Promise((resolve) => {
    const child = spawn(
      "openssl",
      [
        "s_client",
        "-connect",
        `127.0.0.1:${port}`,
        "-crlf",
        "-nocommands",
        "-servername",
        "localhost",
        "-CAfile",
        certs().ca.cert,
        ...(mode === "brief" ? ["-brief"] : []),
        ...args,
      ],
      { stdio: ["pipe", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    let step = 0;
    let consumed = 0;
    const advance = (): void => {
      while (step < steps.length) {
        const s = steps[step]!;
        if (typeof s === "string") {
          if (!child.stdin.writable) return;
          child.stdin.write(`${s}\n`);
          step++;
          continue;
        }
        const m = s.exec(stdout.slice(consumed));
        if (!m) return;
        consumed += m.index + m[0].length;
        step++;
      }
      if (child.stdin.writable) child.stdin.end();
    };
    child.stdin.on("error", () => undefined);
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString("latin1");
      advance();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString("latin1");
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 8000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve(mode === "brief" ? parseBrief({ stdout, stderr, code }) : parseFull({ stdout, stderr, code }));
    });
    advance();
  });
}

function sslErrors(stderr: string): string[] {
  return stderr
    .split("\n")
    .map((l) => /^[0-9A-F]+:error:[0-9A-F]+:SSL routines:([^:]+):([^:]+):[^:]+:\d+:?(.*)$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => `${m[1]}:${m[2]}${m[3] ? `:${m[3]}` : ""}`);
}

function field(text: string, re: RegExp): string | undefined {
  return re.exec(text)?.[1];
}

function parseBrief(run: ProcessRun): SClientResult {
  const err = run.stderr;
  const result: SClientResult = { ...run, appData: run.stdout, errors: sslErrors(err) };
  const protocol = field(err, /^Protocol version: (.*)$/m);
  const cipher = field(err, /^Ciphersuite: (.*)$/m);
  if (protocol !== undefined && cipher !== undefined) result.session = { protocol, cipher };
  const set = (key: "peerSignatureType" | "peerCertificate" | "serverTempKey" | "verify", value: string | undefined): void => {
    if (value !== undefined) result[key] = value;
  };
  set("peerSignatureType", field(err, /^Signature type: (.*)$/m));
  set("peerCertificate", field(err, /^Peer certificate: (.*)$/m));
  set("serverTempKey", field(err, /^(?:Server|Peer) Temp Key: (.*)$/m));
  set("verify", field(err, /^Verification: (.*)$/m) ?? field(err, /^Verification error: (.*)$/m));
  return result;
}

function parseFull(run: ProcessRun): SClientResult {
  const out = run.stdout;
  const result: SClientResult = { ...run, appData: "", errors: sslErrors(run.stderr) };
  const s = /^(New|Reused), (\S+), Cipher is (\S+)/m.exec(out);
  if (s && s[2] !== "(NONE)") result.session = { state: s[1] as "New" | "Reused", protocol: s[2]!, cipher: s[3]! };
  const set = (key: "sessionId" | "peerSignatureType" | "serverKeyBits" | "serverTempKey" | "alpn" | "verify", value: string | undefined): void => {
    if (value !== undefined) result[key] = value;
  };
  set("sessionId", field(out, /^ {4}Session-ID: ?(\S*)$/m));
  set("peerSignatureType", field(out, /^Peer signature type: (.*)$/m));
  set("serverKeyBits", field(out, /^Server public key is (\d+) bit$/m));
  set("serverTempKey", field(out, /^(?:Server|Peer) Temp Key: (.*)$/m));
  set("alpn", field(out, /^ALPN protocol: (.*)$/m) ?? (/^No ALPN negotiated$/m.test(out) ? "" : undefined));
  set("verify", field(out, /^Verify return code: (.*)$/m));
  const ca = /^Acceptable client certificate CA names\n((?:(?!Requested|Client Certificate Types|Shared|Peer|---).*\n)*)/m.exec(out);
  if (ca) result.clientCaNames = ca[1]!.split("\n").filter((l) => l !== "");
  return result;
}

/** The comparable part of an s_client result (raw output and the random session ID dropped). */
export function sView(r: SClientResult): Omit<SClientResult, "stdout" | "stderr" | "code" | "sessionId"> {
  const { stdout: _o, stderr: _e, code: _c, sessionId: _s, ...view } = r;
  return view;
}

/** Runs a process to completion with a timeout (stdin closed). */
export function runProcess(cmd: string, args: string[], timeoutMs = 15000, input?: string): Promise<ProcessRun> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString("latin1");
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString("latin1");
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(input ?? "");
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, code });
    });
  });
}

/** curl's view of a run: exit code, output, TLS line and the protocol dialogue from -v (`>`/`<` lines). */
export interface CurlResult {
  code: number | null;
  stdout: string;
  tls: string[];
  dialogue: string[];
}

/** Runs `curl -sv ... args` (with the test CA) and extracts the dialogue. */
export async function curl(args: string[]): Promise<CurlResult> {
  const run = await runProcess("curl", ["-sv", "--max-time", "10", "--cacert", certs().ca.cert, ...args]);
  const lines = run.stderr.split(/\r?\n/);
  return {
    code: run.code,
    stdout: run.stdout,
    tls: lines.filter((l) => /^\* SSL connection using /.test(l)),
    dialogue: lines.filter((l) => /^[<>] /.test(l)),
  };
}

/** Runs test/mail/tls-e2e/clients.py with a JSON request; returns its JSON answer. */
export async function python<T = unknown>(request: Record<string, unknown>): Promise<T> {
  const script = path.join(repoRoot(), "test", "mail", "tls-e2e", "clients.py");
  const run = await runProcess("python3", [script], 20000, JSON.stringify({ cafile: certs().ca.cert, ...request }));
  if (run.code !== 0) throw new Error(`clients.py failed (${run.code}):\n${run.stderr}`);
  return JSON.parse(run.stdout) as T;
}

/**
 * Test helpers for the TLS layer: a PKI generated with the openssl CLI at
 * test time, ServerConf values built from directive lines, a small TLS echo
 * server made of the module's own functions, and an `openssl s_client` runner.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Level, ServerConf, type AnyDirective, type SetContext } from "../../../src/conf/directive.js";
import type { ConfLexer } from "../../../src/conf/lexer.js";
import { ConfError } from "../../../src/core/errors.js";
import { sslModule } from "../../../src/mail/ssl/module.js";
import { buildTlsContext, type TlsServerSetup } from "../../../src/mail/ssl/context.js";
import { clientCertificateCheck, clientTlsInfo, startTls } from "../../../src/mail/ssl/accept.js";

/** A fresh temp dir, removed by the returned function. */
export function tempDir(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "postern-tls-"));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

function ossl(dir: string, args: string[], input?: string): string {
  return execFileSync("openssl", args, { cwd: dir, input, stdio: ["pipe", "pipe", "pipe"] }).toString();
}

/** Paths of the generated test PKI. */
export interface Pki {
  readonly dir: string;
  readonly ca: string;
  readonly caKey: string;
  readonly rsaCert: string;
  readonly rsaKey: string;
  readonly ecCert: string;
  readonly ecKey: string;
  readonly client: string;
  readonly clientKey: string;
  readonly selfSigned: string;
  readonly selfSignedKey: string;
  readonly untrusted: string;
  readonly untrustedKey: string;
  readonly expired: string;
  readonly expiredKey: string;
  readonly revoked: string;
  readonly revokedKey: string;
  readonly deep: string;
  readonly deepKey: string;
  /** inter2 then inter1, for `-cert_chain`. */
  readonly deepChain: string;
  readonly inter1: string;
  readonly crl: string;
  readonly otherCa: string;
}

const CA_EXT = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n";

/** Generates every certificate the tests use (EC keys except the RSA server pair). */
export function makePki(dir: string): Pki {
  const p = (n: string): string => join(dir, n);
  writeFileSync(p("ca.ext"), CA_EXT);
  writeFileSync(p("index.txt"), "");
  writeFileSync(p("crlnumber"), "01\n");
  writeFileSync(
    p("ca.cnf"),
    [
      "[ca]",
      "default_ca=d",
      "[d]",
      `database=${p("index.txt")}`,
      `new_certs_dir=${dir}`,
      `crlnumber=${p("crlnumber")}`,
      "default_md=sha256",
      "policy=pol",
      "default_crl_days=30",
      "unique_subject=no",
      "preserve=yes",
      "rand_serial=yes",
      "[pol]",
      "commonName=supplied",
      "",
    ].join("\n"),
  );
  const ec = (name: string): void => void ossl(dir, ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", p(name)]);
  const selfsign = (key: string, crt: string, subj: string, ext = true): void => {
    ossl(dir, [
      "req",
      "-x509",
      "-new",
      "-key",
      p(key),
      "-out",
      p(crt),
      "-subj",
      subj,
      "-days",
      "30",
      ...(ext ? ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"] : []),
    ]);
  };
  const sign = (key: string, crt: string, subj: string, caCrt: string, caKey: string, isCa = false): void => {
    ossl(dir, ["req", "-new", "-key", p(key), "-out", p(crt + ".csr"), "-subj", subj]);
    ossl(dir, [
      "x509",
      "-req",
      "-in",
      p(crt + ".csr"),
      "-CA",
      p(caCrt),
      "-CAkey",
      p(caKey),
      "-CAcreateserial",
      "-out",
      p(crt),
      "-days",
      "30",
      ...(isCa ? ["-extfile", p("ca.ext")] : []),
    ]);
  };
  ec("ca.key");
  selfsign("ca.key", "ca.crt", "/O=Test Org/CN=Test CA");
  ossl(dir, ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", p("rsa.key")]);
  sign("rsa.key", "rsa.crt", "/CN=localhost", "ca.crt", "ca.key");
  ec("ec.key");
  sign("ec.key", "ec.crt", "/CN=localhost", "ca.crt", "ca.key");
  ec("client.key");
  sign("client.key", "client.crt", "/C=US/O=Example, Inc./CN=client one", "ca.crt", "ca.key");
  ec("self.key");
  selfsign("self.key", "self.crt", "/CN=self", false);
  ec("other.key");
  selfsign("other.key", "other.crt", "/CN=Other CA");
  ec("untrusted.key");
  sign("untrusted.key", "untrusted.crt", "/CN=untrusted", "other.crt", "other.key");
  const caSigned = (key: string, crt: string, cn: string, dates: string[]): void => {
    ec(key);
    ossl(dir, ["req", "-new", "-key", p(key), "-out", p(crt + ".csr"), "-subj", `/CN=${cn}`]);
    ossl(dir, [
      "ca",
      "-batch",
      "-config",
      p("ca.cnf"),
      "-cert",
      p("ca.crt"),
      "-keyfile",
      p("ca.key"),
      "-in",
      p(crt + ".csr"),
      "-out",
      p(crt),
      "-notext",
      ...dates,
    ]);
  };
  caSigned("expired.key", "expired.crt", "expired", ["-startdate", "20200101000000Z", "-enddate", "20210101000000Z"]);
  caSigned("revoked.key", "revoked.crt", "revoked", ["-days", "30"]);
  ossl(dir, ["ca", "-config", p("ca.cnf"), "-cert", p("ca.crt"), "-keyfile", p("ca.key"), "-revoke", p("revoked.crt")]);
  ossl(dir, ["ca", "-gencrl", "-config", p("ca.cnf"), "-cert", p("ca.crt"), "-keyfile", p("ca.key"), "-out", p("ca.crl")]);
  ec("inter1.key");
  sign("inter1.key", "inter1.crt", "/CN=Inter One", "ca.crt", "ca.key", true);
  ec("inter2.key");
  sign("inter2.key", "inter2.crt", "/CN=Inter Two", "inter1.crt", "inter1.key", true);
  ec("deep.key");
  sign("deep.key", "deep.crt", "/CN=deep", "inter2.crt", "inter2.key");
  ossl(dir, ["x509", "-in", p("inter2.crt"), "-out", p("chain.pem")]);
  writeFileSync(p("chain.pem"), ossl(dir, ["x509", "-in", p("inter2.crt")]) + ossl(dir, ["x509", "-in", p("inter1.crt")]));
  return {
    dir,
    ca: p("ca.crt"),
    caKey: p("ca.key"),
    rsaCert: p("rsa.crt"),
    rsaKey: p("rsa.key"),
    ecCert: p("ec.crt"),
    ecKey: p("ec.key"),
    client: p("client.crt"),
    clientKey: p("client.key"),
    selfSigned: p("self.crt"),
    selfSignedKey: p("self.key"),
    untrusted: p("untrusted.crt"),
    untrustedKey: p("untrusted.key"),
    expired: p("expired.crt"),
    expiredKey: p("expired.key"),
    revoked: p("revoked.crt"),
    revokedKey: p("revoked.key"),
    deep: p("deep.crt"),
    deepKey: p("deep.key"),
    deepChain: p("chain.pem"),
    inter1: p("inter1.crt"),
    crl: p("ca.crl"),
    otherCa: p("other.crt"),
  };
}

const byName = new Map<string, AnyDirective>(sslModule.directives.map((d) => [d.name, d]));

function setAll(level: Level, lines: readonly (readonly string[])[], confDir: string, warnings: string[]): void {
  for (const [i, [name, ...args]] of lines.entries()) {
    const d = byName.get(name!);
    if (!d) throw new Error(`unknown directive ${name}`);
    const location = { file: join(confDir, "nginx.conf"), line: i + 1 };
    const cx: SetContext = {
      name: name!,
      location,
      confDir,
      prefix: confDir + "/",
      level,
      lexer: undefined as unknown as ConfLexer,
      parseBlock: () => undefined,
      warn: (m) => void warnings.push(m),
      warnUnlocated: (m) => void warnings.push(m),
    };
    if (d.duplicates === "error" && level.has(d)) throw new ConfError(`"${name}" directive is duplicate`, location);
    try {
      level.set(d, d.parse(args, level.own(d), cx), location);
    } catch (err) {
      if (err instanceof ConfError && !err.location) err.location = location;
      throw err;
    }
  }
}

/** A ServerConf from `mail {}` and `server {}` directive lines (ssl module only). */
export function serverConf(
  server: readonly (readonly string[])[],
  mail: readonly (readonly string[])[] = [],
  confDir = "/",
): { conf: ServerConf; warnings: string[] } {
  const warnings: string[] = [];
  const m = new Level("mail", { file: join(confDir, "nginx.conf"), line: 1 });
  const s = new Level("server", { file: join(confDir, "nginx.conf"), line: 2 });
  setAll(m, mail, confDir, warnings);
  setAll(s, server, confDir, warnings);
  return { conf: new ServerConf(s, m), warnings };
}

/** Builds a setup for an implicit-TLS IMAP server from directive lines. */
export function setupFrom(
  server: readonly (readonly string[])[],
  opts: { confDir?: string; protocol?: "imap" | "pop3" | "smtp"; warn?: (m: string) => void } = {},
): TlsServerSetup {
  const { conf } = serverConf(server, [], opts.confDir ?? "/");
  const setup = buildTlsContext(conf, {
    protocol: opts.protocol ?? "imap",
    usesTls: true,
    listenSslLocations: [{ file: "/etc/nginx.conf", line: 3 }],
    ...(opts.warn ? { warn: opts.warn } : {}),
  });
  if (!setup) throw new Error("no setup");
  return setup;
}

/** One connection's outcome, as the echo server saw it. */
export interface EchoResult {
  check: ReturnType<typeof clientCertificateCheck>;
  info: ReturnType<typeof clientTlsInfo>;
}

/**
 * A TLS echo server from our own functions: after the handshake it writes
 * one JSON line (check + info) and closes; failures are recorded.
 */
export async function echoServer(
  setup: TlsServerSetup,
  opts: { starttls?: boolean } = {},
): Promise<{ port: number; results: EchoResult[]; errors: string[]; close: () => Promise<void> }> {
  const results: EchoResult[] = [];
  const errors: string[] = [];
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((sock) => {
    sockets.add(sock);
    sock.on("close", () => sockets.delete(sock));
    sock.on("error", () => undefined);
    const go = (reply?: string): void => {
      // as the session does: the front end's reply is queued, then the handshake starts in the same tick
      if (reply !== undefined) sock.write(reply);
      startTls(sock, setup).then(
        (t) => {
          const check = clientCertificateCheck(t, setup);
          const info = clientTlsInfo(t, setup, true);
          results.push({ check, info });
          t.on("error", () => undefined);
          t.end(JSON.stringify({ check, info }) + "\n");
        },
        (err: Error) => void errors.push(err.message),
      );
    };
    if (!opts.starttls) return go();
    // A tiny STARTTLS dialogue: greeting, then "a STARTTLS" upgrades.
    sock.write("* OK ready\r\n");
    let buf = "";
    sock.on("data", (d) => {
      buf += d.toString("latin1");
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      if (/^\S+ STARTTLS\r?$/i.test(buf.slice(0, nl))) go("a OK Begin TLS negotiation now\r\n");
    });
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as net.AddressInfo).port;
  return {
    port,
    results,
    errors,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
  };
}

/** The result of one s_client run. */
export interface SClientRun {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number | null;
}

/** Runs `openssl s_client` against 127.0.0.1:port; stdin stays open until the server closes. */
export function sClient(port: number, args: readonly string[], timeoutMs = 10000, endInput = false): Promise<SClientRun> {
  return new Promise((resolve) => {
    const child: ChildProcess = spawn("openssl", ["s_client", "-connect", `127.0.0.1:${port}`, "-servername", "localhost", ...args], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    // Servers that wait for a command (nginx after its greeting): end stdin once the handshake is printed.
    if (endInput)
      child.stdout!.on("data", () => {
        if (/^(New|Reused), /m.test(stdout)) child.stdin!.end();
      });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, code });
    });
  });
}

/** The JSON line the echo server sent, from s_client's output. */
export function echoLine(run: SClientRun): EchoResult | undefined {
  // s_client may still be printing a session ticket's hex dump when the line arrives.
  const line = /\{"check".*$/m.exec(run.stdout)?.[0];
  return line ? (JSON.parse(line) as EchoResult) : undefined;
}

/** "New, TLSv1.3, Cipher is X" / "Reused, ..." from s_client. */
export function sessionLine(run: SClientRun): { reused: boolean; protocol: string; cipher: string } | undefined {
  const m = /^(New|Reused), (\S+), Cipher is (\S+)/m.exec(run.stdout);
  return m && m[2] !== "(NONE)" ? { reused: m[1] === "Reused", protocol: m[2]!, cipher: m[3]! } : undefined;
}

/** Runs `nginx -t` on a mail config and returns its emerg message (without the log prefix). */
export function nginxTest(dir: string, mailBody: string): string {
  writeFileSync(
    join(dir, "nginx.conf"),
    `load_module /usr/lib/nginx/modules/ngx_mail_module.so;\nerror_log stderr;\npid ${join(dir, "nginx.pid")};\nevents {}\nmail {\n${mailBody}\n}\n`,
  );
  const r = spawnSync("/usr/sbin/nginx", ["-t", "-p", dir + "/", "-c", join(dir, "nginx.conf"), "-e", "stderr"], {
    encoding: "utf8",
    timeout: 10000,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const line = r.stderr.split("\n").find((l) => l.includes("[emerg]")) ?? "";
  return line.replace(/^.*\[emerg\] \d+#\d+: /, "");
}

export { freePort } from "../../support/ports.js";

/** Starts the nginx 1.22.1 oracle with a mail block; returns its stop function once the port answers. */
export async function startNginx(dir: string, mailBody: string): Promise<{ stop: () => Promise<void> }> {
  writeFileSync(
    join(dir, "nginx.conf"),
    `load_module /usr/lib/nginx/modules/ngx_mail_module.so;\ndaemon off;\nmaster_process off;\nerror_log ${join(dir, "error.log")} info;\npid ${join(dir, "nginx.pid")};\nevents {}\nmail {\n${mailBody}\n}\n`,
  );
  const child = spawn("/usr/sbin/nginx", ["-p", dir + "/", "-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log")], { stdio: "ignore" });
  const port = Number(/listen\s+127\.0\.0\.1:(\d+)/.exec(mailBody)![1]);
  for (let i = 0; i < 50; i++) {
    const ok = await new Promise<boolean>((r) => {
      const c = net.connect(port, "127.0.0.1", () => {
        c.destroy();
        r(true);
      });
      c.on("error", () => r(false));
    });
    if (ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    stop: () =>
      new Promise<void>((r) => {
        if (child.exitCode !== null) return r();
        child.on("exit", () => r());
        child.kill("SIGTERM");
      }),
  };
}

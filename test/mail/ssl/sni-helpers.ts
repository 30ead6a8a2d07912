/**
 * Helpers for the SNI tests: self-signed certificates whose subject CN is
 * the name they stand for (so a test reads which server answered from the
 * certificate the client saw), and real clients that send a server name:
 * openssl s_client, curl and Python's ssl module.
 */
import { execFileSync, spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A certificate file and its key. */
export interface NamedCert {
  readonly cert: string;
  readonly key: string;
}

/** Self-signed EC certificates, CN = the file's name; removed with `remove()`. */
export function namedCerts(names: readonly string[]): { dir: string; certs: Record<string, NamedCert>; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), "postern-sni-"));
  const certs: Record<string, NamedCert> = {};
  for (const name of names) {
    const cert = join(dir, `${name}.crt`);
    const key = join(dir, `${name}.key`);
    const args = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"];
    execFileSync("openssl", [...args, "-subj", `/CN=${name}`, "-keyout", key, "-out", cert], { stdio: "pipe" });
    certs[name] = { cert, key };
  }
  return { dir, certs, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** What one s_client run showed. */
export interface SniRun {
  /** The subject CN of the server certificate ("" when none was shown). */
  readonly cn: string;
  /** `Reused` or `New` session. */
  readonly reused: boolean;
  readonly stdout: string;
}

/** Options of sniSClient. */
export interface SClientOptions {
  /** `-servername NAME`; undefined sends no SNI (`-noservername`). */
  readonly servername?: string | undefined;
  /** `-starttls imap|smtp|pop3`. */
  readonly starttls?: "imap" | "smtp" | "pop3";
  /** Extra arguments (`-sess_out`, `-tls1_2`, `-cert` ...). */
  readonly args?: readonly string[];
  /** Lines written once the handshake is done (CRLF added), then stdin is closed after `waitMs`. */
  readonly lines?: readonly string[];
  readonly waitMs?: number;
}

/** Runs `openssl s_client` against 127.0.0.1:port. */
export function sniSClient(port: number, o: SClientOptions): Promise<SniRun> {
  const args = ["s_client", "-connect", `127.0.0.1:${port}`, "-crlf"];
  args.push(...(o.servername === undefined ? ["-noservername"] : ["-servername", o.servername]));
  if (o.starttls) args.push("-starttls", o.starttls);
  args.push(...(o.args ?? []));
  return new Promise((resolve) => {
    const child = spawn("openssl", args, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let sent = false;
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      if (!sent && /^(New|Reused), /m.test(stdout)) {
        sent = true;
        for (const l of o.lines ?? []) child.stdin.write(`${l}\n`);
        // s_client leaves at the end of its input
        setTimeout(() => child.stdin.end(), o.waitMs ?? 100);
      }
    });
    child.stderr.resume();
    const timer = setTimeout(() => child.kill("SIGKILL"), 8000);
    child.on("close", () => {
      clearTimeout(timer);
      resolve({ cn: cnOf(stdout), reused: /^Reused, /m.test(stdout), stdout });
    });
  });
}

/** The CN of the `subject=` line s_client prints for the server certificate. */
export function cnOf(sClientOutput: string): string {
  return /^subject=.*?CN\s?=\s?([^,\n/]+)/m.exec(sClientOutput)?.[1]?.trim() ?? "";
}

/** Python's ssl with server_hostname: the greeting line and the certificate's CN. */
export function pythonSni(port: number, serverHostname: string): { greeting: string; cn: string } {
  const script = [
    "import socket, ssl, sys",
    "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)",
    "ctx.check_hostname = False",
    "ctx.verify_mode = ssl.CERT_NONE",
    "s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[1]))), server_hostname=sys.argv[2])",
    "print(s.recv(200).decode().strip())",
    "print(ssl.DER_cert_to_PEM_cert(s.getpeercert(binary_form=True)))",
    "s.close()",
  ].join("\n");
  const out = execFileSync("python3", ["-c", script, String(port), serverHostname], { timeout: 8000 }).toString();
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(out)?.[0] ?? "";
  const subject = pem ? new X509Certificate(pem).subject : "";
  return { greeting: out.split("\n")[0] ?? "", cn: /CN=(.*)/.exec(subject)?.[1] ?? "" };
}

/** curl over implicit TLS to `imaps://NAME:PORT/` with NAME resolved to 127.0.0.1 (SNI = NAME); its exit code and stderr. */
export function curlImaps(port: number, name: string, user: string, pass: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(
      "curl",
      ["-sS", "-k", "--max-time", "8", "--resolve", `${name}:${port}:127.0.0.1`, "-u", `${user}:${pass}`, `imaps://${name}:${port}/`],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stderr = "";
    child.stdout.resume();
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("close", (code) => resolve({ code, stderr }));
  });
}

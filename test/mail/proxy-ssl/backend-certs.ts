/**
 * Backend certificates for the backend-TLS tests, made with openssl at test
 * time under the test CA of test/support/certs.ts: one for another name,
 * one expired, one self-signed (untrusted). The good one is certs().serverRsa
 * (DNS:localhost, IP:127.0.0.1).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { certs, type CertFiles } from "../../support/certs.js";

/** The extra backend certificates. */
export interface BackendCerts {
  /** SAN DNS:other.example only. */
  otherName: CertFiles;
  /** SAN IP:127.0.0.1, DNS:localhost, valid 2020 to 2021. */
  expired: CertFiles;
  /** SAN IP:127.0.0.1, self-signed. */
  selfSigned: CertFiles;
  /** SAN DNS:mail.backend.test (for proxy_ssl_name and SNI). */
  named: CertFiles;
}

let cached: BackendCerts | undefined;

/** Generates the certificates once per process. */
export function backendCerts(): BackendCerts {
  if (cached) return cached;
  const pki = certs();
  const dir = mkdtempSync(path.join(os.tmpdir(), "postern-backend-certs-"));
  if (!process.env.POSTERN_KEEP_TMP) process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  const run = (args: string[], cwd = dir): void => {
    execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
  };
  const make = (base: string, san: string, extra: string[] = []): CertFiles => {
    const key = path.join(dir, `${base}.key`);
    const csr = path.join(dir, `${base}.csr`);
    const crt = path.join(dir, `${base}.crt`);
    const ext = path.join(dir, `${base}.ext`);
    writeFileSync(ext, `[backend]\nbasicConstraints = CA:false\nsubjectAltName = ${san}\nextendedKeyUsage = serverAuth\n`);
    run(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key]);
    run(["req", "-new", "-config", "ca.cnf", "-key", key, "-subj", `/CN=${base}`, "-out", csr], pki.dir);
    run(
      [
        "ca",
        "-batch",
        "-config",
        "ca.cnf",
        "-cert",
        "ca.crt",
        "-keyfile",
        "ca.key",
        "-in",
        csr,
        "-out",
        crt,
        "-extfile",
        ext,
        "-extensions",
        "backend",
        "-notext",
        ...extra,
      ],
      pki.dir,
    );
    return { cert: crt, key, certPem: readFileSync(crt, "utf8"), keyPem: readFileSync(key, "utf8") };
  };
  const otherName = make("other", "DNS:other.example");
  const expired = make("expired", "DNS:localhost, IP:127.0.0.1", ["-startdate", "20200101000000Z", "-enddate", "20210101000000Z"]);
  const named = make("named", "DNS:mail.backend.test");
  const selfKey = path.join(dir, "self.key");
  const selfCrt = path.join(dir, "self.crt");
  run([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    selfKey,
    "-subj",
    "/CN=self",
    "-addext",
    "subjectAltName=IP:127.0.0.1",
    "-days",
    "30",
    "-out",
    selfCrt,
  ]);
  const selfSigned = { cert: selfCrt, key: selfKey, certPem: readFileSync(selfCrt, "utf8"), keyPem: readFileSync(selfKey, "utf8") };
  cached = { otherName, expired, selfSigned, named };
  return cached;
}

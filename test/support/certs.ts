/** Test PKI generated with the openssl CLI at test time (never committed), cached per process. */
import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

/** A certificate with its private key: file paths plus PEM text. */
export interface CertFiles {
  /** Path of the certificate PEM file. */
  cert: string;
  /** Path of the (unencrypted) private key PEM file. */
  key: string;
  certPem: string;
  keyPem: string;
}

/** Everything certs() generates. All paths are absolute, inside `dir`. */
export interface TestCerts {
  dir: string;
  /** Root test CA (self-signed). */
  ca: CertFiles;
  /** Intermediate CA signed by the root CA. */
  intermediate: CertFiles;
  /** Root + intermediate certificates concatenated (a trust bundle). */
  caBundle: string;
  /** Server certificate, RSA-2048, CN=localhost, SAN DNS:localhost + IP:127.0.0.1, signed by the CA. */
  serverRsa: CertFiles;
  /** Server certificate, ECDSA P-256, same names, signed by the CA. */
  serverEcdsa: CertFiles;
  /** The RSA server key encrypted (AES-256) with `serverKeyPassphrase`; pairs with serverRsa.cert. */
  serverKeyEncrypted: string;
  serverKeyPassphrase: string;
  /** A file holding the passphrase (for ssl_password_file), preceded by a wrong one on line 1. */
  passwordFile: string;
  /** Client certificate signed by the CA. */
  clientValid: CertFiles;
  /** Self-signed client certificate. */
  clientSelfSigned: CertFiles;
  /** Client certificate signed by the intermediate CA. */
  clientViaIntermediate: CertFiles;
  /** `clientViaIntermediate.cert` followed by the intermediate certificate (what a client presents). */
  clientViaIntermediateChain: string;
  /** Client certificate signed by the CA that expired in 2021. */
  clientExpired: CertFiles;
  /** Client certificate signed by the CA and listed in `crl`. */
  clientRevoked: CertFiles;
  /** CRL of the root CA (revokes clientRevoked). */
  crl: string;
  /** CRL of the intermediate CA (empty). */
  crlIntermediate: string;
  /** Root CRL followed by intermediate CRL (for chains with ssl_crl). */
  crlBundle: string;
  /** 48 random bytes (ssl_session_ticket_key, AES-128 format). */
  ticketKey48: string;
  /** 80 random bytes (ssl_session_ticket_key, AES-256 format). */
  ticketKey80: string;
}

let cached: TestCerts | undefined;

/** Generates (once per process) and returns the test PKI. */
export function certs(): TestCerts {
  cached ??= generate();
  return cached;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync("openssl", args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    const e = err as { stderr?: Buffer };
    throw new Error(`openssl ${args.join(" ")} failed: ${e.stderr?.toString() ?? String(err)}`, { cause: err });
  }
}

/** openssl ca configuration: one per signing CA (own database), extensions shared. */
function caConfig(dir: string): string {
  return `[ca]
default_ca = this_ca
[this_ca]
dir = ${dir}
database = ${dir}/index.txt
new_certs_dir = ${dir}/newcerts
serial = ${dir}/serial
crlnumber = ${dir}/crlnumber
default_md = sha256
default_days = 3650
default_crl_days = 3650
policy = any_policy
unique_subject = no
[any_policy]
organizationName = optional
commonName = supplied
[v3_ca]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[server]
basicConstraints = CA:false
subjectAltName = DNS:localhost, IP:127.0.0.1
extendedKeyUsage = serverAuth
[client]
basicConstraints = CA:false
extendedKeyUsage = clientAuth
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
`;
}

function generate(): TestCerts {
  const dir = mkdtempSync(path.join(os.tmpdir(), "postern-certs-"));
  // Private keys must not outlive the test process.
  if (!process.env.POSTERN_KEEP_TMP) process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  const p = (name: string): string => path.join(dir, name);
  const read = (name: string): string => readFileSync(p(name), "utf8");
  const files = (base: string): CertFiles => ({
    cert: p(`${base}.crt`),
    key: p(`${base}.key`),
    certPem: read(`${base}.crt`),
    keyPem: read(`${base}.key`),
  });

  for (const ca of ["ca", "intermediate"]) {
    mkdirSync(p(`${ca}-db/newcerts`), { recursive: true });
    writeFileSync(p(`${ca}-db/index.txt`), "");
    writeFileSync(p(`${ca}-db/serial`), ca === "ca" ? "1000\n" : "2000\n");
    writeFileSync(p(`${ca}-db/crlnumber`), "01\n");
    writeFileSync(p(`${ca}.cnf`), caConfig(p(`${ca}-db`)));
  }
  const rsaKey = (name: string): void => openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", name], dir);
  const ecKey = (name: string): void => openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name], dir);
  const csr = (key: string, subj: string, out: string): void => openssl(["req", "-new", "-config", "ca.cnf", "-key", key, "-subj", subj, "-out", out], dir);
  const sign = (ca: string, csrFile: string, out: string, ext: string, extra: string[] = []): void =>
    openssl(
      [
        "ca",
        "-batch",
        "-config",
        `${ca}.cnf`,
        "-cert",
        `${ca}.crt`,
        "-keyfile",
        `${ca}.key`,
        "-in",
        csrFile,
        "-out",
        out,
        "-extensions",
        ext,
        "-notext",
        ...extra,
      ],
      dir,
    );

  // Root CA: self-signed.
  rsaKey("ca.key");
  openssl(
    [
      "req",
      "-x509",
      "-new",
      "-config",
      "ca.cnf",
      "-extensions",
      "v3_ca",
      "-key",
      "ca.key",
      "-subj",
      "/O=Postern Test/CN=Postern Test CA",
      "-days",
      "3650",
      "-out",
      "ca.crt",
    ],
    dir,
  );
  // Intermediate CA, signed by the root.
  rsaKey("intermediate.key");
  csr("intermediate.key", "/O=Postern Test/CN=Postern Test Intermediate CA", "intermediate.csr");
  sign("ca", "intermediate.csr", "intermediate.crt", "v3_ca");

  rsaKey("server-rsa.key");
  csr("server-rsa.key", "/CN=localhost", "server-rsa.csr");
  sign("ca", "server-rsa.csr", "server-rsa.crt", "server");
  ecKey("server-ecdsa.key");
  csr("server-ecdsa.key", "/CN=localhost", "server-ecdsa.csr");
  sign("ca", "server-ecdsa.csr", "server-ecdsa.crt", "server");

  const passphrase = "test passphrase";
  writeFileSync(p("passphrase.txt"), `wrong one\n${passphrase}\n`);
  openssl(["pkey", "-in", "server-rsa.key", "-aes256", "-passout", `pass:${passphrase}`, "-out", "server-rsa-encrypted.key"], dir);

  rsaKey("client-valid.key");
  csr("client-valid.key", "/O=Postern Test/CN=client valid", "client-valid.csr");
  sign("ca", "client-valid.csr", "client-valid.crt", "client");

  rsaKey("client-self.key");
  openssl(
    ["req", "-x509", "-new", "-config", "ca.cnf", "-key", "client-self.key", "-subj", "/CN=client self-signed", "-days", "3650", "-out", "client-self.crt"],
    dir,
  );

  rsaKey("client-inter.key");
  csr("client-inter.key", "/O=Postern Test/CN=client via intermediate", "client-inter.csr");
  sign("intermediate", "client-inter.csr", "client-inter.crt", "client");
  writeFileSync(p("client-inter-chain.crt"), read("client-inter.crt") + read("intermediate.crt"));

  rsaKey("client-expired.key");
  csr("client-expired.key", "/O=Postern Test/CN=client expired", "client-expired.csr");
  sign("ca", "client-expired.csr", "client-expired.crt", "client", ["-startdate", "20200101000000Z", "-enddate", "20210101000000Z"]);

  rsaKey("client-revoked.key");
  csr("client-revoked.key", "/O=Postern Test/CN=client revoked", "client-revoked.csr");
  sign("ca", "client-revoked.csr", "client-revoked.crt", "client");
  openssl(["ca", "-config", "ca.cnf", "-cert", "ca.crt", "-keyfile", "ca.key", "-revoke", "client-revoked.crt"], dir);
  openssl(["ca", "-config", "ca.cnf", "-cert", "ca.crt", "-keyfile", "ca.key", "-gencrl", "-out", "ca.crl"], dir);
  openssl(["ca", "-config", "intermediate.cnf", "-cert", "intermediate.crt", "-keyfile", "intermediate.key", "-gencrl", "-out", "intermediate.crl"], dir);

  writeFileSync(p("ca-bundle.crt"), read("ca.crt") + read("intermediate.crt"));
  writeFileSync(p("crl-bundle.crl"), read("ca.crl") + read("intermediate.crl"));
  openssl(["rand", "-out", "ticket48.key", "48"], dir);
  openssl(["rand", "-out", "ticket80.key", "80"], dir);

  return {
    dir,
    ca: files("ca"),
    intermediate: files("intermediate"),
    caBundle: p("ca-bundle.crt"),
    serverRsa: files("server-rsa"),
    serverEcdsa: files("server-ecdsa"),
    serverKeyEncrypted: p("server-rsa-encrypted.key"),
    serverKeyPassphrase: passphrase,
    passwordFile: p("passphrase.txt"),
    clientValid: files("client-valid"),
    clientSelfSigned: files("client-self"),
    clientViaIntermediate: files("client-inter"),
    clientViaIntermediateChain: p("client-inter-chain.crt"),
    clientExpired: files("client-expired"),
    clientRevoked: files("client-revoked"),
    crl: p("ca.crl"),
    crlIntermediate: p("intermediate.crl"),
    crlBundle: p("crl-bundle.crl"),
    ticketKey48: p("ticket48.key"),
    ticketKey80: p("ticket80.key"),
  };
}

/**
 * Loading the files a TLS server needs (certificates, keys, CA lists, CRLs,
 * DH parameters), with nginx's error messages. nginx puts OpenSSL's error
 * queue in the parentheses; we put the nearest OpenSSL wording we can
 * produce, so the prefix is always exact.
 */
import { createPrivateKey, createPublicKey, type KeyObject, X509Certificate } from "node:crypto";
import { readConfFile } from "../../core/conf-inputs.js";
import { ConfError } from "../../core/errors.js";
import type { FileRef } from "./module.js";

/** How a key is named in messages: never the inline key itself (house rule: no secrets in logs). */
export function keyName(ref: FileRef): string {
  return ref.path.startsWith("data:") ? "data:..." : ref.path;
}

/** A certificate chain as loaded: PEM text and the parsed leaf. */
export interface LoadedCertificate {
  readonly ref: FileRef;
  readonly pem: string;
  readonly leaf: X509Certificate;
  readonly chain: readonly X509Certificate[];
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/** The PEM blocks of one type in a text, in order. */
export function pemBlocks(text: string, types: readonly string[]): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(PEM_BLOCK)) if (types.includes(m[1]!)) out.push(m[0]);
  return out;
}

function bioError(path: string, err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  const text =
    code === "ENOENT"
      ? "No such file or directory"
      : code === "EACCES"
        ? "Permission denied"
        : code === "EISDIR"
          ? "Is a directory"
          : String((err as Error).message);
  const errno = code === "ENOENT" ? 2 : code === "EACCES" ? 13 : code === "EISDIR" ? 21 : 0;
  const bio = code === "ENOENT" ? " error:10000080:BIO routines::no such file" : " error:10080002:BIO routines::system lib";
  return `(SSL: error:${(0x80000000 + errno).toString(16).toUpperCase()}:system library::${text}:calling fopen(${path}, r)${bio})`;
}

/** Reads a file or `data:` value as text; throws `<what>("PATH") failed (...)`-style errors through `fail`. */
function readSource(ref: FileRef, fail: (reason: string) => ConfError): string {
  if (ref.path.startsWith("data:")) return ref.path.slice(5);
  try {
    return readConfFile(ref.path).toString("latin1");
  } catch (err) {
    throw fail(`BIO_new_file() failed ${bioError(ref.path, err)}`);
  }
}

/** Loads `ssl_certificate`: leaf first, then intermediates. */
export function loadCertificate(ref: FileRef): LoadedCertificate {
  const fail = (reason: string): ConfError => ConfError.unlocated(`cannot load certificate "${ref.path}": ${reason}`);
  const text = readSource(ref, fail);
  const blocks = pemBlocks(text, ["CERTIFICATE", "TRUSTED CERTIFICATE", "X509 CERTIFICATE"]);
  if (blocks.length === 0) {
    throw fail("PEM_read_bio_X509_AUX() failed (SSL: error:0480006C:PEM routines::no start line:Expecting: TRUSTED CERTIFICATE)");
  }
  const chain: X509Certificate[] = [];
  for (const [i, b] of blocks.entries()) {
    try {
      chain.push(new X509Certificate(b));
    } catch (err) {
      const what = i === 0 ? "PEM_read_bio_X509_AUX()" : "PEM_read_bio_X509()";
      throw fail(`${what} failed (SSL: ${(err as Error).message})`);
    }
  }
  return { ref, pem: blocks.join("\n") + "\n", leaf: chain[0]!, chain };
}

/**
 * Loads `ssl_certificate_key`, trying each passphrase in order (nginx's
 * ssl_password_file rule), and returns an unencrypted PEM for Node.
 */
export function loadPrivateKey(ref: FileRef, passwords: readonly Buffer[] | undefined): KeyObject {
  const fail = (reason: string): ConfError => ConfError.unlocated(`cannot load certificate key "${keyName(ref)}": ${reason}`);
  if (ref.path.startsWith("engine:")) {
    const name = ref.path.split(":")[1] ?? "";
    throw fail(`ENGINE_by_id("${name}") failed (SSL: OpenSSL engines are not available in Node.js)`);
  }
  if (ref.path.startsWith("store:")) {
    throw fail("OSSL_STORE_open() failed (SSL: OpenSSL provider stores are not available in Node.js)");
  }
  const text = readSource(ref, fail);
  const tries = passwords && passwords.length > 0 ? passwords : [undefined];
  let last: unknown;
  for (const passphrase of tries) {
    try {
      return createPrivateKey(passphrase === undefined ? { key: text, format: "pem" } : { key: text, format: "pem", passphrase });
    } catch (err) {
      last = err;
    }
  }
  // The reason is OpenSSL's text; it never contains the passphrase.
  throw fail(`PEM_read_bio_PrivateKey() failed (SSL: ${(last as Error).message})`);
}

/** nginx's check that the i-th key belongs to the i-th certificate. */
export function checkKeyMatches(cert: LoadedCertificate, key: KeyObject, keyRef: FileRef): void {
  const a = cert.leaf.publicKey.export({ type: "spki", format: "der" });
  const b = createPublicKey(key).export({ type: "spki", format: "der" });
  if (!a.equals(b)) {
    throw ConfError.unlocated(`SSL_CTX_use_PrivateKey("${keyName(keyRef)}") failed (SSL: error:05800074:x509 certificate routines::key values mismatch)`);
  }
}

/** Loads a CA list (`ssl_client_certificate`, `ssl_trusted_certificate`). */
export function loadCaFile(ref: FileRef, what: string): { pem: string; certs: X509Certificate[] } {
  const fail = (reason: string): ConfError => ConfError.unlocated(`${what}("${ref.path}") failed ${reason.replace(/^BIO_new_file\(\) failed /, "")}`);
  const text = readSource(ref, fail);
  const blocks = pemBlocks(text, ["CERTIFICATE", "TRUSTED CERTIFICATE", "X509 CERTIFICATE"]);
  const certs: X509Certificate[] = [];
  for (const b of blocks) {
    try {
      certs.push(new X509Certificate(b));
    } catch (err) {
      throw fail(`(SSL: ${(err as Error).message})`);
    }
  }
  if (certs.length === 0) throw fail("(SSL: error:05880009:x509 certificate routines::PEM lib)");
  return { pem: blocks.join("\n") + "\n", certs };
}

/** Loads `ssl_crl`. */
export function loadCrl(ref: FileRef): string[] {
  const fail = (reason: string): ConfError =>
    ConfError.unlocated(`X509_LOOKUP_load_file("${ref.path}") failed ${reason.replace(/^BIO_new_file\(\) failed /, "")}`);
  const text = readSource(ref, fail);
  const blocks = pemBlocks(text, ["X509 CRL"]);
  if (blocks.length === 0) throw fail("(SSL: error:05880009:x509 certificate routines::PEM lib)");
  // one string per CRL: Node reads only the first CRL of a single string
  return blocks.map((b) => `${b}\n`);
}

/** Loads `ssl_dhparam`; Node accepts garbage silently, so the PEM type is checked here. */
export function loadDhparam(ref: FileRef): string {
  const text = readSource(ref, (reason) => ConfError.unlocated(reason.replace(/^BIO_new_file\(\)/, `BIO_new_file("${ref.path}")`)));
  const blocks = pemBlocks(text, ["DH PARAMETERS", "X9.42 DH PARAMETERS"]);
  if (blocks.length === 0) {
    throw ConfError.unlocated(`PEM_read_bio_DHparams("${ref.path}") failed (SSL: error:0480006C:PEM routines::no start line:Expecting: DH PARAMETERS)`);
  }
  return blocks[0]! + "\n";
}

/**
 * Client-certificate verification results in OpenSSL's terms: the verify
 * error numbers and X509_verify_cert_error_string texts nginx logs and sends
 * in Auth-SSL-Verify, and the issuer path used to count ssl_verify_depth.
 *
 * Rule: docs/behaviour/tls.md#tls-4-client-certificates.
 */
import type { X509Certificate } from "node:crypto";

/**
 * Node's verifyError() codes (the names it knows) -> OpenSSL 3.0 numbers;
 * for the others Node says UNSPECIFIED and the number comes from the text.
 */
const CODE_NUMBERS: Readonly<Record<string, number>> = {
  UNABLE_TO_GET_ISSUER_CERT: 2,
  UNABLE_TO_GET_CRL: 3,
  UNABLE_TO_DECRYPT_CERT_SIGNATURE: 4,
  UNABLE_TO_DECRYPT_CRL_SIGNATURE: 5,
  UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY: 6,
  CERT_SIGNATURE_FAILURE: 7,
  CRL_SIGNATURE_FAILURE: 8,
  CERT_NOT_YET_VALID: 9,
  CERT_HAS_EXPIRED: 10,
  CRL_NOT_YET_VALID: 11,
  CRL_HAS_EXPIRED: 12,
  ERROR_IN_CERT_NOT_BEFORE_FIELD: 13,
  ERROR_IN_CERT_NOT_AFTER_FIELD: 14,
  ERROR_IN_CRL_LAST_UPDATE_FIELD: 15,
  ERROR_IN_CRL_NEXT_UPDATE_FIELD: 16,
  OUT_OF_MEM: 17,
  DEPTH_ZERO_SELF_SIGNED_CERT: 18,
  SELF_SIGNED_CERT_IN_CHAIN: 19,
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 20,
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 21,
  CERT_CHAIN_TOO_LONG: 22,
  CERT_REVOKED: 23,
  PATH_LENGTH_EXCEEDED: 25,
  INVALID_PURPOSE: 26,
  CERT_UNTRUSTED: 27,
  CERT_REJECTED: 28,
  HOSTNAME_MISMATCH: 62,
  INVALID_CA: 79,
};

/** OpenSSL 3.0's texts for the verify errors (x509_txt.c), by number (x509_vfy.h). */
const TEXTS: Readonly<Record<number, string>> = {
  0: "ok",
  1: "unspecified certificate verification error",
  2: "unable to get issuer certificate",
  3: "unable to get certificate CRL",
  4: "unable to decrypt certificate's signature",
  5: "unable to decrypt CRL's signature",
  6: "unable to decode issuer public key",
  7: "certificate signature failure",
  8: "CRL signature failure",
  9: "certificate is not yet valid",
  10: "certificate has expired",
  11: "CRL is not yet valid",
  12: "CRL has expired",
  13: "format error in certificate's notBefore field",
  14: "format error in certificate's notAfter field",
  15: "format error in CRL's lastUpdate field",
  16: "format error in CRL's nextUpdate field",
  17: "out of memory",
  18: "self-signed certificate",
  19: "self-signed certificate in certificate chain",
  20: "unable to get local issuer certificate",
  21: "unable to verify the first certificate",
  22: "certificate chain too long",
  23: "certificate revoked",
  24: "issuer certificate doesn't have a public key",
  25: "path length constraint exceeded",
  26: "unsuitable certificate purpose",
  27: "certificate not trusted",
  28: "certificate rejected",
  29: "subject issuer mismatch",
  30: "authority and subject key identifier mismatch",
  31: "authority and issuer serial number mismatch",
  32: "key usage does not include certificate signing",
  33: "unable to get CRL issuer certificate",
  34: "unhandled critical extension",
  35: "key usage does not include CRL signing",
  36: "unhandled critical CRL extension",
  37: "invalid non-CA certificate (has CA markings)",
  38: "proxy path length constraint exceeded",
  39: "key usage does not include digital signature",
  40: "proxy certificates not allowed, please set the appropriate flag",
  41: "invalid or inconsistent certificate extension",
  42: "invalid or inconsistent certificate policy extension",
  43: "no explicit policy",
  44: "different CRL scope",
  45: "unsupported extension feature",
  46: "RFC 3779 resource not subset of parent's resources",
  47: "permitted subtree violation",
  48: "excluded subtree violation",
  49: "name constraints minimum and maximum not supported",
  50: "application verification failure",
  51: "unsupported name constraint type",
  52: "unsupported or invalid name constraint syntax",
  53: "unsupported or invalid name syntax",
  54: "CRL path validation error",
  55: "path loop",
  56: "Suite B: certificate version invalid",
  57: "Suite B: invalid public key algorithm",
  58: "Suite B: invalid ECC curve",
  59: "Suite B: invalid signature algorithm",
  60: "Suite B: curve not allowed for this LOS",
  61: "Suite B: cannot sign P-384 with P-256",
  62: "hostname mismatch",
  63: "email address mismatch",
  64: "IP address mismatch",
  65: "no matching DANE TLSA records",
  66: "EE certificate key too weak",
  67: "CA certificate key too weak",
  68: "CA signature digest algorithm too weak",
  69: "invalid certificate verification context",
  70: "issuer certificate lookup error",
  71: "Certificate Transparency required, but no valid SCTs found",
  72: "proxy subject name violation",
  73: "OCSP verification needed",
  74: "OCSP verification failed",
  75: "OCSP unknown cert",
  76: "Cannot find certificate signature algorithm",
  77: "subject signature algorithm and issuer public key algorithm mismatch",
  78: "cert info signature and signature algorithm mismatch",
  79: "invalid CA certificate",
  80: "Path length invalid for non-CA cert",
  81: "Path length given without key usage keyCertSign",
  82: "Key usage keyCertSign invalid for non-CA cert",
  83: "Issuer name empty",
  84: "Subject name empty",
  85: "Missing Authority Key Identifier",
  86: "Missing Subject Key Identifier",
  87: "Empty Subject Alternative Name extension",
  88: "Subject empty and Subject Alt Name extension not critical",
  89: "Basic Constraints of CA cert not marked critical",
  90: "Authority Key Identifier marked critical",
  91: "Subject Key Identifier marked critical",
  92: "CA cert does not include key usage extension",
  93: "Using cert extension requires at least X509v3",
  94: "Certificate public key has explicit ECC parameters",
};

const NUMBERS_BY_TEXT = new Map<string, number>(Object.entries(TEXTS).map(([n, t]) => [t, Number(n)]));

/** The failures optional_no_ca lets through (nginx's ngx_ssl_verify_error_optional). */
export const OPTIONAL_NO_CA_ERRORS: ReadonlySet<number> = new Set([18, 19, 20, 27, 21]);

/**
 * Verdicts a missing trust anchor can cause (OpenSSL reports the last error
 * it met, so a chain that stops short of an unadvertised root ends in one of
 * these; a signature checked against a same-named CA of the other list, or a
 * CRL signed by the missing root, fails). Any other verdict comes from the
 * certificates themselves and stands whatever the store.
 */
export const ANCHOR_ERRORS: ReadonlySet<number> = new Set([2, 3, 4, 5, 7, 8, 18, 19, 20, 21, 27, 33, 54]);

/**
 * OpenSSL's number for the error Node's verifyError() returns (its code, or
 * OpenSSL's own text as the message); 1 (unspecified) when neither is known.
 */
export function verifyErrorNumberOf(err: { code?: string; message?: string }): number {
  const byCode = err.code === undefined ? undefined : CODE_NUMBERS[err.code];
  if (byCode !== undefined) return byCode;
  // Newer OpenSSL releases lengthen some texts ("... or the system clock is incorrect").
  const message = err.message ?? "";
  for (const [text, n] of NUMBERS_BY_TEXT) if (message === text || message.startsWith(`${text} `)) return n;
  return 1;
}

/** OpenSSL's text for a verify error number. */
export function verifyErrorText(n: number): string {
  return TEXTS[n] ?? "unspecified certificate verification error";
}

function issues(issuer: X509Certificate, subject: X509Certificate): boolean {
  return subject.checkIssued(issuer) && subject.verify(issuer.publicKey);
}

/**
 * The issuer path from the leaf, trusted anchors first (OpenSSL's default
 * X509_V_FLAG_TRUSTED_FIRST), then what the client sent. Only used to count
 * ssl_verify_depth for a chain OpenSSL has already accepted; it decides
 * nothing about trust.
 */
export function issuerPath(sent: readonly X509Certificate[], anchors: readonly X509Certificate[]): X509Certificate[] {
  const leaf = sent[0];
  if (!leaf) return [];
  const path: X509Certificate[] = [leaf];
  let current = leaf;
  while (path.length < 100 && !issues(current, current)) {
    const next = anchors.find((a) => issues(a, current)) ?? sent.find((s) => !path.includes(s) && issues(s, current));
    if (!next || next.raw.equals(current.raw)) break;
    path.push(next);
    current = next;
  }
  return path;
}

/** A peer certificate with its issuers, as `getPeerCertificate(true)` gives it. */
interface IssuedCertificate {
  readonly raw?: Buffer;
  readonly fingerprint256: string;
  readonly issuerCertificate?: IssuedCertificate;
}

/**
 * The number of certificates in a verified peer chain, the trust anchor
 * included (a self-issued root points at itself: counted once). Node has no
 * verify-depth option; `*_verify_depth` compares `length - 2` (the
 * intermediates) with the depth, and OpenSSL's word for a chain past it is
 * 20, as it says for client certificates.
 */
export function peerChainLength(cert: IssuedCertificate | undefined): number {
  let n = 0;
  const seen = new Set<string>();
  for (let c = cert; c && c.raw && !seen.has(c.fingerprint256); c = c.issuerCertificate) {
    seen.add(c.fingerprint256);
    n++;
  }
  return n;
}

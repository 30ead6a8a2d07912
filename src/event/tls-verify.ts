/**
 * Client-certificate verification results in OpenSSL's terms (numbers and
 * X509_verify_cert_error_string texts), and a chain walk with
 * crypto.X509Certificate for CAs that must be trusted but not advertised.
 */
import type { X509Certificate } from "node:crypto";

/** Node's authorizationError codes -> OpenSSL verify error numbers. */
const CODE_NUMBERS: Readonly<Record<string, number>> = {
  UNABLE_TO_GET_ISSUER_CERT: 2, UNABLE_TO_GET_CRL: 3, UNABLE_TO_DECRYPT_CERT_SIGNATURE: 4,
  UNABLE_TO_DECRYPT_CRL_SIGNATURE: 5, UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY: 6, CERT_SIGNATURE_FAILURE: 7,
  CRL_SIGNATURE_FAILURE: 8, CERT_NOT_YET_VALID: 9, CERT_HAS_EXPIRED: 10, CRL_NOT_YET_VALID: 11, CRL_HAS_EXPIRED: 12,
  ERROR_IN_CERT_NOT_BEFORE_FIELD: 13, ERROR_IN_CERT_NOT_AFTER_FIELD: 14, ERROR_IN_CRL_LAST_UPDATE_FIELD: 15,
  ERROR_IN_CRL_NEXT_UPDATE_FIELD: 16, OUT_OF_MEM: 17, DEPTH_ZERO_SELF_SIGNED_CERT: 18, SELF_SIGNED_CERT_IN_CHAIN: 19,
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 20, UNABLE_TO_VERIFY_LEAF_SIGNATURE: 21, CERT_CHAIN_TOO_LONG: 22, CERT_REVOKED: 23,
  INVALID_CA: 24, PATH_LENGTH_EXCEEDED: 25, INVALID_PURPOSE: 26, CERT_UNTRUSTED: 27, CERT_REJECTED: 28,
};

/** OpenSSL 3's texts for the verify errors. */
const TEXTS: Readonly<Record<number, string>> = {
  0: "ok", 2: "unable to get issuer certificate", 3: "unable to get certificate CRL",
  4: "unable to decrypt certificate's signature", 5: "unable to decrypt CRL's signature",
  6: "unable to decode issuer public key", 7: "certificate signature failure", 8: "CRL signature failure",
  9: "certificate is not yet valid", 10: "certificate has expired", 11: "CRL is not yet valid", 12: "CRL has expired",
  13: "format error in certificate's notBefore field", 14: "format error in certificate's notAfter field",
  15: "format error in CRL's lastUpdate field", 16: "format error in CRL's nextUpdate field", 17: "out of memory",
  18: "self-signed certificate", 19: "self-signed certificate in certificate chain",
  20: "unable to get local issuer certificate", 21: "unable to verify the first certificate",
  22: "certificate chain too long", 23: "certificate revoked", 24: "invalid CA certificate",
  25: "path length constraint exceeded", 26: "unsuitable certificate purpose", 27: "certificate not trusted",
  28: "certificate rejected",
};

/** The failures optional_no_ca lets through (nginx's ngx_ssl_verify_error_optional). */
export const OPTIONAL_NO_CA_ERRORS: ReadonlySet<number> = new Set([18, 19, 20, 27, 21]);

/** OpenSSL's number for a Node authorizationError code (1 = unspecified when unknown). */
export function verifyErrorNumber(code: string | undefined): number {
  if (!code) return 0;
  return CODE_NUMBERS[code] ?? 1;
}

/** OpenSSL's text for a verify error number. */
export function verifyErrorText(n: number): string {
  return TEXTS[n] ?? "unspecified certificate verification error";
}

function selfSigned(c: X509Certificate): boolean {
  return c.checkIssued(c) && c.verify(c.publicKey);
}

/**
 * Verifies a client chain against `anchors` the way OpenSSL reports it:
 * returns 0 or a verify error number, and the chain built (leaf to root).
 * `sent` is what the client sent, leaf first.
 */
export function walkChain(sent: readonly X509Certificate[], anchors: readonly X509Certificate[], now = new Date()): { error: number; chain: X509Certificate[] } {
  const leaf = sent[0];
  if (!leaf) return { error: 20, chain: [] };
  const chain: X509Certificate[] = [leaf];
  let current = leaf;
  for (let guard = 0; guard < 100; guard++) {
    const anchor = anchors.find((a) => current.checkIssued(a) && current.verify(a.publicKey));
    if (anchor) {
      if (anchor.raw.equals(current.raw)) break;
      chain.push(anchor);
      if (selfSigned(anchor)) break;
      current = anchor;
      continue;
    }
    if (selfSigned(current)) return { error: chain.length === 1 ? 18 : 19, chain };
    const next = sent.find((s) => !s.raw.equals(current.raw) && current.checkIssued(s));
    if (!next) return { error: chain.length === 1 ? 21 : 20, chain };
    if (!current.verify(next.publicKey)) return { error: 7, chain };
    chain.push(next);
    current = next;
  }
  for (const c of chain) {
    if (new Date(c.validFrom) > now) return { error: 9, chain };
    if (new Date(c.validTo) < now) return { error: 10, chain };
  }
  return { error: 0, chain };
}

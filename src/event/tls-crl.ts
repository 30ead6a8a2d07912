/**
 * CRL checks for chains verified outside OpenSSL (CAs trusted but not
 * advertised): a small DER reader for X.509 CRLs and OpenSSL's "check every
 * certificate of the chain" rule with its error numbers.
 */
import { verify as verifySignature, type X509Certificate } from "node:crypto";

/** The parts of a CRL the check needs. */
export interface ParsedCrl {
  readonly tbs: Buffer;
  readonly hash: string | null;
  readonly signature: Buffer;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date | undefined;
  /** Revoked serial numbers, upper-case hex without leading zero bytes. */
  readonly revoked: ReadonlySet<string>;
}

interface Tlv {
  readonly tag: number;
  /** The whole element, header included. */
  readonly raw: Buffer;
  readonly body: Buffer;
  readonly end: number;
}

function readTlv(buf: Buffer, pos: number): Tlv {
  const start = pos;
  const tag = buf[pos++]!;
  let len = buf[pos++]!;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[pos++]!;
  }
  if (pos + len > buf.length) throw new Error("truncated DER");
  return { tag, raw: buf.subarray(start, pos + len), body: buf.subarray(pos, pos + len), end: pos + len };
}

function children(body: Buffer): Tlv[] {
  const out: Tlv[] = [];
  for (let pos = 0; pos < body.length;) {
    const t = readTlv(body, pos);
    out.push(t);
    pos = t.end;
  }
  return out;
}

function parseTime(t: Tlv): Date {
  const s = t.body.toString("latin1");
  const full = t.tag === 0x17 ? (Number(s.slice(0, 2)) >= 50 ? "19" : "20") + s : s;
  return new Date(`${full.slice(0, 4)}-${full.slice(4, 6)}-${full.slice(6, 8)}T${full.slice(8, 10)}:${full.slice(10, 12)}:${full.slice(12, 14)}Z`);
}

function serialHex(b: Buffer): string {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i).toString("hex").toUpperCase();
}

const HASH_BY_OID: Readonly<Record<string, string | null>> = {
  "2a864886f70d01010b": "sha256", "2a864886f70d01010c": "sha384", "2a864886f70d01010d": "sha512", "2a864886f70d010105": "sha1",
  "2a8648ce3d040302": "sha256", "2a8648ce3d040303": "sha384", "2a8648ce3d040304": "sha512", "2a8648ce3d040101": "sha1",
  "2b6570": null, "2b6571": null,
};

/** Parses one DER CRL. */
export function parseCrl(der: Buffer): ParsedCrl {
  const [tbsTlv, algTlv, sigTlv] = children(readTlv(der, 0).body);
  if (!tbsTlv || !algTlv || !sigTlv) throw new Error("bad CRL");
  const oid = children(algTlv.body)[0]!.body.toString("hex");
  const fields = children(tbsTlv.body);
  let i = fields[0]!.tag === 0x02 ? 1 : 0; // optional version
  i += 2; // signature algorithm, issuer
  const thisUpdate = parseTime(fields[i++]!);
  let nextUpdate: Date | undefined;
  if (fields[i] && (fields[i]!.tag === 0x17 || fields[i]!.tag === 0x18)) nextUpdate = parseTime(fields[i++]!);
  const revoked = new Set<string>();
  if (fields[i] && fields[i]!.tag === 0x30) for (const entry of children(fields[i]!.body)) revoked.add(serialHex(children(entry.body)[0]!.body));
  return {
    tbs: tbsTlv.raw, hash: HASH_BY_OID[oid] ?? "sha256",
    signature: sigTlv.body.subarray(1), thisUpdate, nextUpdate, revoked,
  };
}

/** The PEM blocks of a CRL file as DER. */
export function crlsFromPem(pem: string): ParsedCrl[] {
  return [...pem.matchAll(/-----BEGIN X509 CRL-----([\s\S]*?)-----END X509 CRL-----/g)].map((m) => parseCrl(Buffer.from(m[1]!.replace(/\s+/g, ""), "base64")));
}

function signedBy(crl: ParsedCrl, issuer: X509Certificate): boolean {
  try {
    return verifySignature(crl.hash, crl.tbs, issuer.publicKey, crl.signature);
  } catch {
    return false;
  }
}

/**
 * OpenSSL's CRL_CHECK_ALL: each certificate of the chain (leaf first, root
 * last, the root being its own issuer) needs a valid CRL from its issuer.
 * Returns 0 or the verify error number.
 */
export function checkChainCrls(chain: readonly X509Certificate[], crls: readonly ParsedCrl[], now = new Date()): number {
  for (const [i, cert] of chain.entries()) {
    const issuer = chain[i + 1] ?? cert;
    const crl = crls.find((c) => signedBy(c, issuer));
    if (!crl) return 3;
    if (crl.thisUpdate > now) return 11;
    if (crl.nextUpdate && crl.nextUpdate < now) return 12;
    if (crl.revoked.has(cert.serialNumber.toUpperCase().replace(/^(00)+(?=.)/, ""))) return 23;
  }
  return 0;
}

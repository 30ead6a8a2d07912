/**
 * OpenSSL's own verdict on a client certificate chain against a trust store
 * that must not be advertised (nginx's `ssl_trusted_certificate`).
 *
 * Node's `ca` option both trusts a CA and advertises its name in the
 * CertificateRequest, and Node has no call that does only the first. So the
 * handshake with the client trusts the advertised CAs only, and when that
 * verification fails and unadvertised CAs exist, the client's chain is shown
 * to a second, in-process OpenSSL server whose store holds both lists: it
 * receives a TLS 1.2 ClientHello and the client's Certificate message, runs
 * exactly the path validation a real handshake runs (RFC 5280 checks, the
 * `ssl_client` purpose, CRLs), and its verify result is read before any key
 * exchange. Nothing leaves the process; no private key of the client is
 * needed, because OpenSSL verifies the chain as soon as the Certificate
 * message arrives.
 */
import { randomBytes } from "node:crypto";
import { Duplex } from "node:stream";
import tls from "node:tls";
import { tlsVerifyError } from "./node-internals.js";
import { verifyErrorNumberOf } from "./tls-verify.js";

/** What the verifying server needs: a certificate of its own and the stores. */
export interface ChainCheckOptions {
  /** The mail server's own certificates and keys (PEM), to make the handshake possible. */
  readonly cert: readonly string[];
  readonly key: readonly string[];
  /** Every trusted CA: ssl_client_certificate and ssl_trusted_certificate (PEM). */
  readonly ca: readonly string[];
  /** ssl_crl (PEM), as the handshake uses it. */
  readonly crl?: readonly string[];
}

/** The suites offered: RSA key exchange first (no signature needed), then ECDHE for EC certificates. */
const SUITES = [0x009c, 0x009d, 0xc02b, 0xc02c, 0xc02f, 0xc030];
const SIGALGS = [0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0809, 0x080a, 0x080b, 0x0401, 0x0501, 0x0601, 0x0807, 0x0808];
const GROUPS = [0x001d, 0x0017, 0x0018];

/** How many event-loop turns the in-process server gets to read the Certificate message. */
const MAX_TURNS = 50;

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function u24(n: number): Buffer {
  const b = Buffer.alloc(3);
  b.writeUIntBE(n, 0, 3);
  return b;
}

function list16(items: readonly number[]): Buffer {
  return Buffer.concat([u16(items.length * 2), ...items.map(u16)]);
}

function extension(type: number, body: Buffer): Buffer {
  return Buffer.concat([u16(type), u16(body.length), body]);
}

function handshake(type: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([type]), u24(body.length), body]);
}

/** Handshake bytes in TLS 1.2 records of at most 2^14 bytes. */
function records(data: Buffer): Buffer {
  const out: Buffer[] = [];
  for (let at = 0; at < data.length; at += 16384) {
    const part = data.subarray(at, at + 16384);
    out.push(Buffer.from([0x16, 0x03, 0x03]), u16(part.length), part);
  }
  return Buffer.concat(out);
}

function clientHello(): Buffer {
  const extensions = Buffer.concat([
    extension(0x000a, list16(GROUPS)),
    extension(0x000b, Buffer.from([1, 0])),
    extension(0x000d, list16(SIGALGS)),
    extension(0x0017, Buffer.alloc(0)),
    extension(0xff01, Buffer.from([0])),
  ]);
  return handshake(
    0x01,
    Buffer.concat([Buffer.from([0x03, 0x03]), randomBytes(32), Buffer.from([0]), list16(SUITES), Buffer.from([1, 0]), u16(extensions.length), extensions]),
  );
}

function certificateMessage(chain: readonly Buffer[]): Buffer {
  const list = Buffer.concat(chain.flatMap((der) => [u24(der.length), der]));
  return handshake(0x0b, Buffer.concat([u24(list.length), list]));
}

/** One end of an in-memory pipe: what OpenSSL writes is dropped, what we push is read. */
function sink(): Duplex {
  return new Duplex({
    read() {},
    write(_chunk, _enc, done) {
      done();
    },
  });
}

/** Verifies client chains with OpenSSL against `ca`, as a server handshake would. */
export class ChainCheck {
  readonly #context: tls.SecureContext;

  constructor(opts: ChainCheckOptions) {
    this.#context = tls.createSecureContext({
      cert: [...opts.cert],
      key: [...opts.key],
      ca: [...opts.ca],
      ...(opts.crl ? { crl: [...opts.crl] } : {}),
      minVersion: "TLSv1.2",
      maxVersion: "TLSv1.2",
      ciphers:
        "AES128-GCM-SHA256:AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384",
    });
  }

  /**
   * OpenSSL's verify error number for `chain` (DER, leaf first, as the
   * client sent it): 0 when it verifies. Fails closed: anything that keeps
   * OpenSSL from reaching a verdict is X509_V_ERR_UNSPECIFIED (1).
   */
  verify(chain: readonly Buffer[]): Promise<number> {
    const wire = sink();
    const server = new tls.TLSSocket(wire, { isServer: true, secureContext: this.#context, requestCert: true, rejectUnauthorized: false });
    server.on("error", () => undefined);
    wire.push(records(Buffer.concat([clientHello(), certificateMessage(chain)])));
    return new Promise((resolve) => {
      let turns = 0;
      const look = (): void => {
        // Read as soon as OpenSSL has the peer's certificate, even if it then failed the
        // handshake: the verify result stays on the handle until the socket is closed.
        const seen = Object.keys(server.getPeerCertificate() ?? {}).length > 0;
        const err = seen ? tlsVerifyError(server) : undefined;
        if (err !== undefined || ++turns > MAX_TURNS || (server.destroyed && !seen)) {
          server.destroy();
          wire.destroy();
          resolve(err === undefined ? 1 : err === null ? 0 : verifyErrorNumberOf(err));
          return;
        }
        setImmediate(look);
      };
      setImmediate(look);
    });
  }
}

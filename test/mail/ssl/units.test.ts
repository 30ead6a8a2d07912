/**
 * Pure pieces of the TLS layer: DN formatting against `openssl -nameopt
 * RFC2253`, protocol gaps, ticket key layouts, password files, session ids
 * and the LRU store.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { constants, X509Certificate } from "node:crypto";
import { join } from "node:path";
import tls from "node:tls";
import { MemorySessionStore, sessionsForBytes } from "../../../src/event/tls-session-store.js";
import { certificatePem, rfc2253 } from "../../../src/mail/ssl/accept.js";
import { protocolOptions } from "../../../src/mail/ssl/context.js";
import { parsePasswordFile } from "../../../src/mail/ssl/module.js";
import { isTls13Session, nodeTicketKey, sessionIdOf } from "../../../src/mail/ssl/sessions.js";
import { tempDir } from "./helpers.js";

let tmp: ReturnType<typeof tempDir>;
before(() => (tmp = tempDir()));
after(() => tmp.remove());

test("subject and issuer in RFC 2253 form, as openssl (and nginx) print them", () => {
  const key = join(tmp.dir, "k.pem");
  const crt = join(tmp.dir, "c.pem");
  execFileSync("openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key]);
  const subjects = ["/C=US/O=Example, Inc./CN=client one", '/O=Ünïcode Org/CN=a+UID=b/CN=x "q" <y>;z', "/CN= lead#trail /emailAddress=a@b.c"];
  for (const subj of subjects) {
    execFileSync("openssl", ["req", "-x509", "-new", "-key", key, "-out", crt, "-subj", subj, "-multivalue-rdn", "-utf8", "-days", "1"]);
    const expected = execFileSync("openssl", ["x509", "-in", crt, "-noout", "-subject", "-nameopt", "RFC2253"])
      .toString()
      .replace(/\n$/, "")
      .replace(/^subject=/, "");
    const x = new X509Certificate(execFileSync("cat", [crt]));
    assert.equal(rfc2253(x.subject), expected, subj);
    assert.equal(rfc2253(x.issuer), expected, subj);
    assert.equal(certificatePem(x.raw), execFileSync("openssl", ["x509", "-in", crt]).toString());
  }
});

test("protocol sets become min/max plus gap options", () => {
  assert.deepEqual(protocolOptions(new Set(["TLSv1.2", "TLSv1.3"])), { minVersion: "TLSv1.2", maxVersion: "TLSv1.3", secureOptions: 0 });
  assert.deepEqual(protocolOptions(new Set(["TLSv1", "TLSv1.3"])), {
    minVersion: "TLSv1",
    maxVersion: "TLSv1.3",
    secureOptions: constants.SSL_OP_NO_TLSv1_1 | constants.SSL_OP_NO_TLSv1_2,
  });
  const none = protocolOptions(new Set(["SSLv3"]));
  assert.equal(none.secureOptions, constants.SSL_OP_NO_TLSv1_3);
  assert.doesNotThrow(() => tls.createSecureContext(none));
});

test("nginx's 48-byte ticket key becomes Node's layout", () => {
  const file = Buffer.concat([Buffer.alloc(16, 1), Buffer.alloc(16, 2), Buffer.alloc(16, 3)]);
  assert.deepEqual(nodeTicketKey(file), Buffer.concat([Buffer.alloc(16, 1), Buffer.alloc(16, 3), Buffer.alloc(16, 2)]));
});

test("password files: LF and CRLF lines, empty lines skipped, empty file = one empty passphrase, 4096-byte limit", () => {
  assert.deepEqual(parsePasswordFile(Buffer.from("a\r\n\nb\nc"), "f").map(String), ["a", "b", "c"]);
  assert.deepEqual(parsePasswordFile(Buffer.alloc(0), "f").map(String), [""]);
  assert.throws(() => parsePasswordFile(Buffer.alloc(4097, 0x41), "/p"), { message: `too long line in "/p"` });
});

test("the session id is read from Node's serialized session", async () => {
  const key = join(tmp.dir, "s.key");
  const crt = join(tmp.dir, "s.crt");
  execFileSync("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    key,
    "-out",
    crt,
    "-subj",
    "/CN=s",
    "-days",
    "1",
  ]);
  const ids: Buffer[] = [];
  // The server side's getSession(), as forget() reads it: a client's
  // getSession() is not plain DER on Node 24 (Node prefixes it with a
  // "nodejs:tls:session" header and the server name).
  let session: Buffer | undefined;
  const srv = tls.createServer(
    { key: execFileSync("cat", [key]), cert: execFileSync("cat", [crt]), maxVersion: "TLSv1.2", secureOptions: constants.SSL_OP_NO_TICKET },
    (s) => {
      session = s.getSession();
      s.end();
    },
  );
  srv.on("newSession", (id: Buffer, _d: Buffer, done: () => void) => {
    ids.push(Buffer.from(id));
    done();
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const c = tls.connect({ port: (srv.address() as { port: number }).port, host: "127.0.0.1", rejectUnauthorized: false });
  await new Promise((r) => c.once("secureConnect", r));
  await new Promise((r) => setTimeout(r, 50));
  c.destroy();
  await new Promise((r) => srv.close(r));
  assert.equal(ids.length, 1);
  assert.ok(session, "the server saw the connection");
  assert.deepEqual(sessionIdOf(session), ids[0]);
  assert.equal(isTls13Session(session), false);
});

test("TLS 1.3 sessions are told apart: they resume by ticket only, so id-keyed caches skip them", async () => {
  const key = join(tmp.dir, "s13.key");
  const crt = join(tmp.dir, "s13.crt");
  execFileSync("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    key,
    "-out",
    crt,
    "-subj",
    "/CN=s",
    "-days",
    "1",
  ]);
  const seen: Buffer[] = [];
  const srv = tls.createServer({ key: execFileSync("cat", [key]), cert: execFileSync("cat", [crt]), secureOptions: constants.SSL_OP_NO_TICKET }, (s) =>
    s.end(),
  );
  srv.on("newSession", (_id: Buffer, d: Buffer, done: () => void) => {
    seen.push(Buffer.from(d));
    done();
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  for (const maxVersion of ["TLSv1.3", "TLSv1.2"] as const) {
    const c = tls.connect({ port: (srv.address() as { port: number }).port, host: "127.0.0.1", rejectUnauthorized: false, maxVersion });
    await new Promise((r) => c.once("secureConnect", r));
    await new Promise((r) => setTimeout(r, 50));
    c.destroy();
  }
  await new Promise((r) => srv.close(r));
  const verdicts = seen.map(isTls13Session);
  assert.ok(verdicts.includes(true) && verdicts.at(-1) === false, `TLS 1.3 sessions first, then the TLS 1.2 one: ${JSON.stringify(verdicts)}`);
  assert.equal(isTls13Session(Buffer.from("garbage")), false);
});

test("the LRU store drops the oldest session and expired ones", () => {
  let now = 0;
  const s = new MemorySessionStore(2, () => now);
  s.set(Buffer.from("a"), Buffer.from("1"), 10);
  s.set(Buffer.from("b"), Buffer.from("2"), 10);
  s.set(Buffer.from("c"), Buffer.from("3"), 10);
  assert.equal(s.lookup(Buffer.from("a")), undefined);
  assert.equal(String(s.lookup(Buffer.from("c"))), "3");
  now = 10_000;
  assert.equal(s.lookup(Buffer.from("c")), undefined);
  // expired sessions go without being looked up (the memory of an idle server)
  s.set(Buffer.from("d"), Buffer.from("4"), 10);
  now = 15_000;
  s.set(Buffer.from("e"), Buffer.from("5"), 10);
  assert.equal(s.size, 2);
  now = 30_000;
  s.sweep();
  assert.equal(s.size, 0);
  assert.equal(sessionsForBytes(10 * 1024 * 1024), 40000);
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { buildAuthRequest, escapeAuthValue, type AuthRequestInput } from "../../../src/mail/auth-http/request.js";
import type { Credentials, SessionInfo } from "../../../src/mail/types.js";

const IMAP: SessionInfo = {
  id: 1,
  protocol: "imap",
  clientAddr: "127.0.0.1",
  clientPort: 50000,
  localAddr: "127.0.0.1",
  localPort: 143,
  unixClient: false,
};

function input(over: Partial<AuthRequestInput> & { credentials?: Credentials; session?: SessionInfo }): AuthRequestInput {
  return {
    session: IMAP,
    credentials: { method: "plain", login: Buffer.from("test@example.com"), password: Buffer.from("secret") },
    attempt: 1,
    uri: "/auth",
    hostHeader: "127.0.0.1",
    headers: [],
    passClientCert: false,
    ...over,
  };
}

function text(over: Partial<AuthRequestInput>): string {
  return buildAuthRequest(input(over)).toString("latin1");
}

test("escapeAuthValue() escapes controls, space and % only, upper-case hex", () => {
  assert.equal(escapeAuthValue(Buffer.from("sec ret")).toString("latin1"), "sec%20ret");
  assert.equal(escapeAuthValue(Buffer.from("a%b\r\n\t\x00\x1f")).toString("latin1"), "a%25b%0D%0A%09%00%1F");
  const raw = Buffer.from([0x2b, 0x7f, 0x80, 0xc3, 0xa9, 0x21, 0x7e, 0x22]);
  assert.deepEqual(escapeAuthValue(raw), raw);
});

test("buildAuthRequest() writes the request nginx writes for a POP3 USER/PASS login", () => {
  const pop3: SessionInfo = { ...IMAP, protocol: "pop3" };
  assert.equal(
    text({ session: pop3 }),
    "GET /auth HTTP/1.0\r\nHost: 127.0.0.1\r\nAuth-Method: plain\r\nAuth-User: test@example.com\r\nAuth-Pass: secret\r\n" +
      "Auth-Protocol: pop3\r\nAuth-Login-Attempt: 1\r\nClient-IP: 127.0.0.1\r\n\r\n",
  );
});

test("buildAuthRequest() escapes Auth-User and Auth-Pass and keeps an empty login's space", () => {
  const t = text({ credentials: { method: "plain", login: Buffer.from("a b"), password: Buffer.from("p%ss word\x01") } });
  assert.match(t, /\r\nAuth-User: a%20b\r\nAuth-Pass: p%25ss%20word%01\r\n/);
  const e = text({ credentials: { method: "external", login: Buffer.alloc(0), password: Buffer.alloc(0) } });
  assert.match(e, /\r\nAuth-Method: external\r\nAuth-User: \r\nAuth-Pass: \r\nAuth-Protocol: imap\r\n/);
});

test("buildAuthRequest() sends Auth-Salt only for apop and cram-md5, after Auth-Pass", () => {
  const cram = text({ credentials: { method: "cram-md5", login: Buffer.from("u"), password: Buffer.from("0".repeat(32)), salt: "<1.2@mx>" } });
  assert.match(cram, /\r\nAuth-Pass: 0{32}\r\nAuth-Salt: <1\.2@mx>\r\nAuth-Protocol: imap\r\n/);
  const apop = text({ credentials: { method: "apop", login: Buffer.from("u"), password: Buffer.from("d"), salt: "<3.4@mx>" } });
  assert.match(apop, /\r\nAuth-Method: apop\r\n[\s\S]*\r\nAuth-Salt: <3\.4@mx>\r\n/);
  // latest nginx: no salt for EXTERNAL or plain even when the session has one
  for (const method of ["external", "plain"] as const) {
    assert.doesNotMatch(text({ credentials: { method, login: Buffer.from("u"), password: Buffer.alloc(0), salt: "<3.4@mx>" } }), /Auth-Salt/);
  }
});

test("buildAuthRequest() writes attempt, Client-IP, and Client-Host for SMTP only", () => {
  assert.match(text({ attempt: 7, session: { ...IMAP, clientAddr: "::1" } }), /\r\nAuth-Login-Attempt: 7\r\nClient-IP: ::1\r\n\r\n$/);
  const smtp: SessionInfo = { ...IMAP, protocol: "smtp", smtp: { helo: "c2", esmtp: true, clientHost: "[UNAVAILABLE]" } };
  assert.match(text({ session: smtp }), /\r\nClient-IP: 127\.0\.0\.1\r\nClient-Host: \[UNAVAILABLE\]\r\n\r\n$/);
  assert.doesNotMatch(text({}), /Client-Host/);
});

test("buildAuthRequest() writes the SMTP none example with TLS, unescaped", () => {
  const smtp: SessionInfo = {
    ...IMAP,
    protocol: "smtp",
    smtp: { helo: "c2", esmtp: true, clientHost: "[UNAVAILABLE]", from: "MAIL FROM:<a@example.com> SIZE=10", to: "RCPT TO:<b@example.com>" },
    tls: { protocol: "TLSv1.2", cipher: "ECDHE-RSA-AES256-GCM-SHA384" },
  };
  assert.equal(
    text({ session: smtp, credentials: { method: "none", login: Buffer.alloc(0), password: Buffer.alloc(0) } }),
    "GET /auth HTTP/1.0\r\nHost: 127.0.0.1\r\nAuth-Method: none\r\nAuth-User: \r\nAuth-Pass: \r\nAuth-Protocol: smtp\r\n" +
      "Auth-Login-Attempt: 1\r\nClient-IP: 127.0.0.1\r\nClient-Host: [UNAVAILABLE]\r\nAuth-SMTP-Helo: c2\r\n" +
      "Auth-SMTP-From: MAIL FROM:<a@example.com> SIZE=10\r\nAuth-SMTP-To: RCPT TO:<b@example.com>\r\n" +
      "Auth-SSL: on\r\nAuth-SSL-Protocol: TLSv1.2\r\nAuth-SSL-Cipher: ECDHE-RSA-AES256-GCM-SHA384\r\n\r\n",
  );
  // SMTP AUTH sends no Auth-SMTP-* lines
  assert.doesNotMatch(text({ session: smtp }), /Auth-SMTP/);
});

test("buildAuthRequest() passes 8-bit HELO, MAIL and RCPT bytes as they came (SMTPUTF8), never re-encoded", () => {
  // the SMTP front end holds them as byte strings: "jos\xC3\xA9" is the UTF-8 of "josé" as the client sent it
  const smtp: SessionInfo = {
    ...IMAP,
    protocol: "smtp",
    smtp: { helo: "h\xC3\xA9llo", esmtp: true, clientHost: "", from: "MAIL FROM:<jos\xC3\xA9@example.com> SMTPUTF8", to: "RCPT TO:<u@example.com>" },
  };
  const wire = buildAuthRequest(input({ session: smtp, credentials: { method: "none", login: Buffer.alloc(0), password: Buffer.alloc(0) } }));
  assert.ok(wire.includes(Buffer.from("Auth-SMTP-Helo: h\u00e9llo\r\n", "utf8")), wire.toString("latin1"));
  assert.ok(wire.includes(Buffer.from("Auth-SMTP-From: MAIL FROM:<jos\u00e9@example.com> SMTPUTF8\r\n", "utf8")), wire.toString("latin1"));
  assert.ok(!wire.includes(Buffer.from([0xc3, 0x83])), "no byte encoded twice");
});

test("buildAuthRequest() writes PROXY protocol addresses after Client-IP", () => {
  const s: SessionInfo = { ...IMAP, clientAddr: "192.0.2.10", proxyProtocol: { srcAddr: "192.0.2.10", srcPort: 51000, dstAddr: "198.51.100.5", dstPort: 143 } };
  assert.match(
    text({ session: s }),
    /\r\nClient-IP: 192\.0\.2\.10\r\nProxy-Protocol-Addr: 192\.0\.2\.10\r\nProxy-Protocol-Port: 51000\r\nProxy-Protocol-Server-Addr: 198\.51\.100\.5\r\nProxy-Protocol-Server-Port: 143\r\n\r\n$/,
  );
});

test("buildAuthRequest() writes certificate headers only with ssl_verify_client, the PEM only when passed", () => {
  const pem = "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n";
  const tls = {
    protocol: "TLSv1.3",
    cipher: "TLS_AES_256_GCM_SHA384",
    verify: "SUCCESS",
    subject: "C=US,O=Example\\, Inc.,CN=client one",
    issuer: "O=Test Org,CN=Test CA",
    serial: "C07AD56B846B5BFF",
    fingerprint: "cf2898f24232aee6e9ac032580c45895a03d2bac",
    certPem: pem,
  };
  const s: SessionInfo = { ...IMAP, tls };
  const headers = [{ name: "X-Secret", value: "s3 cr%et" }];
  assert.match(
    text({ session: s, passClientCert: true, headers }),
    /\r\nClient-IP: 127\.0\.0\.1\r\nAuth-SSL: on\r\nAuth-SSL-Protocol: TLSv1\.3\r\nAuth-SSL-Cipher: TLS_AES_256_GCM_SHA384\r\nAuth-SSL-Verify: SUCCESS\r\n/,
  );
  const full = text({ session: s, passClientCert: true, headers });
  assert.ok(
    full.endsWith(
      "Auth-SSL-Subject: C=US,O=Example\\, Inc.,CN=client one\r\nAuth-SSL-Issuer: O=Test Org,CN=Test CA\r\nAuth-SSL-Serial: C07AD56B846B5BFF\r\n" +
        "Auth-SSL-Fingerprint: cf2898f24232aee6e9ac032580c45895a03d2bac\r\n" +
        "Auth-SSL-Cert: -----BEGIN%20CERTIFICATE-----%0AMIIC%0A-----END%20CERTIFICATE-----%0A\r\nX-Secret: s3 cr%et\r\n\r\n",
    ),
    full,
  );
  assert.doesNotMatch(text({ session: s, passClientCert: false }), /Auth-SSL-Cert/);
  // ssl_verify_client off: no verify, no DN lines, no certificate
  const off = text({ session: { ...IMAP, tls: { ...tls, verify: undefined } }, passClientCert: true });
  assert.doesNotMatch(off, /Auth-SSL-(Verify|Subject|Issuer|Serial|Fingerprint|Cert)/);
  // a verified connection without certificate: Verify NONE only
  const none = text({ session: { ...IMAP, tls: { protocol: "TLSv1.3", cipher: "X", verify: "NONE" } }, passClientCert: true });
  assert.match(none, /Auth-SSL-Verify: NONE\r\n\r\n$/);
  assert.doesNotMatch(text({}), /Auth-SSL/);
});

test("buildAuthRequest() appends auth_http_header lines in order, unescaped", () => {
  const t = text({
    headers: [
      { name: "X-A", value: "1 %" },
      { name: "X-B", value: "2" },
    ],
    uri: "/a?b=c",
    hostHeader: "auth.example",
  });
  assert.ok(t.startsWith("GET /a?b=c HTTP/1.0\r\nHost: auth.example\r\n"));
  assert.ok(t.endsWith("Client-IP: 127.0.0.1\r\nX-A: 1 %\r\nX-B: 2\r\n\r\n"));
});

import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { buildProxyHeaderV1, buildProxyHeaderV2, crc32c, parseProxyHeader, PROXY_PROTOCOL_READ_SIZE } from "../../src/event/proxy-protocol.js";

const b = (s: string): Buffer => Buffer.from(s, "latin1");
const SIG = b("\r\n\r\n\0\r\nQUIT\n");

test("v1 TCP4 header is parsed, length covers the CRLF only", () => {
  const r = parseProxyHeader(b("PROXY TCP4 192.0.2.1 198.51.100.2 12345 993\r\na1 LOGIN"));
  assert.deepEqual(r, { kind: "proxy", length: 45, addresses: { srcAddr: "192.0.2.1", dstAddr: "198.51.100.2", srcPort: 12345, dstPort: 993 } });
});

test("v1 TCP6 keeps the address text as sent", () => {
  const r = parseProxyHeader(b("PROXY TCP6 2001:DB8::1 ::1 1 65535\r\n"));
  assert.equal(r.kind, "proxy");
  if (r.kind === "proxy") assert.deepEqual(r.addresses, { srcAddr: "2001:DB8::1", dstAddr: "::1", srcPort: 1, dstPort: 65535 });
});

test("v1 UNKNOWN is skipped up to CRLF", () => {
  assert.deepEqual(parseProxyHeader(b("PROXY UNKNOWN whatever here\r\nX")), { kind: "skip", length: 29 });
  assert.deepEqual(parseProxyHeader(b("PROXY UNKNOWN\r\n")), { kind: "skip", length: 15 });
});

test("v1 broken headers quote the text up to the first CR/LF", () => {
  const cases: Array<[string, string]> = [
    ["GET / HTTP/1.0\r\n", "GET / HTTP/1.0"],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 70000 1\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 70000 1"],
    ["PROXY TCP4 1.2.3.x 5.6.7.8 1 2\r\n", "PROXY TCP4 1.2.3.x 5.6.7.8 1 2"],
    ["PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "PROXY TCP5 1.2.3.4 5.6.7.8 1 2"],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2"],
    ["PROXY TCP4 1.2.3.4 5.6.7.8  2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8  2"],
    ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2"],
    ["PROXY UNKNOWN", "PROXY UNKNOWN"],
    ["PROX", "PROX"],
  ];
  for (const [input, quoted] of cases) {
    assert.deepEqual(parseProxyHeader(b(input)), { kind: "error", message: `broken header: "${quoted}"` }, input);
  }
});

function v2(verCmd: number, famTrans: number, body: Buffer): Buffer {
  const h = Buffer.alloc(16);
  SIG.copy(h);
  h[12] = verCmd;
  h[13] = famTrans;
  h.writeUInt16BE(body.length, 14);
  return Buffer.concat([h, body]);
}

test("v2 INET and INET6 PROXY headers, TLVs kept", () => {
  const body4 = Buffer.from([192, 0, 2, 1, 127, 0, 0, 1, 0x30, 0x39, 0x00, 0x8f, 0x03, 0x00, 0x04, 1, 2, 3, 4]);
  const r4 = parseProxyHeader(Buffer.concat([v2(0x21, 0x11, body4), b("rest")]));
  assert.deepEqual(r4, {
    kind: "proxy",
    length: 16 + 19,
    addresses: { srcAddr: "192.0.2.1", dstAddr: "127.0.0.1", srcPort: 12345, dstPort: 143 },
    tlvs: Buffer.from([0x03, 0x00, 0x04, 1, 2, 3, 4]),
  });
  const body6 = Buffer.alloc(36);
  body6[0] = 0x20;
  body6[1] = 0x01;
  body6[2] = 0x0d;
  body6[3] = 0xb8;
  body6[15] = 1;
  body6[16 + 10] = 0xff;
  body6[16 + 11] = 0xff;
  body6[16 + 12] = 10;
  body6[16 + 15] = 7;
  body6.writeUInt16BE(1, 32);
  body6.writeUInt16BE(2, 34);
  const r6 = parseProxyHeader(v2(0x21, 0x21, body6));
  assert.deepEqual(r6, {
    kind: "proxy",
    length: 52,
    addresses: { srcAddr: "2001:db8::1", dstAddr: "::ffff:10.0.0.7", srcPort: 1, dstPort: 2 },
    tlvs: undefined,
  });
});

test("v2 LOCAL, UDP and UNIX are skipped; bad version and short data are errors", () => {
  assert.deepEqual(parseProxyHeader(v2(0x20, 0x00, Buffer.alloc(0))), { kind: "skip", length: 16 });
  assert.deepEqual(parseProxyHeader(v2(0x21, 0x12, Buffer.alloc(12))), { kind: "skip", length: 28 });
  assert.deepEqual(parseProxyHeader(v2(0x21, 0x31, Buffer.alloc(216))), { kind: "skip", length: 232 });
  assert.deepEqual(parseProxyHeader(v2(0x11, 0x11, Buffer.alloc(12))), { kind: "error", message: "unknown PROXY protocol version: 1" });
  assert.deepEqual(parseProxyHeader(v2(0x21, 0x11, Buffer.alloc(12)).subarray(0, 20)), { kind: "error", message: "header is too large" });
  assert.deepEqual(parseProxyHeader(v2(0x21, 0x11, Buffer.alloc(8))), { kind: "error" });
});

test("outgoing v1 header", () => {
  assert.equal(
    buildProxyHeaderV1({ addr: "127.0.0.1", port: 54504 }, { addr: "127.0.0.1", port: 23243 }).toString(),
    "PROXY TCP4 127.0.0.1 127.0.0.1 54504 23243\r\n",
  );
  assert.equal(buildProxyHeaderV1({ addr: "::1", port: 5 }, { addr: "::1", port: 143 }).toString(), "PROXY TCP6 ::1 ::1 5 143\r\n");
  assert.equal(buildProxyHeaderV1({ addr: undefined, port: 0 }, { addr: "127.0.0.1", port: 143 }).toString(), "PROXY UNKNOWN\r\n");
});

test("crc32c check value", () => {
  assert.equal(crc32c(b("123456789")), 0xe3069283);
  assert.equal(crc32c(Buffer.alloc(32)), 0x8a9136aa);
});

function checkCrc(h: Buffer): void {
  const copy = Buffer.from(h);
  const crc = copy.readUInt32BE(copy.length - 4);
  copy.fill(0, copy.length - 4);
  assert.equal(crc32c(copy), crc);
}

test("outgoing v2 header without TLS: INET, CRC32C last", () => {
  const h = buildProxyHeaderV2({ addr: "192.0.2.1", port: 1000 }, { addr: "127.0.0.1", port: 143 });
  assert.deepEqual(h.subarray(0, 16), Buffer.concat([SIG, Buffer.from([0x21, 0x11, 0x00, 19])]));
  assert.deepEqual(h.subarray(16, 28), Buffer.from([192, 0, 2, 1, 127, 0, 0, 1, 0x03, 0xe8, 0x00, 0x8f]));
  assert.deepEqual(h.subarray(28, 31), Buffer.from([0x03, 0x00, 0x04]));
  assert.equal(h.length, 35);
  checkCrc(h);
  const parsed = parseProxyHeader(h);
  assert.equal(parsed.kind, "proxy");
});

test("outgoing v2 header: mixed families go INET6, both mapped go INET, UNIX is LOCAL", () => {
  const mixed = buildProxyHeaderV2({ addr: "::1", port: 1 }, { addr: "127.0.0.1", port: 2 });
  assert.equal(mixed[13], 0x21);
  assert.deepEqual(mixed.subarray(16 + 16, 16 + 32), Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]));
  const mapped = buildProxyHeaderV2({ addr: "::ffff:10.0.0.1", port: 1 }, { addr: "::ffff:10.0.0.2", port: 2 });
  assert.equal(mapped[13], 0x11);
  assert.deepEqual(mapped.subarray(16, 24), Buffer.from([10, 0, 0, 1, 10, 0, 0, 2]));
  const oneMapped = buildProxyHeaderV2({ addr: "::ffff:10.0.0.1", port: 1 }, { addr: "10.0.0.2", port: 2 });
  assert.equal(oneMapped[13], 0x21);
  const unix = buildProxyHeaderV2({ addr: undefined, port: 0 }, { addr: "127.0.0.1", port: 2 });
  assert.deepEqual(unix.subarray(12, 16), Buffer.from([0x20, 0x00, 0x00, 7]));
  checkCrc(unix);
});

test("outgoing v2 header with TLS TLVs", () => {
  const h = buildProxyHeaderV2(
    { addr: "127.0.0.1", port: 1 },
    { addr: "127.0.0.1", port: 993 },
    {
      serverName: "mail.example",
      alpn: "imap",
      version: "TLSv1.3",
      cipher: "TLS_AES_256_GCM_SHA384",
      certInSession: true,
      certOnConnection: true,
      verifyResult: 0,
      commonName: "alice",
      signatureAlgorithm: "RSA-SHA256",
      keyAlgorithm: "RSA2048",
    },
  );
  let p = 28;
  const tlvs: Array<[number, Buffer]> = [];
  while (p < h.length) {
    const len = h.readUInt16BE(p + 1);
    tlvs.push([h[p]!, h.subarray(p + 3, p + 3 + len)]);
    p += 3 + len;
  }
  assert.deepEqual(
    tlvs.map((t) => t[0]),
    [0x02, 0x01, 0x20, 0x03],
  );
  assert.equal(tlvs[0]![1].toString(), "mail.example");
  assert.equal(tlvs[1]![1].toString(), "imap");
  const ssl = tlvs[2]![1];
  assert.equal(ssl[0], 0x07);
  assert.equal(ssl.readUInt32BE(1), 0);
  const subs: string[] = [];
  for (let q = 5; q < ssl.length;) {
    const len = ssl.readUInt16BE(q + 1);
    subs.push(`${ssl[q]!.toString(16)}=${ssl.toString("latin1", q + 3, q + 3 + len)}`);
    q += 3 + len;
  }
  assert.deepEqual(subs, ["21=TLSv1.3", "22=alice", "23=TLS_AES_256_GCM_SHA384", "24=RSA-SHA256", "25=RSA2048"]);
  assert.equal(h.readUInt16BE(14), h.length - 16);
  checkCrc(h);
  const noCert = buildProxyHeaderV2(
    { addr: "127.0.0.1", port: 1 },
    { addr: "127.0.0.1", port: 993 },
    {
      version: "TLSv1.2",
      cipher: "X",
      certInSession: false,
      certOnConnection: false,
      verifyResult: 0,
    },
  );
  const sslAt = 28;
  assert.equal(noCert[sslAt], 0x20);
  assert.equal(noCert[sslAt + 3], 0x01);
  assert.equal(noCert.readUInt32BE(sslAt + 4), 1);
});

test("property: arbitrary bytes never throw and lengths stay in range", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: PROXY_PROTOCOL_READ_SIZE }), (bytes) => {
      const r = parseProxyHeader(Buffer.from(bytes));
      if (r.kind !== "error") assert.ok(r.length > 0 && r.length <= bytes.length);
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (tail) => {
      const r = parseProxyHeader(Buffer.concat([SIG, Buffer.from(tail)]));
      if (r.kind !== "error") assert.ok(r.length <= 12 + tail.length);
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 80 }), (text) => {
      parseProxyHeader(b(`PROXY ${text}`));
    }),
    { numRuns: 2000 },
  );
});

test("property: built v1/v2 headers parse back to the same addresses", () => {
  const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((a) => a.join("."));
  fc.assert(
    fc.property(v4, v4, fc.nat(65535), fc.nat(65535), (src, dst, sp, dp) => {
      for (const h of [
        buildProxyHeaderV1({ addr: src, port: sp }, { addr: dst, port: dp }),
        buildProxyHeaderV2({ addr: src, port: sp }, { addr: dst, port: dp }),
      ]) {
        const r = parseProxyHeader(h);
        assert.equal(r.kind, "proxy");
        if (r.kind === "proxy") {
          assert.deepEqual(r.addresses, { srcAddr: src, srcPort: sp, dstAddr: dst, dstPort: dp });
          assert.equal(r.length, h.length);
        }
      }
    }),
    { numRuns: 500 },
  );
});

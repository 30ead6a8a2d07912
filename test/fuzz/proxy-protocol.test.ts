/**
 * Fuzzing the PROXY protocol parser (v1 text, v2 binary): mutated real
 * headers and noise never throw, a header length never exceeds the read,
 * and every header Postern builds parses back to the same addresses.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { buildProxyHeaderV1, buildProxyHeaderV2, parseProxyHeader, PROXY_PROTOCOL_READ_SIZE } from "../../src/event/proxy-protocol.js";
import { budget, mutatedStream } from "./fuzz-support.js";

const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join("."));
const v6 = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }).map((p) => p.map((n) => n.toString(16)).join(":"));
const port = fc.nat(65535);

const CORPUS = [
  "PROXY TCP4 192.0.2.1 192.0.2.2 5000 143\r\nA1 CAPABILITY\r\n",
  "PROXY TCP6 2001:db8::1 2001:db8::2 5000 143\r\n",
  "PROXY UNKNOWN\r\n",
  "PROXY UNKNOWN ffff:f...f ffff:f...f 65535 65535\r\n",
  buildProxyHeaderV2({ addr: "192.0.2.1", port: 5000 }, { addr: "192.0.2.2", port: 993 }).toString("latin1"),
  buildProxyHeaderV2({ addr: "2001:db8::1", port: 1 }, { addr: "2001:db8::2", port: 2 }).toString("latin1") + "+OK",
];

test("PROXY header: mutated headers and noise never throw; lengths stay inside the read", () => {
  fc.assert(
    fc.property(mutatedStream(CORPUS), (input) => {
      const buf = input.subarray(0, PROXY_PROTOCOL_READ_SIZE);
      const r = parseProxyHeader(buf);
      if (r.kind === "proxy" || r.kind === "skip") {
        assert.ok(r.length >= 8 && r.length <= buf.length, `length ${r.length} of ${buf.length}`);
      }
      if (r.kind === "proxy") {
        assert.ok(r.addresses.srcPort >= 0 && r.addresses.srcPort <= 65535);
        assert.ok(r.addresses.dstPort >= 0 && r.addresses.dstPort <= 65535);
      }
      if (r.kind === "error" && r.message !== undefined) {
        // the broken header is quoted up to the first line end only
        assert.ok(!/[\r\n]/.test(r.message), JSON.stringify(r.message));
      }
    }),
    budget(2),
  );
});

test("PROXY header: built v1 and v2 headers parse back, with whatever follows left alone", () => {
  fc.assert(
    fc.property(fc.oneof(fc.tuple(v4, v4), fc.tuple(v6, v6)), port, port, fc.uint8Array({ maxLength: 64 }), ([src, dst], sp, dp, tail) => {
      for (const build of [buildProxyHeaderV1, buildProxyHeaderV2]) {
        const header = build({ addr: src, port: sp }, { addr: dst, port: dp });
        const r = parseProxyHeader(Buffer.concat([header, Buffer.from(tail)]));
        assert.equal(r.kind, "proxy");
        if (r.kind !== "proxy") return;
        assert.equal(r.length, header.length);
        assert.equal(r.addresses.srcPort, sp);
        assert.equal(r.addresses.dstPort, dp);
        if (build === buildProxyHeaderV1) {
          assert.equal(r.addresses.srcAddr, src);
          assert.equal(r.addresses.dstAddr, dst);
        }
      }
    }),
    budget(1),
  );
});

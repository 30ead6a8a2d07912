import { test } from "node:test";
import assert from "node:assert/strict";
import type { SetContext } from "../../../src/conf/directive.js";
import { ServerConf, Level } from "../../../src/conf/directive.js";
import { ConfError } from "../../../src/core/errors.js";
import { parseCidr, realClientAddress, setRealIpFrom, trustsPeer, type TrustedSource } from "../../../src/mail/realip/module.js";

function entries(values: string[]): { list: readonly TrustedSource[]; warnings: string[] } {
  const warnings: string[] = [];
  const cx = { name: "set_real_ip_from", location: { file: "t.conf", line: 1 }, warn: (m: string) => warnings.push(m) } as unknown as SetContext;
  let list: readonly TrustedSource[] | undefined;
  for (const v of values) list = setRealIpFrom.parse([v], list, cx);
  return { list: list ?? [], warnings };
}

function conf(values: string[]): ServerConf {
  const loc = { file: "t.conf", line: 1 };
  const own = new Level("server", loc);
  own.set(setRealIpFrom, entries(values).list, loc);
  return new ServerConf(own, new Level("mail", loc));
}

test("CIDR parsing: prefixes, masks, low bits", () => {
  assert.equal(parseCidr("1.2.3.4/40"), null);
  assert.equal(parseCidr("1.2.3.4/"), null);
  assert.equal(parseCidr("::1/129"), null);
  assert.equal(parseCidr("1.2.3.4/24")!.lowBits, true);
  assert.equal(parseCidr("1.2.3.0/24")!.lowBits, false);
  assert.equal(parseCidr("1.2.3.4")!.lowBits, false);
  assert.equal(parseCidr("0.0.0.0/0")!.lowBits, false);
  assert.equal(parseCidr("2001:db8::1/32")!.lowBits, true);
});

test("warning for host bits, host-not-found error for bad values", () => {
  assert.deepEqual(entries(["1.2.3.4/24"]).warnings, ["low address bits of 1.2.3.4/24 are meaningless"]);
  for (const bad of ["1.2.3.4/40", "no-such-host.invalid"]) {
    assert.throws(
      () => entries([bad]),
      (e: unknown) => e instanceof ConfError && e.message === `host not found in set_real_ip_from "${bad}"`,
    );
  }
});

test("matching: IPv4 CIDR, IPv6 CIDR, v4-mapped peers, unix:, hostnames", () => {
  const c = conf(["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]);
  assert.equal(trustsPeer(c, "10.200.3.4", false), true);
  assert.equal(trustsPeer(c, "11.0.0.1", false), false);
  assert.equal(trustsPeer(c, "::ffff:10.1.1.1", false), true);
  assert.equal(trustsPeer(c, "2001:db8:ffff::1", false), true);
  assert.equal(trustsPeer(c, "2001:db9::1", false), false);
  assert.equal(trustsPeer(c, "192.0.2.7", false), true);
  assert.equal(trustsPeer(c, "192.0.2.8", false), false);
  assert.equal(trustsPeer(c, "unix:", true), false);
  assert.equal(trustsPeer(conf(["unix:"]), "unix:", true), true);
  assert.equal(trustsPeer(conf(["unix:"]), "127.0.0.1", false), false);
  assert.equal(trustsPeer(conf(["0.0.0.0/0"]), "::1", false), false);
  assert.equal(trustsPeer(conf(["::/0"]), "::1", false), true);
  const local = conf(["localhost"]);
  assert.equal(trustsPeer(local, "127.0.0.1", false), true);
  assert.equal(trustsPeer(local, "127.0.0.2", false), false);
  assert.equal(trustsPeer(conf([]), "127.0.0.1", false), false);
});

test("realClientAddress: trusted peers get the normalised PROXY source, others keep theirs", () => {
  const c = conf(["127.0.0.0/8"]);
  const header = { srcAddr: "2001:DB8:0:0::1", srcPort: 4242, dstAddr: "::1", dstPort: 143 };
  assert.deepEqual(realClientAddress(c, "127.0.0.1", false, header), { addr: "2001:db8::1", port: 4242 });
  assert.deepEqual(realClientAddress(c, "::ffff:127.0.0.1", false, { ...header, srcAddr: "192.0.2.9" }), { addr: "192.0.2.9", port: 4242 });
  assert.equal(realClientAddress(c, "10.0.0.1", false, header), undefined);
  assert.equal(realClientAddress(c, "127.0.0.1", false, undefined), undefined);
  // v1 addresses are only checked for their characters; an unparsable one is ignored.
  assert.equal(realClientAddress(c, "127.0.0.1", false, { ...header, srcAddr: "1.2.3" }), undefined);
});

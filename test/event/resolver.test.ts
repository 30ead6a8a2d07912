import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Resolver, canonicalAddress, resolverStrerror, reverseName } from "../../src/event/resolver.js";
import type { ResolverSpec } from "../../src/event/resolver.js";
import { DEFAULT_CACHE_ENTRIES, ExpiringLruCache, SWEEP_MS } from "../../src/event/resolver-cache.js";
import { FakeDns } from "./fake-dns.js";

let dns: FakeDns;
let dns2: FakeDns;
const resolvers: Resolver[] = [];

before(async () => {
  dns = await new FakeDns().start();
  dns2 = await new FakeDns().start();
});
after(async () => {
  for (const r of resolvers) r.close();
  await dns.close();
  await dns2.close();
});

function resolver(extra: Partial<ResolverSpec> = {}, servers = [dns]): Resolver {
  const r = new Resolver({ servers: servers.map((s) => ({ host: "127.0.0.1", port: s.port })), ipv4: true, ipv6: true, ...extra });
  resolvers.push(r);
  return r;
}

test("reverse names for IPv4 and IPv6", () => {
  assert.equal(reverseName("192.0.2.10"), "10.2.0.192.in-addr.arpa");
  assert.equal(reverseName("2001:db8::1"), "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
  assert.equal(canonicalAddress("::ffff:127.0.0.1"), "127.0.0.1");
  assert.equal(canonicalAddress("2001:DB8:0::1"), canonicalAddress("2001:db8::0:1"));
  assert.equal(resolverStrerror(3), "Host not found");
  assert.equal(resolverStrerror(110), "Operation timed out");
});

test("PTR answer, lowercased; then A and AAAA of the name", async () => {
  dns.answers.set("PTR 5.0.0.127.in-addr.arpa", { records: [{ type: "PTR", data: "Client.Example" }] });
  dns.answers.set("A client.example", {
    records: [
      { type: "A", data: "127.0.0.5" },
      { type: "A", data: "127.0.0.6" },
    ],
  });
  dns.answers.set("AAAA client.example", { records: [{ type: "AAAA", data: "2001:db8::5" }] });
  const r = resolver();
  assert.deepEqual(await r.reverse("127.0.0.5", 2000), { ok: true, name: "client.example" });
  assert.deepEqual(await r.lookup("client.example", 2000), { ok: true, addresses: ["127.0.0.5", "127.0.0.6", "2001:db8:0:0:0:0:0:5"] });
  const ipv4only = resolver({ ipv6: false });
  const before = dns.queries.length;
  assert.deepEqual(await ipv4only.lookup("client.example", 2000), { ok: true, addresses: ["127.0.0.5", "127.0.0.6"] });
  assert.deepEqual(dns.queries.slice(before), ["A client.example"], "ipv6=off: no AAAA query");
});

test("NXDOMAIN, SERVFAIL, an empty answer, and a timeout", async () => {
  dns.answers.set("PTR 6.0.0.127.in-addr.arpa", { rcode: 3 });
  dns.answers.set("PTR 7.0.0.127.in-addr.arpa", { rcode: 2 });
  dns.answers.set("PTR 8.0.0.127.in-addr.arpa", { records: [] });
  dns.answers.set("PTR 9.0.0.127.in-addr.arpa", "drop");
  const r = resolver();
  assert.deepEqual(await r.reverse("127.0.0.6", 2000), { ok: false, code: 3 });
  assert.deepEqual(await r.reverse("127.0.0.7", 2000), { ok: false, code: 2 });
  assert.deepEqual(await r.reverse("127.0.0.8", 2000), { ok: false, code: 3 }, "nginx: NOERROR without answers is NXDOMAIN");
  const t0 = Date.now();
  assert.deepEqual(await r.reverse("127.0.0.9", 300), { ok: false, code: 110 });
  const took = Date.now() - t0;
  assert.ok(took >= 290 && took < 1500, `resolver_timeout honoured (${took} ms)`);
});

test("name lookups: an error in either query fails; no address at all is NXDOMAIN; CNAME followed", async () => {
  dns.answers.set("A half.example", { records: [{ type: "A", data: "127.0.0.1" }] });
  dns.answers.set("AAAA half.example", { rcode: 2 });
  dns.answers.set("A empty.example", { records: [] });
  dns.answers.set("AAAA empty.example", { records: [] });
  dns.answers.set("A alias.example", { records: [{ type: "CNAME", data: "target.example" }] });
  dns.answers.set("AAAA alias.example", { records: [{ type: "CNAME", data: "target.example" }] });
  dns.answers.set("A target.example", { records: [{ type: "A", data: "127.0.0.9" }] });
  dns.answers.set("AAAA target.example", { records: [] });
  dns.answers.set("A half-alias.example", { records: [{ type: "CNAME", data: "target.example" }] });
  dns.answers.set("AAAA half-alias.example", { records: [] });
  const r = resolver();
  assert.deepEqual(await r.lookup("half.example", 2000), { ok: false, code: 2 });
  assert.deepEqual(await r.lookup("empty.example", 2000), { ok: false, code: 3 });
  assert.deepEqual(await r.lookup("alias.example", 2000), { ok: true, addresses: ["127.0.0.9"] });
  // nginx 1.22.1: a CNAME for A, then no record at all for AAAA, is NXDOMAIN (the CNAME is not followed)
  assert.deepEqual(await r.lookup("half-alias.example", 2000), { ok: false, code: 3 });
});

test("PTR names with odd bytes come back as they are (the SMTP front end rejects them)", async () => {
  dns.answers.set("PTR 10.0.0.127.in-addr.arpa", { records: [{ type: "PTR", data: "bad_name.example" }] });
  dns.answers.set("PTR 11.0.0.127.in-addr.arpa", { records: [{ type: "PTR", data: "evil\r\nAuth-Pass: x.example" }] });
  const r = resolver();
  assert.deepEqual(await r.reverse("127.0.0.10", 2000), { ok: true, name: "bad_name.example" });
  assert.deepEqual(await r.reverse("127.0.0.11", 2000), { ok: true, name: "evil\r\nauth-pass: x.example" });
});

test("answers are cached by TTL; valid= overrides it; errors are not cached", async () => {
  dns.answers.set("PTR 12.0.0.127.in-addr.arpa", { records: [{ type: "PTR", data: "cached.example", ttl: 60 }] });
  dns.answers.set("PTR 13.0.0.127.in-addr.arpa", { records: [{ type: "PTR", data: "fresh.example", ttl: 0 }] });
  dns.answers.set("PTR 14.0.0.127.in-addr.arpa", { rcode: 2 });
  const count = (key: string) => dns.queries.filter((q) => q === key).length;
  const r = resolver();
  for (let i = 0; i < 3; i++) {
    await r.reverse("127.0.0.12", 2000);
    await r.reverse("127.0.0.13", 2000);
    await r.reverse("127.0.0.14", 2000);
  }
  assert.equal(count("PTR 12.0.0.127.in-addr.arpa"), 1);
  assert.equal(count("PTR 13.0.0.127.in-addr.arpa"), 3);
  assert.equal(count("PTR 14.0.0.127.in-addr.arpa"), 3);
  const valid = resolver({ valid: 60 });
  await valid.reverse("127.0.0.13", 2000);
  await valid.reverse("127.0.0.13", 2000);
  assert.equal(count("PTR 13.0.0.127.in-addr.arpa"), 4, "valid=60s caches a TTL 0 answer");
});

test("queries go to the servers round robin", async () => {
  for (const s of [dns, dns2]) {
    s.answers.set("PTR 15.0.0.127.in-addr.arpa", { records: [{ type: "PTR", data: "rr.example", ttl: 0 }] });
  }
  const r = resolver({}, [dns, dns2]);
  const [a, b] = [dns.queries.length, dns2.queries.length];
  for (let i = 0; i < 4; i++) await r.reverse("127.0.0.15", 2000);
  assert.equal(dns.queries.length - a, 2);
  assert.equal(dns2.queries.length - b, 2);
});

test("a late answer after the timeout is neither used nor cached", async () => {
  dns.answers.set("PTR 16.0.0.127.in-addr.arpa", { records: [{ type: "PTR", data: "late.example" }], delayMs: 400 });
  const r = resolver();
  assert.deepEqual(await r.reverse("127.0.0.16", 150), { ok: false, code: 110 });
  await new Promise((res) => setTimeout(res, 350));
  // the resolver did not cache the late answer
  dns.answers.set("PTR 16.0.0.127.in-addr.arpa", { rcode: 3 });
  assert.deepEqual(await r.reverse("127.0.0.16", 1000), { ok: false, code: 3 });
});

test("an answer from anywhere but a configured server is ignored", async () => {
  dns.answers.set("PTR 17.0.0.127.in-addr.arpa", { records: [{ type: "PTR", data: "spoofed.example" }], fromOtherPort: true });
  const r = resolver();
  assert.deepEqual(await r.reverse("127.0.0.17", 300), { ok: false, code: 110 });
});

/** `net`::N, each with its own PTR name, as a client with its own reverse zone would have. */
function manyAddresses(net: string, from: number, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${net}::${(from + i).toString(16)}`);
}

async function reverseAll(r: Resolver, addresses: readonly string[]): Promise<void> {
  // in batches, so thousands of lookups take well under a second over loopback
  for (let i = 0; i < addresses.length; i += 256) {
    const results = await Promise.all(addresses.slice(i, i + 256).map((a) => r.reverse(a, 5000)));
    for (const x of results) assert.equal(x.ok, true, JSON.stringify(x));
  }
}

/** How many times the fake DNS server was asked for an address's PTR name. */
function asked(a: string): number {
  return dns.queries.filter((q) => q === `PTR ${reverseName(a)}`).length;
}

test("the cache is bounded: of thousands of distinct PTR answers, only the latest DEFAULT_CACHE_ENTRIES are answered without asking again", async () => {
  dns.fallback = (key) =>
    key.startsWith("PTR ") && key.endsWith(".ip6.arpa") ? { records: [{ type: "PTR", data: `h${key.length}.zone.example`, ttl: 3600 }] } : undefined;
  try {
    const r = resolver();
    // two batches more than the bound (reverseAll's batches of 256 finish in order)
    const all = manyAddresses("2001:db8:c0", 1, DEFAULT_CACHE_ENTRIES + 512);
    await reverseAll(r, all);
    const kept = all.slice(512);
    await reverseAll(r, kept);
    const counts = new Map<string, number>();
    for (const q of dns.queries) counts.set(q, (counts.get(q) ?? 0) + 1);
    assert.deepEqual(
      kept.filter((a) => counts.get(`PTR ${reverseName(a)}`) !== 1),
      [],
      "the latest DEFAULT_CACHE_ENTRIES answers come from the cache",
    );
    await r.reverse(all[511]!, 5000);
    assert.equal(asked(all[511]!), 2, "not one entry more was kept: asked again");
  } finally {
    dns.fallback = undefined;
  }
});

test("when full, the least recently used answer goes; a recently used one stays cached", async () => {
  dns.fallback = (key) => (key.startsWith("PTR ") ? { records: [{ type: "PTR", data: "lru.zone.example", ttl: 3600 }] } : undefined);
  try {
    const r = resolver();
    const net = "2001:db8:c1";
    const [first, second, ...rest] = manyAddresses(net, 0x1000, DEFAULT_CACHE_ENTRIES);
    await r.reverse(first!, 5000);
    await r.reverse(second!, 5000);
    await reverseAll(r, rest);
    await r.reverse(first!, 5000); // a hit: first is now the most recently used
    await reverseAll(r, manyAddresses(net, 0x1000 + DEFAULT_CACHE_ENTRIES, 1)); // full: evicts second, the least recently used
    await r.reverse(first!, 5000);
    await r.reverse(second!, 5000);
    assert.equal(asked(first!), 1, "kept: answered from the cache");
    assert.equal(asked(second!), 2, "evicted: asked again");
  } finally {
    dns.fallback = undefined;
  }
});

test("expired answers are evicted: by the periodic sweep, and first when the cache is full", (t) => {
  // The sweep only frees memory (an expired answer is never served either
  // way), so it is seen on the cache itself, with a small bound.
  t.mock.timers.enable({ apis: ["setInterval", "Date"], now: 1_000_000 });
  const cache = new ExpiringLruCache<string>(8);
  const short = ["s1", "s2", "s3", "s4"];
  const long = ["l1", "l2", "l3", "l4"];
  for (let i = 0; i < 4; i++) {
    cache.set(short[i]!, "short", 1000);
    cache.set(long[i]!, "long", 3_600_000);
  }
  assert.equal(cache.size, 8);
  t.mock.timers.tick(2000); // the short ones expire, nobody asks for them again
  assert.equal(cache.size, 8, "not swept yet");
  t.mock.timers.tick(SWEEP_MS);
  assert.equal(cache.size, 4, "the sweep freed the four expired answers without any lookup");

  for (const k of ["s5", "s6"]) cache.set(k, "short", 1000);
  for (const k of ["l5", "l6"]) cache.set(k, "long", 3_600_000);
  assert.equal(cache.size, 8);
  t.mock.timers.tick(2000);
  cache.set("l7", "long", 3_600_000); // full: the two expired go, no live answer is dropped
  assert.equal(cache.size, 7);
  for (const k of [...long, "l5", "l6", "l7"]) assert.equal(cache.get(k), "long", `${k}: still cached`);
});

/**
 * The SMTP client name through the front end's start(),
 * against a fake DNS server on 127.0.0.1.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { SmtpFrontEnd } from "../../../src/mail/smtp/handler.js";
import { isValidHostName } from "../../../src/mail/smtp/client-name.js";
import { smtpGreetingDelayDirective } from "../../../src/mail/smtp/module.js";
import { resolverDirective, resolverTimeoutDirective } from "../../../src/mail/core-module.js";
import { FakeDns, type FakeAnswer } from "../../event/fake-dns.js";
import { FakeSession, type Setting, set, smtpServer } from "../fake-session.js";

const GREETING = "220 mx.example.test ESMTP ready\r\n";
let dns: FakeDns;

before(async () => {
  dns = await new FakeDns().start();
});
after(() => dns.close());

/** A fresh resolver (own cache) pointed at the fake server. */
function withResolver(timeoutMs = 1000, extra: readonly Setting[] = []): Setting[] {
  return [
    set(resolverDirective, { servers: [{ host: "127.0.0.1", port: dns.port }], ipv4: true, ipv6: true }),
    set(resolverTimeoutDirective, timeoutMs),
    ...extra,
  ];
}

function session(settings: readonly Setting[], clientAddr: string): { s: FakeSession; fe: SmtpFrontEnd } {
  const s = new FakeSession(smtpServer(settings));
  s.clientAddr = clientAddr;
  const fe = new SmtpFrontEnd(s);
  s.frontEnd = fe;
  return { s, fe };
}

/** Starts a session for `addr` with the given PTR/A/AAAA answers; returns the name and errors logged. */
async function resolve(addr: string, answers: Record<string, FakeAnswer>, timeoutMs = 1000): Promise<{ host: string; errors: string[]; queries: string[] }> {
  for (const [k, v] of Object.entries(answers)) dns.answers.set(k, v);
  const from = dns.queries.length;
  const { s, fe } = session(withResolver(timeoutMs), addr);
  await fe.start();
  assert.equal(s.output(), GREETING);
  assert.equal(s.deadlineArmed, 1);
  return {
    host: fe.authFacts().clientHost,
    errors: s.sink.lines.filter((l) => l.level === "error").map((l) => l.text),
    queries: dns.queries.slice(from),
  };
}

test("host name characters accepted by latest nginx", () => {
  assert.equal(isValidHostName("Client-1.Example.test"), true);
  for (const bad of ["", "bad_name.example", "a b", "evil\r\nx", "x\0", "caf\xe9.example", "a/b"])
    assert.equal(isValidHostName(bad), false, JSON.stringify(bad));
});

test("no resolver: [UNAVAILABLE] without any query; UNIX-socket client: [TEMPUNAVAIL]", async () => {
  const from = dns.queries.length;
  const plain = session([], "127.0.0.1");
  await plain.fe.start();
  assert.equal(plain.fe.authFacts().clientHost, "[UNAVAILABLE]");
  const unix = session(withResolver(), "unix:");
  unix.s.unixClient = true;
  await unix.fe.start();
  assert.equal(unix.fe.authFacts().clientHost, "[TEMPUNAVAIL]");
  assert.equal(unix.s.output(), GREETING);
  assert.equal(dns.queries.length, from);
});

test("PTR and a matching A record: the name; queries PTR, then A and AAAA", async () => {
  const r = await resolve("127.0.0.21", {
    "PTR 21.0.0.127.in-addr.arpa": { records: [{ type: "PTR", data: "Client.Example" }] },
    "A client.example": { records: [{ type: "A", data: "127.0.0.21" }] },
    "AAAA client.example": { records: [] },
  });
  assert.equal(r.host, "client.example");
  assert.deepEqual(r.queries.slice(0, 1), ["PTR 21.0.0.127.in-addr.arpa"]);
  assert.deepEqual(r.queries.slice(1).sort(), ["A client.example", "AAAA client.example"]);
  assert.deepEqual(r.errors, []);
});

test("an IPv4-mapped client address matches its A record", async () => {
  const r = await resolve("::ffff:127.0.0.22", {
    "PTR 22.0.0.127.in-addr.arpa": { records: [{ type: "PTR", data: "mapped.example" }] },
    "A mapped.example": { records: [{ type: "A", data: "127.0.0.22" }] },
    "AAAA mapped.example": { records: [] },
  });
  assert.equal(r.host, "mapped.example");
});

test("A pointing elsewhere: [UNAVAILABLE]", async () => {
  const r = await resolve("127.0.0.23", {
    "PTR 23.0.0.127.in-addr.arpa": { records: [{ type: "PTR", data: "other.example" }] },
    "A other.example": { records: [{ type: "A", data: "192.0.2.1" }] },
    "AAAA other.example": { records: [{ type: "AAAA", data: "2001:db8::1" }] },
  });
  assert.equal(r.host, "[UNAVAILABLE]");
  assert.deepEqual(r.errors, []);
});

test("PTR NXDOMAIN: [UNAVAILABLE]; SERVFAIL: [TEMPUNAVAIL]; each logged", async () => {
  const nx = await resolve("127.0.0.24", { "PTR 24.0.0.127.in-addr.arpa": { rcode: 3 } });
  assert.equal(nx.host, "[UNAVAILABLE]");
  assert.deepEqual(nx.errors, [
    "*1 127.0.0.24 could not be resolved (3: Host not found) while in resolving client address, client: 127.0.0.1, server: 127.0.0.1:25",
  ]);
  const fail = await resolve("127.0.0.25", { "PTR 25.0.0.127.in-addr.arpa": { rcode: 2 } });
  assert.equal(fail.host, "[TEMPUNAVAIL]");
  assert.deepEqual(fail.errors, [
    "*1 127.0.0.25 could not be resolved (2: Server failure) while in resolving client address, client: 127.0.0.1, server: 127.0.0.1:25",
  ]);
});

test("resolver_timeout: [TEMPUNAVAIL] after the timeout", async () => {
  const started = Date.now();
  const r = await resolve("127.0.0.26", { "PTR 26.0.0.127.in-addr.arpa": "drop" }, 250);
  const took = Date.now() - started;
  assert.equal(r.host, "[TEMPUNAVAIL]");
  assert.ok(took >= 240 && took < 1500, `${took} ms`);
  assert.match(r.errors[0]!, /127\.0\.0\.26 could not be resolved \(110: Operation timed out\)/);
});

test("PTR names with bytes outside A-Za-z0-9.- are [TEMPUNAVAIL], never passed on", async () => {
  const cases: Array<[string, string]> = [
    ["bad_name.example", '"bad_name.example"'],
    ["evil\r\nAuth-Pass: x.example", '"evil\\x0D\\x0Aauth-pass: x.example"'],
    ["with space.example", '"with space.example"'],
    ["", '""'],
  ];
  let n = 30;
  for (const [name, shown] of cases) {
    n++;
    const r = await resolve(`127.0.0.${n}`, { [`PTR ${n}.0.0.127.in-addr.arpa`]: { records: [{ type: "PTR", data: name }] } });
    assert.equal(r.host, "[TEMPUNAVAIL]", JSON.stringify(name));
    assert.deepEqual(r.errors, [
      `*1 127.0.0.${n} resolved to invalid host name ${shown} while in resolving client address, client: 127.0.0.1, server: 127.0.0.1:25`,
    ]);
    assert.deepEqual(r.queries, [`PTR ${n}.0.0.127.in-addr.arpa`], "no forward lookup of a bad name");
  }
});

test("forward lookup failures: NXDOMAIN [UNAVAILABLE], SERVFAIL [TEMPUNAVAIL]", async () => {
  const nx = await resolve("127.0.0.41", {
    "PTR 41.0.0.127.in-addr.arpa": { records: [{ type: "PTR", data: "gone.example" }] },
    "A gone.example": { rcode: 3 },
    "AAAA gone.example": { rcode: 3 },
  });
  assert.equal(nx.host, "[UNAVAILABLE]");
  assert.deepEqual(nx.errors, [
    '*1 "gone.example" could not be resolved (3: Host not found) while in resolving client hostname, client: 127.0.0.1, server: 127.0.0.1:25',
  ]);
  const fail = await resolve("127.0.0.42", {
    "PTR 42.0.0.127.in-addr.arpa": { records: [{ type: "PTR", data: "flaky.example" }] },
    "A flaky.example": { records: [{ type: "A", data: "127.0.0.42" }] },
    "AAAA flaky.example": { rcode: 2 },
  });
  assert.equal(fail.host, "[TEMPUNAVAIL]");
  assert.match(fail.errors[0]!, /"flaky\.example" could not be resolved \(2: Server failure\)/);
});

test("no greeting while resolving; the name reaches authFacts", async () => {
  dns.answers.set("PTR 43.0.0.127.in-addr.arpa", { records: [{ type: "PTR", data: "slow.example" }], delayMs: 200 });
  dns.answers.set("A slow.example", { records: [{ type: "A", data: "127.0.0.43" }] });
  dns.answers.set("AAAA slow.example", { records: [] });
  const { s, fe } = session(withResolver(), "127.0.0.43");
  const started = fe.start();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(s.output(false), "", "nothing sent while the PTR query is pending");
  assert.equal(s.deadlineArmed, 0, "the deadline starts with the greeting");
  await started;
  assert.equal(s.output(), GREETING);
  assert.equal(fe.authFacts().clientHost, "slow.example");
});

test("greeting delay: data sent while resolving gets the 503 as soon as resolution ends", async () => {
  dns.answers.set("PTR 44.0.0.127.in-addr.arpa", { rcode: 3, delayMs: 150 });
  const { s, fe } = session(withResolver(1000, [set(smtpGreetingDelayDirective, 2000)]), "127.0.0.44");
  const t0 = Date.now();
  const started = fe.start();
  s.busy = true; // the core takes no command while the front end starts
  s.receive("HELO x\r\n");
  await started;
  assert.ok(Date.now() - t0 < 1000);
  assert.equal(s.output(), "503 5.5.0 Improper use of SMTP command pipelining\r\n");
  assert.equal(s.closed, true);
});

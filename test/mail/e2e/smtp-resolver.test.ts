/**
 * The SMTP client name end to end: nginx 1.22.1 and a running Postern with
 * the same `resolver` line, pointed at one DNS server written in the test
 * (test/event/fake-dns.ts) that answers each scenario's way. The auth_http
 * request (its Client-Host) and the error log (the resolver's own lines
 * included) must be the same. Every way of answering is compared in
 * test/mail/smtp/wire-nginx.test.ts ("nginx resolver: ..."); this file
 * shows the real processes agree on the ones an operator meets most.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { FakeDns, type FakeAnswer } from "../../event/fake-dns.js";
import { assertSame, Pair } from "./pair.js";
import { refusal, Talk } from "./talk.js";

const PTR = "PTR 1.0.0.127.in-addr.arpa";
let dns: FakeDns;
let pair: Pair;

before(async () => {
  dns = await new FakeDns().start();
  pair = await Pair.start({
    listen: ["smtp"],
    backends: {},
    auth: () => refusal("Go away"),
    config: ({ ports, authUrl }) => `
      auth_http ${authUrl};
      server_name mx.example.test;
      resolver 127.0.0.1:${dns.port};
      resolver_timeout 500ms;
      server { listen 127.0.0.1:${ports.smtp}; protocol smtp; smtp_auth none; }
    `,
  });
});

after(async () => {
  await pair?.stop();
  await dns?.close();
});

/** Greeting (after the lookup), then a mail transaction whose RCPT asks auth_http. */
async function transaction(port: number): Promise<string[]> {
  const t = await Talk.open(port);
  await t.line(3000);
  for (const line of ["HELO h", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>"]) await t.cmd(`${line}\r\n`, 3000);
  await t.send("QUIT\r\n");
  await t.closed(3000);
  return t.log;
}

// ttl 0: neither side keeps an answer for the next scenario
const SCENARIOS: Record<string, Record<string, FakeAnswer>> = {
  "PTR answered with an A record only (nginx: logged, then the timeout: [TEMPUNAVAIL])": {
    [PTR]: { records: [{ type: "A", data: "127.0.0.1", ttl: 0 }] },
  },
  "PTR answered with a CNAME only": { [PTR]: { records: [{ type: "CNAME", data: "1.0/24.0.0.127.in-addr.arpa", ttl: 0 }] } },
  "PTR NXDOMAIN: [UNAVAILABLE]": { [PTR]: { rcode: 3 } },
  "forward A answered with an MX record, AAAA empty: NXDOMAIN": {
    [PTR]: { records: [{ type: "PTR", data: "client.example", ttl: 0 }] },
    "A client.example": { records: [{ type: "MX", data: "mx.example", ttl: 0 }] },
    "AAAA client.example": { records: [] },
  },
  "PTR and a matching A record: the name": {
    [PTR]: { records: [{ type: "PTR", data: "Client.Example", ttl: 0 }] },
    "A client.example": { records: [{ type: "A", data: "127.0.0.1", ttl: 0 }] },
    "AAAA client.example": { records: [] },
  },
};

for (const [name, answers] of Object.entries(SCENARIOS)) {
  test(`SMTP client name: ${name}`, async () => {
    dns.answers.clear();
    for (const [k, v] of Object.entries(answers)) dns.answers.set(k, v);
    const r = await pair.run({ logLevels: ["error"], processLines: true }, (ports) => transaction(ports.smtp!));
    assert.equal(r.nginx.authRequests.length, 1);
    assert.match(r.nginx.authRequests[0]!, /^Client-Host: \S+\r$/m);
    // a dropped answer shows as a line of nginx's resolver, without a connection
    if (!/NXDOMAIN: |matching/.test(name))
      assert.ok(
        r.nginx.errorLog.some((l) => !l.includes("*<conn>")),
        `nginx logs the resolver's own line: ${r.nginx.errorLog.join("\n")}`,
      );
    assertSame(r);
  });
}

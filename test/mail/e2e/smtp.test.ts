/**
 * SMTP end to end (nginx-tests mail_smtp.t, mail_smtp_xclient.t): each scenario runs
 * against nginx 1.22.1 and Postern with the same config, fake auth server and fake
 * backends; records must be equal except where latest nginx or Postern deliberately
 * differ (named in the test). The scenarios SMTP shares with IMAP and POP3 (refusals,
 * auth and backend failures, limits, timeout, PROXY protocol) are rows of
 * protocol-matrix-{auth,input}.test.ts.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { certs } from "../../support/certs.js";
import { makeMessage } from "../../support/fake-backend.js";
import { assertSame, digestLong, Pair, posternRecord } from "./pair.js";
import { b64, cramDigest, firstThen, ok, okToBackend, refusal, Talk } from "./talk.js";

const BIG = 5 * 1024 * 1024;

let pair: Pair;

before(async () => {
  const pki = certs();
  pair = await Pair.start({
    listen: ["smtp", "xclient", "psa", "none", "tlsOnly", "delay"],
    backends: {
      smtp: { protocol: "smtp" },
      rcpt550: { protocol: "smtp", options: { rcptReply: "550 5.1.1 no such user" } },
    },
    auth: okToBackend("smtp"),
    config: ({ ports, authUrl }) => `
      auth_http ${authUrl};
      server_name mx.example.test;
      smtp_auth plain login cram-md5;
      xclient off;
      server { listen 127.0.0.1:${ports.smtp}; protocol smtp; }
      server { listen 127.0.0.1:${ports.xclient}; protocol smtp; xclient on; }
      server { listen 127.0.0.1:${ports.psa}; protocol smtp; proxy_smtp_auth on; }
      server { listen 127.0.0.1:${ports.none}; protocol smtp; smtp_auth none plain; xclient on; }
      server { listen 127.0.0.1:${ports.tlsOnly}; protocol smtp; starttls only; smtp_auth none plain;
               ssl_certificate ${pki.serverRsa.cert}; ssl_certificate_key ${pki.serverRsa.key}; }
      server { listen 127.0.0.1:${ports.delay}; protocol smtp; smtp_greeting_delay 500ms; }
    `,
  });
});

after(async () => {
  await pair?.stop();
});

async function greet(port: number): Promise<Talk> {
  const t = await Talk.open(port);
  await t.line();
  return t;
}

/** Reads a (possibly multi-line) SMTP reply. */
function reply(t: Talk): Promise<string> {
  return t.until(/^\d{3} .*\r\n/m);
}

/** Sends one message after authentication and quits. */
async function sendMessage(t: Talk): Promise<void> {
  await t.cmd("MAIL FROM:<a@example.com>\r\n");
  await t.cmd("RCPT TO:<b@example.com>\r\n");
  await t.cmd("DATA\r\n");
  await t.cmd("Subject: hi\r\n\r\n..dot line\r\n.\r\n");
  await t.send("QUIT\r\n");
  await t.closed();
}

test("SMTP AUTH PLAIN, LOGIN and CRAM-MD5 with and without initial response, xclient off; message relayed", async () => {
  const plain = b64("\0test@example.com\0secret");
  const r = await pair.run({ logLevels: ["info"] }, async (ports) => {
    const logs: string[][] = [];
    const session = async (steps: (t: Talk) => Promise<void>): Promise<void> => {
      const t = await greet(ports.smtp!);
      await t.send("EHLO client.example\r\n");
      await reply(t);
      await steps(t);
      await sendMessage(t);
      logs.push(t.log);
    };
    await session(async (t) => {
      await t.cmd("AUTH PLAIN\r\n");
      await t.cmd(`${plain}\r\n`);
    });
    await session(async (t) => {
      await t.cmd(`auth plain ${plain}\r\n`);
    });
    await session(async (t) => {
      await t.cmd("AUTH LOGIN\r\n");
      await t.cmd(`${b64("test@example.com")}\r\n`);
      await t.cmd(`${b64("secret")}\r\n`);
    });
    await session(async (t) => {
      await t.cmd(`AUTH LOGIN ${b64("test@example.com")}\r\n`);
      await t.cmd(`${b64("secret")}\r\n`);
    });
    await session(async (t) => {
      const challenge = Buffer.from((await t.cmd("AUTH CRAM-MD5\r\n")).slice(4), "base64").toString("latin1");
      await t.cmd(`${b64(`test@example.com ${cramDigest("secret", challenge)}`)}\r\n`);
    });
    return logs;
  });
  const n = r.nginx;
  assert.equal(n.transcript[0]![0], "S: 220 mx.example.test ESMTP ready\r\n");
  assert.equal(n.transcript[0]![2], "S: 250-mx.example.test\r\n250 AUTH PLAIN LOGIN CRAM-MD5\r\n");
  assert.deepEqual(n.transcript[0]!.slice(3, 7), ["C: AUTH PLAIN\r\n", "S: 334 \r\n", `C: ${plain}\r\n`, "S: 235 2.0.0 OK\r\n"]);
  assert.match(n.transcript[4]![4]!, /^S: 334 <base64 salt@mx\.example\.test>\r\n$/);
  assert.deepEqual(
    n.authRequests.map((q) => /Auth-Method: (\S+)/.exec(q)![1]),
    ["plain", "plain", "plain", "plain", "cram-md5"],
  );
  assert.match(n.authRequests[0]!, /\r\nAuth-Protocol: smtp\r\nAuth-Login-Attempt: 1\r\nClient-IP: 127\.0\.0\.1\r\nClient-Host: \[UNAVAILABLE\]\r\n\r\n$/);
  const expected = "EHLO mx.example.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nSubject: hi\r\n\r\n..dot line\r\n.\r\nQUIT\r\n";
  assert.deepEqual(n.backendReceived.smtp, Array(5).fill(expected));
  assertSame(r);
});

test("SMTP xclient on: XCLIENT with ADDR, LOGIN and NAME, then the client HELO/EHLO", async () => {
  const r = await pair.run({}, async (ports) => {
    const a = await greet(ports.xclient!);
    await a.send("EHLO client.example\r\n");
    await reply(a);
    await a.cmd(`AUTH PLAIN ${b64("\0test@example.com\0secret")}\r\n`);
    await sendMessage(a);
    const b = await greet(ports.xclient!);
    await b.cmd("HELO old.example\r\n");
    await b.cmd(`AUTH PLAIN ${b64("\0test@example.com\0secret")}\r\n`);
    await b.cmd("NOOP\r\n");
    b.close();
    const c = await greet(ports.xclient!);
    await c.cmd(`AUTH PLAIN ${b64("\0test@example.com\0secret")}\r\n`);
    await c.cmd("NOOP\r\n");
    c.close();
    return [a.log, b.log, c.log];
  });
  assert.deepEqual(
    r.nginx.backendReceived.smtp!.map((s) => s.split("\r\n").slice(0, 3).join("|")),
    [
      "EHLO mx.example.test|XCLIENT ADDR=127.0.0.1 LOGIN=test@example.com NAME=[UNAVAILABLE]|EHLO client.example",
      "EHLO mx.example.test|XCLIENT ADDR=127.0.0.1 LOGIN=test@example.com NAME=[UNAVAILABLE]|HELO old.example",
      "EHLO mx.example.test|XCLIENT ADDR=127.0.0.1 LOGIN=test@example.com NAME=[UNAVAILABLE]|NOOP",
    ],
  );
  assertSame(r);
});

test("SMTP xclient on with Auth-User: XCLIENT LOGIN carries the override; none without HELO", async () => {
  const r = await pair.run(
    {
      auth: (env) => firstThen(1, ok(env.backends.smtp!, [["Auth-User", "real@example.com"]]), ok(env.backends.smtp!)),
    },
    async (ports) => {
      const a = await greet(ports.xclient!);
      await a.cmd(`AUTH LOGIN ${b64("test@example.com")}\r\n`);
      await a.cmd(`${b64("secret")}\r\n`);
      await a.cmd("NOOP\r\n");
      a.close();
      const b = await greet(ports.none!);
      await b.cmd("MAIL FROM:<>\r\n");
      await b.cmd("RCPT TO:<b@example.com>\r\n");
      b.close();
      return [a.log, b.log];
    },
  );
  assert.deepEqual(r.nginx.backendReceived.smtp, [
    "EHLO mx.example.test\r\nXCLIENT ADDR=127.0.0.1 LOGIN=real@example.com NAME=[UNAVAILABLE]\r\nNOOP\r\n",
    "EHLO mx.example.test\r\nXCLIENT ADDR=127.0.0.1 NAME=[UNAVAILABLE]\r\nMAIL FROM:<>\r\nRCPT TO:<b@example.com>\r\n",
  ]);
  assert.match(r.nginx.authRequests[1]!, /\r\nAuth-SMTP-Helo: \r\nAuth-SMTP-From: MAIL FROM:<>\r\nAuth-SMTP-To: RCPT TO:<b@example\.com>\r\n\r\n$/);
  assertSame(r);
});

test("SMTP proxy_smtp_auth on: AUTH PLAIN to the backend, with Auth-User/Auth-Pass overrides", async () => {
  const r = await pair.run(
    {
      auth: (env) =>
        firstThen(
          1,
          okToBackend("smtp")(env),
          okToBackend("smtp", [
            ["Auth-User", "real@example.com"],
            ["Auth-Pass", "real pass"],
          ])(env),
        ),
    },
    async (ports) => {
      const logs: string[][] = [];
      for (let i = 0; i < 2; i++) {
        const t = await greet(ports.psa!);
        await t.cmd("HELO client.example\r\n");
        await t.cmd(`AUTH PLAIN ${b64("\0test@example.com\0secret")}\r\n`);
        await t.cmd("NOOP\r\n");
        t.close();
        logs.push(t.log);
      }
      return logs;
    },
  );
  assert.deepEqual(r.nginx.backendReceived.smtp, [
    `HELO mx.example.test\r\nAUTH PLAIN ${b64("\0test@example.com\0secret")}\r\nNOOP\r\n`,
    `HELO mx.example.test\r\nAUTH PLAIN ${b64("\0real@example.com\0real pass")}\r\nNOOP\r\n`,
  ]);
  assertSame(r);
});

test("SMTP smtp_auth none: MAIL/RCPT start auth, the backend RCPT reply is relayed, pipelined RCPT follows", async () => {
  const r = await pair.run(
    {
      auth: (env) => firstThen(1, ok(env.backends.smtp!), ok(env.backends.rcpt550!)),
    },
    async (ports) => {
      const a = await greet(ports.none!);
      await a.send("EHLO client.example\r\n");
      await reply(a);
      await a.cmd("MAIL FROM:<a@example.com> SIZE=10\r\n");
      await a.cmd("RCPT TO:<b@example.com>\r\n");
      await a.cmd("DATA\r\n");
      await a.cmd("Subject: x\r\n\r\nbody\r\n.\r\n");
      await a.send("QUIT\r\n");
      await a.closed();
      const b = await greet(ports.none!);
      await b.cmd("MAIL FROM:<a@example.com>\r\n");
      await b.send("RCPT TO:<nobody@example.com>\r\nRCPT TO:<second@example.com>\r\n");
      await b.line();
      await b.line();
      b.close();
      return [a.log, b.log];
    },
  );
  const n = r.nginx;
  assert.equal(n.transcript[0]![2], "S: 250-mx.example.test\r\n250 AUTH PLAIN\r\n");
  assert.deepEqual(n.transcript[0]!.slice(3, 7), [
    "C: MAIL FROM:<a@example.com> SIZE=10\r\n",
    "S: 250 2.0.0 OK\r\n",
    "C: RCPT TO:<b@example.com>\r\n",
    "S: 250 2.1.5 Ok\r\n",
  ]);
  assert.match(
    n.authRequests[0]!,
    /^Auth-Method: none\r\nAuth-User: \r\nAuth-Pass: \r\nAuth-Protocol: smtp\r\nAuth-Login-Attempt: 1\r\nClient-IP: 127\.0\.0\.1\r\nClient-Host: \[UNAVAILABLE\]\r\nAuth-SMTP-Helo: client\.example\r\nAuth-SMTP-From: MAIL FROM:<a@example\.com> SIZE=10\r\nAuth-SMTP-To: RCPT TO:<b@example\.com>\r\n\r\n$/m,
  );
  assert.equal(
    n.backendReceived.smtp![0],
    "EHLO mx.example.test\r\nXCLIENT ADDR=127.0.0.1 NAME=[UNAVAILABLE]\r\nEHLO client.example\r\nMAIL FROM:<a@example.com> SIZE=10\r\nRCPT TO:<b@example.com>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
  );
  assert.deepEqual(n.transcript[1]!.slice(3), [
    "C: RCPT TO:<nobody@example.com>\r\nRCPT TO:<second@example.com>\r\n",
    "S: 550 5.1.1 no such user\r\n",
    "S: 550 5.1.1 no such user\r\n",
  ]);
  assert.equal(
    n.backendReceived.rcpt550![0],
    "EHLO mx.example.test\r\nXCLIENT ADDR=127.0.0.1 NAME=[UNAVAILABLE]\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<nobody@example.com>\r\nRCPT TO:<second@example.com>\r\n",
  );
  assertSame(r);
});

test("SMTP: a 5 MB message reaches the backend byte-exact", async () => {
  const message = makeMessage(BIG);
  const r = await pair.run({}, async (ports) => {
    const t = await greet(ports.smtp!);
    await t.cmd(`AUTH PLAIN ${b64("\0test@example.com\0secret")}\r\n`);
    await t.cmd("MAIL FROM:<a@example.com>\r\n");
    await t.cmd("RCPT TO:<b@example.com>\r\n");
    await t.cmd("DATA\r\n");
    await t.client.send(`${message}.\r\n`);
    await t.line(20000);
    await t.send("QUIT\r\n");
    await t.closed();
    return t.log;
  });
  assert.equal(r.nginx.transcript.at(-3), "S: 250 2.0.0 Ok: queued\r\n");
  assert.deepEqual(r.nginx.backendReceived.smtp, [
    digestLong(`HELO mx.example.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n${message}.\r\nQUIT\r\n`),
  ]);
  assertSame(r);
});

test("latest nginx (1.29.2): XCLIENT LOGIN= is xtext-encoded (1.22.1 wrote it raw)", async () => {
  const r = await pair.run({}, async (ports) => {
    const t = await greet(ports.xclient!);
    await t.cmd(`AUTH PLAIN ${b64("\0us er+=x\0secret")}\r\n`);
    t.close();
    return t.log;
  });
  assert.equal(r.nginx.backendReceived.smtp![0], "EHLO mx.example.test\r\nXCLIENT ADDR=127.0.0.1 LOGIN=us er+=x NAME=[UNAVAILABLE]\r\n");
  const p = posternRecord(r);
  assert.deepEqual(p.transcript, r.nginx.transcript);
  assert.deepEqual(p.backendReceived.smtp, ["EHLO mx.example.test\r\nXCLIENT ADDR=127.0.0.1 LOGIN=us+20er+2B+3Dx NAME=[UNAVAILABLE]\r\n"]);
});

test("latest nginx (1.29.1): with smtp_auth none, MAIL FROM forgets credentials of a refused AUTH", async () => {
  const r = await pair.run(
    {
      auth: (env) => firstThen(1, refusal("Invalid login or password", 1), ok(env.backends.smtp!)),
    },
    async (ports) => {
      const t = await greet(ports.none!);
      await t.cmd(`AUTH PLAIN ${b64("\0test@example.com\0wrong")}\r\n`, 3000);
      await t.cmd("MAIL FROM:<a@example.com>\r\n");
      await t.cmd("RCPT TO:<b@example.com>\r\n");
      t.close();
      return t.log;
    },
  );
  // 1.22.1 sends the refused login and password again with Auth-Method none.
  assert.match(r.nginx.authRequests[1]!, /^Auth-Method: none\r\nAuth-User: test@example\.com\r\nAuth-Pass: wrong\r\n/m);
  assert.match(r.nginx.backendReceived.smtp![0]!, /XCLIENT ADDR=127\.0\.0\.1 LOGIN=test@example\.com NAME/);
  const p = posternRecord(r);
  assert.deepEqual(p.transcript, r.nginx.transcript);
  assert.match(p.authRequests[1]!, /^Auth-Method: none\r\nAuth-User: \r\nAuth-Pass: \r\n/m);
  assert.deepEqual(p.backendReceived.smtp, [
    "EHLO mx.example.test\r\nXCLIENT ADDR=127.0.0.1 NAME=[UNAVAILABLE]\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n",
  ]);
});

test("Postern is stricter: starttls only also refuses MAIL/RCPT before STARTTLS; after TLS they work", async () => {
  const r = await pair.run({}, async (ports) => {
    const t = await greet(ports.tlsOnly!);
    await t.send("EHLO client.example\r\n");
    await reply(t);
    await t.cmd("MAIL FROM:<a@example.com>\r\n");
    await t.cmd("RSET\r\n");
    await t.cmd("STARTTLS\r\n");
    await t.startTls();
    await t.send("EHLO client.example\r\n");
    await reply(t);
    await t.cmd("MAIL FROM:<a@example.com>\r\n");
    await t.cmd("RCPT TO:<b@example.com>\r\n");
    t.close();
    return t.log;
  });
  const n = r.nginx.transcript;
  assert.deepEqual(n.slice(2, 5), ["S: 250-mx.example.test\r\n250 STARTTLS\r\n", "C: MAIL FROM:<a@example.com>\r\n", "S: 250 2.0.0 OK\r\n"]);
  assert.deepEqual(n.slice(-2), ["C: RCPT TO:<b@example.com>\r\n", "S: 250 2.1.5 Ok\r\n"]);
  const p = posternRecord(r);
  // RFC 3207's reply for commands refused until STARTTLS (Postern's src/mail/smtp/replies.ts).
  assert.deepEqual(p.transcript, [...n.slice(0, 4), "S: 530 5.7.0 Must issue a STARTTLS command first\r\n", ...n.slice(5)]);
  assert.deepEqual(p.authRequests.length, 1);
  assert.match(p.authRequests[0]!, /^Auth-SSL: on\r$/m);
});

test("SMTP command edge cases: HELO/EHLO arity, MAIL/RCPT sequence, RSET, AUTH errors, STARTTLS not offered", async () => {
  const r = await pair.run({ logLevels: ["info"] }, async (ports) => {
    const t = await greet(ports.none!);
    for (const line of [
      "HELO",
      "EHLO a b",
      "RCPT TO:<b@example.com>",
      "MAIL",
      "MAIL FROM:<a@example.com>",
      "MAIL FROM:<c@example.com>",
      "RSET",
      "RCPT TO:<b@example.com>",
      "AUTH",
      "AUTH DIGEST-MD5",
      "AUTH CRAM-MD5",
      `AUTH PLAIN ${b64("no nul")}`,
      "AUTH PLAIN !!!",
      "AUTH LOGIN",
      "*",
      "STARTTLS",
      "HELP",
      "EXPN x",
      "NOOP",
      "helo lower.example",
    ]) {
      await t.send(`${line}\r\n`);
      await reply(t);
    }
    await t.send("QUIT\r\n");
    await t.closed();
    return t.log;
  });
  assert.deepEqual(r.nginx.transcript.filter((l) => l.startsWith("S:")).slice(1, 9), [
    "S: 501 5.5.4 Invalid argument\r\n",
    "S: 501 5.5.4 Invalid argument\r\n",
    "S: 503 5.5.1 Bad sequence of commands\r\n",
    "S: 501 5.5.4 Invalid argument\r\n",
    "S: 250 2.0.0 OK\r\n",
    "S: 503 5.5.1 Bad sequence of commands\r\n",
    "S: 250 2.0.0 OK\r\n",
    "S: 503 5.5.1 Bad sequence of commands\r\n",
  ]);
  assert.equal(r.nginx.authRequests.length, 0);
  assertSame(r);
});

test("SMTP smtp_greeting_delay: a client talking first gets 503 and is closed; a patient one is served", async () => {
  const r = await pair.run({ logLevels: ["info"] }, async (ports) => {
    const a = await Talk.open(ports.delay!);
    await a.send("EHLO eager.example\r\n");
    await a.closed(3000);
    const b = await Talk.open(ports.delay!);
    const started = Date.now();
    await b.line(3000);
    b.note(Date.now() - started >= 400 ? "greeting after >= 0.4 s" : "greeting too early");
    await b.cmd(`AUTH PLAIN ${b64("\0test@example.com\0secret")}\r\n`);
    b.close();
    return [a.log, b.log];
  });
  assert.deepEqual(r.nginx.transcript[0], ["C: EHLO eager.example\r\n", 'closed after: "503 5.5.0 Improper use of SMTP command pipelining\\r\\n"']);
  assert.deepEqual(r.nginx.transcript[1]!.slice(0, 2), ["S: 220 mx.example.test ESMTP ready\r\n", "note: greeting after >= 0.4 s"]);
  assert.ok(
    r.nginx.errorLog.some((l) => l.includes('client was rejected before greeting: "EHLO eager.example__"')),
    r.nginx.errorLog.join("\n"),
  );
  assertSame(r);
});

test("SMTP smtp_auth none refused with Auth-Wait: the client keeps HELO and MAIL and simply sends another RCPT", async () => {
  const r = await pair.run(
    {
      logLevels: ["info"],
      auth: (env) => firstThen(1, refusal("Recipient not allowed", 1, "550 5.7.1"), ok(env.backends.smtp!)),
    },
    async (ports) => {
      const t = await greet(ports.none!);
      await t.cmd("HELO client.example\r\n");
      await t.cmd("MAIL FROM:<a@example.com>\r\n");
      await t.cmd("RCPT TO:<bad@example.com>\r\n", 3000);
      await t.cmd("RCPT TO:<good@example.com>\r\n");
      await t.cmd("RSET\r\n");
      t.close();
      return t.log;
    },
  );
  assert.deepEqual(r.nginx.transcript.filter((l) => l.startsWith("S:")).slice(3), [
    "S: 550 5.7.1 Recipient not allowed\r\n",
    "S: 250 2.1.5 Ok\r\n",
    "S: 250 2.0.0 Ok\r\n",
  ]);
  assert.match(
    r.nginx.authRequests[1]!,
    /\r\nAuth-SMTP-Helo: client\.example\r\nAuth-SMTP-From: MAIL FROM:<a@example\.com>\r\nAuth-SMTP-To: RCPT TO:<good@example\.com>\r\n\r\n$/,
  );
  assert.equal(
    r.nginx.backendReceived.smtp![0],
    "EHLO mx.example.test\r\nXCLIENT ADDR=127.0.0.1 NAME=[UNAVAILABLE]\r\nHELO client.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<good@example.com>\r\nRSET\r\n",
  );
  assertSame(r);
});

/**
 * POP3 end to end (nginx-tests mail_pop3.t): each scenario runs against nginx 1.22.1
 * and Postern with the same config, fake auth server and fake backends; records must
 * be equal except where named differences apply. The scenarios POP3 shares with IMAP
 * and SMTP (refusals, auth and backend failures, limits, timeout, PROXY protocol) are
 * rows of protocol-matrix-{auth,input}.test.ts.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { certs } from "../../support/certs.js";
import { makeMessage } from "../../support/fake-backend.js";
import { assertSame, Pair, posternRecord } from "./pair.js";
import { b64, cramDigest, firstThen, okToBackend, Talk } from "./talk.js";

const BIG = 4 * 1024 * 1024;

let pair: Pair;

before(async () => {
  const pki = certs();
  pair = await Pair.start({
    listen: ["pop3", "stls"],
    backends: {
      pop3: { protocol: "pop3" },
      big: { protocol: "pop3", options: { message: BIG } },
    },
    auth: okToBackend("pop3"),
    config: ({ ports, authUrl }) => `
      auth_http ${authUrl};
      server { listen 127.0.0.1:${ports.pop3}; protocol pop3; server_name pop.example.test;
               pop3_auth plain apop cram-md5 external; }
      server { listen 127.0.0.1:${ports.stls}; protocol pop3; starttls only; pop3_capabilities TOP USER UIDL;
               ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate ${pki.serverRsa.cert}; ssl_certificate_key ${pki.serverRsa.key}; }
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

test("POP3 USER/PASS login, CAPA, AUTH list, data relayed both ways", async () => {
  const r = await pair.run({ logLevels: ["info"] }, async (ports) => {
    const t = await greet(ports.pop3!);
    await t.send("CAPA\r\n");
    await t.until(/^\.\r\n/m);
    await t.send("AUTH\r\n");
    await t.until(/^\.\r\n/m);
    await t.cmd("USER test@example.com\r\n");
    await t.cmd("PASS  sec ret \r\n");
    await t.cmd("STAT\r\n");
    await t.send("RETR 1\r\n");
    await t.until(/^\.\r\n/m);
    await t.send("QUIT\r\n");
    await t.closed();
    return t.log;
  });
  const n = r.nginx;
  assert.match(n.transcript[0]!, /^S: \+OK POP3 ready <SALT@pop\.example\.test>\r\n$/);
  assert.equal(n.transcript[2], "S: +OK Capability list follows\r\nTOP\r\nUSER\r\nUIDL\r\nSASL PLAIN LOGIN CRAM-MD5 EXTERNAL\r\n.\r\n");
  assert.equal(n.transcript[4], "S: +OK methods supported:\r\nPLAIN\r\nLOGIN\r\nCRAM-MD5\r\nEXTERNAL\r\n.\r\n");
  assert.equal(n.transcript[8], "S: +OK logged in\r\n");
  assert.match(n.authRequests[0]!, /^Auth-Method: plain\r\nAuth-User: test@example\.com\r\nAuth-Pass: sec%20ret%20\r\nAuth-Protocol: pop3\r\n/m);
  assert.deepEqual(n.backendReceived.pop3, ["USER test@example.com\r\nPASS sec ret \r\nSTAT\r\nRETR 1\r\nQUIT\r\n"]);
  assertSame(r);
});

test("POP3 APOP, AUTH PLAIN/LOGIN with and without initial response, AUTH CRAM-MD5", async () => {
  const plain = b64("\0test@example.com\0secret");
  const r = await pair.run({}, async (ports) => {
    const logs: string[][] = [];
    const session = async (steps: (t: Talk, salt: string) => Promise<void>): Promise<void> => {
      const t = await Talk.open(ports.pop3!);
      const salt = /<[^>]+>/.exec(await t.line())![0];
      await steps(t, salt);
      await t.cmd("STAT\r\n");
      t.close();
      logs.push(t.log);
    };
    await session(async (t, salt) => {
      await t.cmd(
        `APOP test@example.com ${createHash("md5")
          .update(salt + "secret")
          .digest("hex")}\r\n`,
      );
    });
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
    await session(async (t, salt) => {
      const challenge = await t.cmd("AUTH CRAM-MD5\r\n");
      assert.equal(Buffer.from(challenge.slice(2), "base64").toString("latin1"), salt);
      await t.cmd(`${b64(`test@example.com ${cramDigest("secret", salt)}`)}\r\n`);
    });
    return logs;
  });
  const n = r.nginx;
  assert.deepEqual(
    n.authRequests.map((q) => /Auth-Method: (\S+)/.exec(q)![1]),
    ["apop", "plain", "plain", "plain", "plain", "cram-md5"],
  );
  assert.match(n.authRequests[0]!, /^Auth-User: test@example\.com\r\nAuth-Pass: <digest>\r\nAuth-Salt: <SALT@pop\.example\.test>\r\n/m);
  assert.deepEqual(n.backendReceived.pop3, Array(6).fill("USER test@example.com\r\nPASS secret\r\nSTAT\r\n"));
  assert.equal(n.transcript[1]![2], "S: + \r\n");
  assert.equal(n.transcript[3]![2], "S: + VXNlcm5hbWU6\r\n");
  for (const log of n.transcript) assert.equal(log.at(-1), "S: +OK 1 24\r\n");
  assertSame(r);
});

test("POP3: a 4 MB RETR arrives byte-exact", async () => {
  const message = makeMessage(BIG);
  const r = await pair.run({ auth: okToBackend("big") }, async (ports) => {
    const t = await greet(ports.pop3!);
    await t.cmd("USER test@example.com\r\n");
    await t.cmd("PASS secret\r\n");
    await t.client.send("RETR 1\r\n");
    const data = await t.client.read(/\r\n\.\r\n/, 20000);
    t.close();
    return { exact: data === `+OK ${BIG} octets\r\n${message}.\r\n`, log: t.log };
  });
  assert.equal(r.nginx.transcript.exact, true);
  assertSame(r);
});

test("latest nginx (1.29.7): Auth-Salt only for apop and cram-md5, not for EXTERNAL on an APOP server", async () => {
  const r = await pair.run({}, async (ports) => {
    const t = await greet(ports.pop3!);
    await t.cmd(`AUTH EXTERNAL ${b64("test@example.com")}\r\n`);
    t.close();
    return t.log;
  });
  assert.match(
    r.nginx.authRequests[0]!,
    /^Auth-Method: external\r\nAuth-User: test@example\.com\r\nAuth-Pass: \r\nAuth-Salt: <SALT@pop\.example\.test>\r\nAuth-Protocol: pop3\r\n/m,
  );
  const p = posternRecord(r);
  assert.equal(p.authRequests.length, 1);
  assert.equal(p.authRequests[0], r.nginx.authRequests[0]!.replace(/Auth-Salt: .*\r\n/, ""));
  assert.deepEqual(p.transcript, r.nginx.transcript);
  assert.deepEqual(p.backendReceived, r.nginx.backendReceived);
});

test("POP3 command edge cases: USER state fallback, PASS first, APOP arity, bad SASL steps", async () => {
  const r = await pair.run({ logLevels: ["info"] }, async (ports) => {
    const t = await greet(ports.pop3!);
    for (const line of [
      "PASS secret",
      "USER a b",
      "USER test@example.com",
      "NOOP",
      "PASS secret",
      "USER test@example.com",
      "CAPA",
      "STAT",
      "PASS secret",
      "APOP onlyuser",
      "AUTH PLAIN",
      "!!!",
      `AUTH PLAIN ${b64("no nul")}`,
      "AUTH CRAM-MD5 eA==",
      "AUTH LOGIN",
      "*",
      "AUTH DIGEST-MD5",
      "STLS",
      "user  spaced  name ",
    ]) {
      await t.send(`${line}\r\n`);
      await (line === "CAPA" ? t.until(/^\.\r\n/m) : t.line());
    }
    await t.send("QUIT\r\n");
    await t.closed();
    return t.log;
  });
  const replies = r.nginx.transcript.filter((l) => l.startsWith("S:"));
  // `USER a b` is one argument; USER again in the USER state is invalid and returns to the start state.
  assert.deepEqual(replies.slice(1, 6), [
    "S: -ERR invalid command\r\n",
    "S: +OK\r\n",
    "S: -ERR invalid command\r\n",
    "S: +OK\r\n",
    "S: -ERR invalid command\r\n",
  ]);
  assert.equal(r.nginx.authRequests.length, 0);
  assertSame(r);
});

test("POP3 starttls only: CAPA without USER/SASL, USER refused, pipelined bytes after STLS dropped, login over TLS", async () => {
  const r = await pair.run({ logLevels: ["info"] }, async (ports) => {
    const t = await greet(ports.stls!);
    await t.send("CAPA\r\n");
    await t.until(/^\.\r\n/m);
    await t.cmd("USER test@example.com\r\n");
    await t.cmd("STLS\r\nNOOP\r\n");
    await t.startTls();
    await t.send("CAPA\r\n");
    await t.until(/^\.\r\n/m);
    await t.cmd("USER test@example.com\r\n");
    await t.cmd("PASS secret\r\n");
    await t.cmd("STAT\r\n");
    t.close();
    return t.log;
  });
  const n = r.nginx;
  assert.deepEqual(
    n.transcript.filter((l) => l.startsWith("S:")),
    [
      "S: +OK POP3 ready\r\n",
      "S: +OK Capability list follows\r\nTOP\r\nUIDL\r\nSTLS\r\n.\r\n",
      "S: -ERR invalid command\r\n",
      "S: +OK\r\n",
      "S: +OK Capability list follows\r\nTOP\r\nUSER\r\nUIDL\r\nSASL PLAIN LOGIN\r\n.\r\n",
      "S: +OK\r\n",
      "S: +OK logged in\r\n",
      "S: +OK 1 24\r\n",
    ],
  );
  assert.match(n.authRequests[0]!, /\r\nAuth-SSL: on\r\nAuth-SSL-Protocol: TLSv1\.3\r\nAuth-SSL-Cipher: TLS_AES_256_GCM_SHA384\r\n\r\n$/);
  assert.deepEqual(n.backendReceived.pop3, ["USER test@example.com\r\nPASS secret\r\nSTAT\r\n"]);
  assertSame(r);
});

test("POP3 APOP with Auth-Status WAIT: the repeated request has the same salt and attempt, and an empty Auth-Pass", async () => {
  const r = await pair.run(
    {
      auth: (env) =>
        firstThen(
          1,
          () => ({
            headers: [
              ["Auth-Status", "WAIT"],
              ["Auth-Wait", "1"],
            ],
          }),
          okToBackend("pop3")(env),
        ),
    },
    async (ports) => {
      const t = await Talk.open(ports.pop3!);
      const salt = /<[^>]+>/.exec(await t.line())![0];
      await t.cmd(
        `APOP test@example.com ${createHash("md5")
          .update(salt + "secret")
          .digest("hex")}\r\n`,
        3000,
      );
      await t.cmd("STAT\r\n");
      t.close();
      return t.log;
    },
  );
  const [first, second] = r.nginx.authRequests;
  assert.match(first!, /^Auth-Method: apop\r\nAuth-User: test@example\.com\r\nAuth-Pass: <digest>\r\nAuth-Salt: <SALT@pop\.example\.test>\r\n/m);
  assert.equal(second, first!.replace("Auth-Pass: <digest>", "Auth-Pass: "));
  assert.equal(r.nginx.transcript.at(-1), "S: +OK 1 24\r\n");
  assertSame(r);
});

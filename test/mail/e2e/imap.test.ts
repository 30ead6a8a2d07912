/**
 * IMAP end to end (nginx-tests mail_imap.t, mail_proxy_protocol.t, mail_error_log.t):
 * each scenario runs against nginx 1.22.1 and Postern with the same config, fake auth
 * server and fake backends; the records must be equal, except where latest nginx or
 * Postern deliberately differ (named in the test). The scenarios IMAP shares with
 * POP3 and SMTP (refusals, auth and backend failures, limits, timeout, PROXY
 * protocol) are rows of protocol-matrix-{auth,input}.test.ts.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { certs } from "../../support/certs.js";
import { makeMessage } from "../../support/fake-backend.js";
import { assertSame, Pair, posternRecord } from "./pair.js";
import { b64, cramDigest, firstThen, okToBackend, refusal, Talk } from "./talk.js";

const BIG = 5 * 1024 * 1024;

let pair: Pair;

const okTo = okToBackend;

before(async () => {
  const pki = certs();
  pair = await Pair.start({
    listen: ["imap", "short", "limits", "pp", "ownLog", "starttls", "imaps"],
    backends: {
      imap: { protocol: "imap" },
      big: { protocol: "imap", options: { message: BIG } },
      pp: { protocol: "imap", proxyProtocol: true },
      untagged: {
        protocol: "scripted",
        script: {
          greeting: "* OK scripted ready\r\n",
          rules: [
            [/^\S+ LOGIN \{\d+\}\r\n$/, "+ go\r\n"],
            [/^\S+ \{\d+\}\r\n$/, "+ go\r\n"],
            [/^secret\r\n$/, "* CAPABILITY IMAP4rev1 IDLE\r\na1 OK logged in\r\n"],
            [/^(\S+) NOOP\r\n$/, "$1 OK noop\r\n"],
          ],
        },
      },
    },
    auth: okTo("imap"),
    config: ({ ports, authUrl }) => `
      auth_http ${authUrl};
      imap_auth plain login cram-md5;
      server { listen 127.0.0.1:${ports.imap}; protocol imap; server_name imap.example.test; }
      server { listen 127.0.0.1:${ports.short}; protocol imap; timeout 1s; proxy_timeout 1s; }
      server { listen 127.0.0.1:${ports.limits}; protocol imap; max_errors 3; imap_client_buffer 256; }
      server { listen 127.0.0.1:${ports.pp} proxy_protocol; protocol imap; set_real_ip_from 127.0.0.1;
               proxy_protocol on; }
      server { listen 127.0.0.1:${ports.ownLog}; protocol imap; error_log own.log info; }
      server { listen 127.0.0.1:${ports.starttls}; protocol imap; starttls on; auth_http_header X-Secret "s3 cr%et";
               ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate ${pki.serverRsa.cert}; ssl_certificate_key ${pki.serverRsa.key}; }
      server { listen 127.0.0.1:${ports.imaps} ssl; protocol imap;
               ssl_certificate ${pki.serverEcdsa.cert}; ssl_certificate_key ${pki.serverEcdsa.key}; }
    `,
  });
});

after(async () => {
  await pair?.stop();
});

/** Connects and reads the greeting. */
async function greet(port: number): Promise<Talk> {
  const t = await Talk.open(port);
  await t.line();
  return t;
}

test("IMAP LOGIN with atoms, quoted strings and literals; data relayed both ways", async () => {
  const r = await pair.run({ logLevels: ["info", "error"] }, async (ports) => {
    const a = await Talk.open(ports.imap!);
    await a.line();
    await a.cmd("a1 CAPABILITY\r\n");
    await a.line();
    await a.cmd('a2 LOGIN "test@example.com" "se\\\\cret \\"q\\""\r\n');
    await a.send("a3 FETCH 1 BODY[]\r\n");
    await a.until(/a3 .*\r\n/);
    await a.send("a4 LOGOUT\r\n");
    await a.closed();

    const b = await Talk.open(ports.imap!);
    await b.line();
    await b.cmd("b1 LOGIN {16}\r\n");
    await b.cmd("test@example.com {6}\r\n");
    await b.cmd("sec re\r\n");
    await b.send("b2 NOOP\r\n");
    await b.line();
    await b.send("b3 LOGOUT\r\n");
    await b.closed();

    const c = await Talk.open(ports.imap!);
    await c.line();
    await c.cmd("c1 LOGIN {4+}\r\nuser {6+}\r\nsecret\r\n");
    c.close();
    return [a.log, b.log, c.log];
  });
  const [a, b] = r.nginx.transcript;
  assert.deepEqual(a!.slice(0, 5), [
    "S: * OK IMAP4 ready\r\n",
    "C: a1 CAPABILITY\r\n",
    "S: * CAPABILITY IMAP4 IMAP4rev1 UIDPLUS AUTH=PLAIN AUTH=LOGIN AUTH=CRAM-MD5\r\n",
    "S: a1 OK completed\r\n",
    'C: a2 LOGIN "test@example.com" "se\\\\cret \\"q\\""\r\n',
  ]);
  assert.equal(a![5], "S: a2 OK LOGIN completed\r\n");
  assert.equal(b![2], "S: + OK\r\n");
  assert.match(r.nginx.authRequests[0]!, /^Auth-User: test@example\.com\r\nAuth-Pass: se\\cret%20"q"\r\n/m);
  assert.match(r.nginx.authRequests[1]!, /^Auth-Pass: sec%20re\r\n/m);
  assert.equal(r.nginx.backendReceived.imap![0], 'a2 LOGIN {16}\r\ntest@example.com {11}\r\nse\\cret "q"\r\na3 FETCH 1 BODY[]\r\na4 LOGOUT\r\n');
  assert.equal(r.nginx.backendReceived.imap!.length, 3);
  assertSame(r);
});

test("IMAP AUTHENTICATE PLAIN, LOGIN and CRAM-MD5, with and without initial response", async () => {
  const plain = b64("\0test@example.com\0secret");
  const r = await pair.run({}, async (ports) => {
    const logs: string[][] = [];
    const session = async (steps: (t: Talk) => Promise<void>): Promise<void> => {
      const t = await greet(ports.imap!);
      await steps(t);
      await t.send("x9 SELECT INBOX\r\n");
      await t.until(/x9 .*\r\n/);
      t.close();
      logs.push(t.log);
    };
    await session(async (t) => {
      await t.cmd("p1 AUTHENTICATE PLAIN\r\n");
      await t.cmd(`${plain}\r\n`);
    });
    await session(async (t) => {
      await t.cmd(`p2 authenticate plain ${plain}\r\n`);
    });
    await session(async (t) => {
      await t.cmd("l1 AUTHENTICATE LOGIN\r\n");
      await t.cmd(`${b64("test@example.com")}\r\n`);
      await t.cmd(`${b64("secret")}\r\n`);
    });
    await session(async (t) => {
      await t.cmd(`l2 AUTHENTICATE LOGIN ${b64("test@example.com")}\r\n`);
      await t.cmd(`${b64("secret")}\r\n`);
    });
    await session(async (t) => {
      const challenge = Buffer.from((await t.cmd("m1 AUTHENTICATE CRAM-MD5\r\n")).slice(2), "base64").toString("latin1");
      await t.cmd(`${b64(`test@example.com ${cramDigest("secret", challenge)}`)}\r\n`);
    });
    // CRAM-MD5 takes no initial response.
    const t = await greet(ports.imap!);
    await t.cmd(`m2 AUTHENTICATE CRAM-MD5 ${b64("x")}\r\n`);
    await t.cmd("m3 LOGOUT\r\n");
    await t.closed();
    logs.push(t.log);
    return logs;
  });
  const n = r.nginx;
  assert.equal(n.authRequests.length, 5);
  for (const [i, req] of n.authRequests.entries()) {
    assert.match(req, /^Auth-User: test@example\.com\r$/m);
    assert.match(
      req,
      i === 4
        ? /^Auth-Method: cram-md5\r\nAuth-User: test@example\.com\r\nAuth-Pass: <digest>\r\nAuth-Salt: <SALT@imap\.example\.test>\r\n/m
        : /^Auth-Method: plain\r\nAuth-User: test@example\.com\r\nAuth-Pass: secret\r$/m,
    );
  }
  assert.equal(n.transcript[0]![2], "S: + \r\n");
  assert.equal(n.transcript[2]![2], "S: + VXNlcm5hbWU6\r\n");
  assert.equal(n.transcript[3]![2], "S: + UGFzc3dvcmQ6\r\n");
  assert.match(n.transcript[4]![2]!, /^S: \+ <base64 salt@imap\.example\.test>\r\n$/);
  assert.deepEqual(n.transcript[5]!.slice(2), ["S: m2 BAD invalid command\r\n", "C: m3 LOGOUT\r\n", "S: * BYE\r\n", 'closed after: "m3 OK completed\\r\\n"']);
  assert.deepEqual(
    n.backendReceived.imap!.map((s) => s.split("\r\n")[0]),
    ["p1 LOGIN {16}", "p2 LOGIN {16}", "l1 LOGIN {16}", "l2 LOGIN {16}", "m1 LOGIN {16}"],
  );
  assertSame(r);
});

test("IMAP broken PROXY header: closed without a reply; latest nginx (1.23.2) logs only its first line", async () => {
  const r = await pair.run({ logLevels: ["error"] }, async (ports) => {
    const t = await Talk.open(ports.pp!);
    await t.send("PROXY TCP4 nonsense\r\n");
    await t.closed();
    return t.log;
  });
  assert.deepEqual(r.nginx.transcript, ["C: PROXY TCP4 nonsense\r\n", 'closed after: ""']);
  // 1.22.1 logs the whole buffer, CR LF included.
  assert.match(
    r.nginx.errorLog.join("\n"),
    /broken header: "PROXY TCP4 nonsense\r\n" while reading PROXY protocol, client: 127\.0\.0\.1, server: 127\.0\.0\.1:<port:pp>$/,
  );
  const p = posternRecord(r);
  assert.deepEqual(p.transcript, r.nginx.transcript);
  assert.deepEqual(p.errorLog, [
    '<time> [error] <pid>: *<conn> broken header: "PROXY TCP4 nonsense" while reading PROXY protocol, client: 127.0.0.1, server: 127.0.0.1:<port:pp>',
  ]);
});

test("IMAP: a 5 MB FETCH arrives byte-exact; IDLE is relayed", async () => {
  const expected = `* 1 FETCH (BODY[] {${BIG}}\r\n${makeMessage(BIG)})\r\na2 OK FETCH completed\r\n`;
  const r = await pair.run({ auth: okTo("big") }, async (ports) => {
    const t = await greet(ports.imap!);
    await t.cmd("a1 LOGIN test@example.com secret\r\n");
    await t.client.send("a2 FETCH 1 BODY[]\r\n");
    const body = await t.client.read(/a2 OK FETCH completed\r\n/, 20000);
    await t.send("a3 IDLE\r\n");
    await t.until(/EXISTS\r\n/);
    await t.send("DONE\r\n");
    await t.line();
    t.close();
    return { exact: body === expected, size: body.length, log: t.log };
  });
  assert.equal(r.nginx.transcript.exact, true);
  assert.deepEqual(r.nginx.transcript.log.slice(3), ["C: a3 IDLE\r\n", "S: + idling\r\n* 1 EXISTS\r\n", "C: DONE\r\n", "S: a3 OK IDLE terminated\r\n"]);
  assertSame(r);
});

test("latest nginx (1.29.6): a literal must be followed by SP or CRLF (1.22.1 swallowed one byte)", async () => {
  const r = await pair.run({}, async (ports) => {
    const t = await greet(ports.imap!);
    await t.cmd("a1 LOGIN {16}\r\n");
    await t.cmd("test@example.comX secret\r\n");
    t.close();
    return t.log;
  });
  assert.equal(r.nginx.transcript.at(-1), "S: a1 OK LOGIN completed\r\n");
  assert.equal(r.nginx.authRequests.length, 1);
  const p = posternRecord(r);
  assert.deepEqual(p.transcript, [
    "S: * OK IMAP4 ready\r\n",
    "C: a1 LOGIN {16}\r\n",
    "S: + OK\r\n",
    "C: test@example.comX secret\r\n",
    "S: a1 BAD invalid command\r\n",
  ]);
  assert.deepEqual(p.authRequests, []);
});

test("latest nginx (1.27.3): an untagged line before the tagged OK of the backend login is relayed", async () => {
  const r = await pair.run({ auth: okTo("untagged") }, async (ports) => {
    const t = await greet(ports.imap!);
    await t.send("a1 LOGIN test@example.com secret\r\n");
    await t.line();
    await t.line().catch(() => undefined);
    if (!t.client.closed) await t.cmd("a2 NOOP\r\n");
    t.close();
    return t.log;
  });
  // 1.22.1 fails the session.
  assert.deepEqual(r.nginx.transcript.slice(2), ["S: * BAD internal server error\r\n"]);
  const p = posternRecord(r);
  assert.deepEqual(p.transcript, [
    "S: * OK IMAP4 ready\r\n",
    "C: a1 LOGIN test@example.com secret\r\n",
    "S: * CAPABILITY IMAP4rev1 IDLE\r\n",
    "S: a1 OK logged in\r\n",
    "C: a2 NOOP\r\n",
    "S: a2 OK noop\r\n",
  ]);
  assert.deepEqual(p.backendReceived.untagged, ["a1 LOGIN {16}\r\ntest@example.com {6}\r\nsecret\r\na2 NOOP\r\n"]);
});

/** A PROXY protocol v2 header (TCP over IPv4) padded with a NOOP TLV to `total` bytes. */
function proxyV2(src: string, dst: string, sport: number, dport: number, total: number): string {
  const addr = Buffer.alloc(12);
  src.split(".").forEach((o, i) => {
    addr[i] = Number(o);
  });
  dst.split(".").forEach((o, i) => {
    addr[4 + i] = Number(o);
  });
  addr.writeUInt16BE(sport, 8);
  addr.writeUInt16BE(dport, 10);
  const pad = total - 16 - 12 - 3;
  const tlv = Buffer.alloc(3 + pad);
  tlv[0] = 0x04; // PP2_TYPE_NOOP
  tlv.writeUInt16BE(pad, 1);
  const head = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0, 0]);
  head.writeUInt16BE(12 + tlv.length, 14);
  return Buffer.concat([head, addr, tlv]).toString("latin1");
}

test("PROXY protocol v2: a small header works in both; latest nginx (1.23.3) also reads a 300-byte one", async () => {
  const r = await pair.run({ auth: okTo("pp") }, async (ports) => {
    const logs: string[][] = [];
    for (const size of [60, 300]) {
      const t = await Talk.open(ports.pp!);
      await t.client.send(proxyV2("192.0.2.77", "198.51.100.5", 40001, 143, size));
      t.note(`PROXY v2 header of ${size} bytes`);
      await t.line().catch(() => undefined);
      if (!t.client.closed) await t.cmd("a1 LOGIN test@example.com secret\r\n");
      t.close();
      logs.push(t.log);
    }
    return logs;
  });
  const n = r.nginx;
  assert.deepEqual(n.transcript[0], [
    "note: PROXY v2 header of 60 bytes",
    "S: * OK IMAP4 ready\r\n",
    "C: a1 LOGIN test@example.com secret\r\n",
    "S: a1 OK LOGIN completed\r\n",
  ]);
  assert.match(n.authRequests[0]!, /\r\nClient-IP: 192\.0\.2\.77\r\nProxy-Protocol-Addr: 192\.0\.2\.77\r\nProxy-Protocol-Port: 40001\r\n/);
  // 1.22.1 peeks 107 bytes only: the 300-byte header is broken.
  assert.equal(n.authRequests.length, 1);
  const p = posternRecord(r);
  assert.deepEqual(p.transcript, [n.transcript[0], n.transcript[0].map((l) => l.replace("60 bytes", "300 bytes"))]);
  assert.deepEqual(p.authRequests, [n.authRequests[0], n.authRequests[0]]);
});

test("IMAP SASL and literal edge cases: bad base64, `*`, tagless BAD, {0}, non-synchronising literal in a bad command", async () => {
  const r = await pair.run({ logLevels: ["info"] }, async (ports) => {
    const a = await greet(ports.imap!);
    await a.cmd("a1 AUTHENTICATE LOGIN\r\n");
    await a.cmd("!!!\r\n");
    await a.cmd("a2 AUTHENTICATE LOGIN\r\n");
    await a.cmd(`${b64("test@example.com")}\r\n`);
    await a.cmd("!!!\r\n");
    await a.cmd("a3 AUTHENTICATE PLAIN\r\n");
    await a.cmd("*\r\n");
    await a.cmd(`a4 AUTHENTICATE PLAIN ${b64("only\0one")}\r\n`);
    await a.cmd("a5 AUTHENTICATE CRAM-MD5\r\n");
    await a.cmd(`${b64("nospace")}\r\n`);
    await a.cmd("a6 AUTHENTICATE\r\n");
    await a.cmd("a7 AUTHENTICATE DIGEST-MD5\r\n");
    await a.cmd("a8 LOGIN a b c\r\n");
    await a.cmd("a9 STARTTLS\r\n");
    await a.cmd("b1 SELECT INBOX\r\n");
    // ({0} differs on purpose: an empty literal in Postern, one byte in nginx; test/hostile/injection.test.ts)
    await a.cmd("b2 LOGIN {1}\r\n");
    await a.cmd("x y\r\n");
    a.close();
    const b = await greet(ports.imap!);
    await b.send("c1 FOO {5+}\r\n");
    await b.closed();
    return [a.log, b.log];
  });
  const n = r.nginx.transcript[0]!;
  assert.deepEqual(n.filter((l) => l.startsWith("S:")).slice(1, 6), [
    "S: + VXNlcm5hbWU6\r\n",
    "S: BAD invalid command\r\n",
    "S: + VXNlcm5hbWU6\r\n",
    "S: + UGFzc3dvcmQ6\r\n",
    "S: a2 BAD invalid command\r\n",
  ]);
  assert.equal(r.nginx.transcript[1]!.at(-1), 'closed after: "c1 BAD invalid command\\r\\n"');
  assertSame(r);
});

test("IMAP auth_http reply edge cases: no status line, lower-case ok, WAIT, missing password, bad Auth-Wait, no port", async () => {
  const r = await pair.run(
    {
      logLevels: ["error"],
      auth: (env) => {
        let n = 0;
        return () => {
          const i = n++;
          const port = String(env.backends.imap);
          switch (i) {
            case 0:
              return `Auth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: ${port}\r\n\r\n`;
            case 1:
              return { headers: [["Auth-Status", "ok"]] };
            // Without Auth-Wait, nginx retries at once but keeps its WAIT flag, so every later OK is taken as WAIT too.
            case 2:
              return {
                headers: [
                  ["Auth-Status", "WAIT"],
                  ["Auth-Wait", "1"],
                ],
              };
            case 3:
              return {
                headers: [
                  ["auth-status", "OK"],
                  ["AUTH-SERVER", "127.0.0.1"],
                  ["Auth-Port", port],
                ],
              };
            case 4:
              return {
                headers: [
                  ["Auth-Status", "OK"],
                  ["Auth-Server", "127.0.0.1"],
                  ["Auth-Port", port],
                ],
              };
            // An Auth-Wait that is not a number is ignored: no wait, the session ends.
            case 5:
              return {
                headers: [
                  ["Auth-Status", "Go  away  "],
                  ["Auth-Wait", "1s"],
                ],
              };
            default:
              return {
                headers: [
                  ["Auth-Status", "OK"],
                  ["Auth-Server", "127.0.0.1"],
                ],
              };
          }
        };
      },
    },
    async (ports) => {
      const logs: string[][] = [];
      const login = async (steps: (t: Talk) => Promise<void>): Promise<void> => {
        const t = await greet(ports.imap!);
        await steps(t);
        await t.line().catch(() => undefined);
        t.close();
        logs.push(t.log);
      };
      await login((t) => t.send("a1 LOGIN test@example.com secret\r\n"));
      await login((t) => t.send("a1 LOGIN test@example.com secret\r\n"));
      await login((t) => t.send("a1 LOGIN test@example.com secret\r\n"));
      await login(async (t) => {
        const challenge = Buffer.from((await t.cmd("a1 AUTHENTICATE CRAM-MD5\r\n")).slice(2), "base64").toString("latin1");
        await t.send(`${b64(`test@example.com ${cramDigest("secret", challenge)}`)}\r\n`);
      });
      await login((t) => t.send("a1 LOGIN test@example.com secret\r\n"));
      await login((t) => t.send("a1 LOGIN test@example.com secret\r\n"));
      return logs;
    },
  );
  const n = r.nginx.transcript.map((l) => l.at(-1));
  assert.deepEqual(n, [
    "S: a1 OK LOGIN completed\r\n",
    "S: a1 NO ok\r\n",
    "S: a1 OK LOGIN completed\r\n",
    "S: * BAD internal server error\r\n",
    "S: a1 NO Go  away\r\n",
    "S: * BAD internal server error\r\n",
  ]);
  // WAIT repeats the request with the same attempt number.
  assert.equal(r.nginx.authRequests[2], r.nginx.authRequests[3]);
  assert.match(r.nginx.errorLog.join("\n"), /auth http server 127\.0\.0\.1:<auth-port> did not send password/);
  assert.match(r.nginx.errorLog.join("\n"), /auth http server 127\.0\.0\.1:<auth-port> did not send server or port/);
  assertSame(r);
});

test("IMAP error_log in a server block: its sessions are logged there, not in the main log (mail_error_log.t)", async () => {
  const r = await pair.run({ logLevels: ["info", "error"], logFiles: ["own.log"] }, async (ports) => {
    const t = await greet(ports.ownLog!);
    await t.cmd("a1 LOGIN test@example.com secret\r\n");
    await t.send("a2 LOGOUT\r\n");
    await t.closed();
    return t.log;
  });
  assert.deepEqual(r.nginx.errorLog, []);
  assert.deepEqual(
    r.nginx.logFiles["own.log"]!.map((l) => l.replace(/, client: .*/, "")),
    [
      "<time> [info] <pid>: *<conn> client 127.0.0.1:<client-port> connected to 127.0.0.1:<port:ownLog>",
      "<time> [info] <pid>: *<conn> client logged in",
      "<time> [info] <pid>: *<conn> proxied session done",
    ],
  );
  assertSame(r);
});

test("IMAP STARTTLS: capabilities, login over TLS, Auth-SSL headers, auth_http_header", async () => {
  const r = await pair.run({ logLevels: ["info"] }, async (ports) => {
    const a = await greet(ports.starttls!);
    await a.cmd("a1 CAPABILITY\r\n");
    await a.line();
    await a.cmd("a2 STARTTLS\r\n");
    await a.startTls();
    a.note(`${a.client.tlsSocket?.getProtocol()} ${a.client.tlsSocket?.getCipher().name}`);
    await a.cmd("a3 CAPABILITY\r\n");
    await a.line();
    await a.cmd("a4 STARTTLS\r\n");
    await a.cmd("a5 LOGIN test@example.com secret\r\n");
    await a.send("a6 LOGOUT\r\n");
    await a.closed();
    return [a.log];
  });
  const n = r.nginx;
  assert.deepEqual(n.transcript[0]!.slice(0, 12), [
    "S: * OK IMAP4 ready\r\n",
    "C: a1 CAPABILITY\r\n",
    "S: * CAPABILITY IMAP4 IMAP4rev1 UIDPLUS AUTH=PLAIN AUTH=LOGIN AUTH=CRAM-MD5 STARTTLS\r\n",
    "S: a1 OK completed\r\n",
    "C: a2 STARTTLS\r\n",
    "S: a2 OK completed\r\n",
    "-- TLS --",
    "note: TLSv1.3 TLS_AES_256_GCM_SHA384",
    "C: a3 CAPABILITY\r\n",
    "S: * CAPABILITY IMAP4 IMAP4rev1 UIDPLUS AUTH=PLAIN AUTH=LOGIN AUTH=CRAM-MD5\r\n",
    "S: a3 OK completed\r\n",
    "C: a4 STARTTLS\r\n",
  ]);
  assert.equal(n.transcript[0]![12], "S: a4 BAD invalid command\r\n");
  assert.match(
    n.authRequests[0]!,
    /\r\nClient-IP: 127\.0\.0\.1\r\nAuth-SSL: on\r\nAuth-SSL-Protocol: TLSv1\.3\r\nAuth-SSL-Cipher: TLS_AES_256_GCM_SHA384\r\nX-Secret: s3 cr%et\r\n\r\n$/,
  );
  assert.ok(
    n.errorLog.some((l) => /client logged in, client: 127\.0\.0\.1 using starttls, server: 127\.0\.0\.1:<port:starttls>/.test(l)),
    n.errorLog.join("\n"),
  );
  assertSame(r);
});

test("IMAP literal larger than the buffer: nginx says + OK, then BAD and close when the buffer fills; Postern answers BAD at once", async () => {
  const r = await pair.run({ logLevels: ["info"] }, async (ports) => {
    const t = await greet(ports.limits!);
    if ((await t.cmd("a1 LOGIN {300}\r\n")) === "+ OK\r\n") {
      await t.send("z".repeat(256 - "a1 LOGIN {300}\r\n".length));
    } else {
      await t.cmd("a2 LOGOUT\r\n");
    }
    await t.closed();
    return t.log;
  });
  assert.deepEqual(r.nginx.transcript.slice(2), ["S: + OK\r\n", `C: ${"z".repeat(240)}`, 'closed after: "a1 BAD invalid command\\r\\n"']);
  // Postern (stricter literal grammar): a literal that cannot fit is a syntax error, the session goes on
  assert.deepEqual(posternRecord(r).transcript.slice(2), [
    "S: a1 BAD invalid command\r\n",
    "C: a2 LOGOUT\r\n",
    "S: * BYE\r\n",
    'closed after: "a2 OK completed\\r\\n"',
  ]);
});

test("latest nginx (1.27.3): implicit TLS with the default ssl_protocols negotiates TLSv1.3 (1.22.1: TLSv1.2)", async () => {
  const r = await pair.run({}, async (ports) => {
    const t = await Talk.open(ports.imaps!, {});
    t.note(`${t.client.tlsSocket?.getProtocol()}`);
    await t.line();
    await t.cmd("b1 LOGIN test@example.com secret\r\n");
    t.close();
    return t.log;
  });
  assert.deepEqual(r.nginx.transcript, ["note: TLSv1.2", "S: * OK IMAP4 ready\r\n", "C: b1 LOGIN test@example.com secret\r\n", "S: b1 OK LOGIN completed\r\n"]);
  assert.match(r.nginx.authRequests[0]!, /\r\nAuth-SSL: on\r\nAuth-SSL-Protocol: TLSv1\.2\r\nAuth-SSL-Cipher: ECDHE-ECDSA-AES128-GCM-SHA256\r\n\r\n$/);
  const p = posternRecord(r);
  assert.deepEqual(p.transcript, ["note: TLSv1.3", ...r.nginx.transcript.slice(1)]);
  assert.match(p.authRequests[0]!, /\r\nAuth-SSL: on\r\nAuth-SSL-Protocol: TLSv1\.3\r\nAuth-SSL-Cipher: TLS_AES_256_GCM_SHA384\r\n\r\n$/);
});

test("IMAP proxy_timeout 1s: an idle proxied session is closed and logged", async () => {
  const r = await pair.run({ logLevels: ["info"] }, async (ports) => {
    const t = await greet(ports.short!);
    await t.cmd("a1 LOGIN test@example.com secret\r\n");
    await t.cmd("a2 NOOP\r\n");
    const started = Date.now();
    await t.closed(4000);
    const ms = Date.now() - started;
    t.note(ms >= 700 && ms < 2000 ? "closed 0.7-2 s after the last command" : `closed after ${ms} ms`);
    return t.log;
  });
  assert.deepEqual(r.nginx.transcript.slice(-2), ['closed after: ""', "note: closed 0.7-2 s after the last command"]);
  assert.match(
    r.nginx.errorLog.join("\n"),
    /client timed out \(110: Connection timed out\) while proxying, client: 127\.0\.0\.1, server: 127\.0\.0\.1:<port:short>, login: "test@example\.com", upstream: 127\.0\.0\.1:<backend-port:imap>/,
  );
  assertSame(r);
});

test("IMAP CRAM-MD5: the salt is made at the first attempt and reused after a refusal with Auth-Wait", async () => {
  const r = await pair.run({ auth: (env) => firstThen(1, refusal("Bad digest", 1), okTo("imap")(env)) }, async (ports) => {
    const t = await greet(ports.imap!);
    const first = await t.cmd("a1 AUTHENTICATE CRAM-MD5\r\n");
    await t.cmd(`${b64("test@example.com 00000000000000000000000000000000")}\r\n`, 3000);
    const second = await t.cmd("a2 AUTHENTICATE CRAM-MD5\r\n");
    const challenge = Buffer.from(second.slice(2), "base64").toString("latin1");
    await t.cmd(`${b64(`test@example.com ${cramDigest("secret", challenge)}`)}\r\n`);
    t.close();
    return { sameSalt: first === second, log: t.log };
  });
  assert.equal(r.nginx.transcript.sameSalt, true);
  assert.deepEqual(
    r.nginx.transcript.log.filter((l) => /^S: a\d/.test(l)),
    ["S: a1 NO Bad digest\r\n", "S: a2 OK LOGIN completed\r\n"],
  );
  assertSame(r);
});

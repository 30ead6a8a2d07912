/**
 * The failure matrix, part 2: what the client sends, one table run for
 * IMAP, POP3 and SMTP (nginx-tests mail_{imap,pop3,smtp}.t, mail_max_errors.t,
 * mail_proxy_protocol.t): pipelining, max_errors, too long commands, the
 * timeout deadline, PROXY protocol, the log context after a refusal. Every
 * row runs against nginx 1.22.1 and Postern with the same config
 * (matrix-protocols.ts); the records must be equal unless the row is named
 * `Postern is stricter`.
 */
import assert from "node:assert/strict";
import { assertSame, posternRecord, sleep, tooLongByName } from "./pair.js";
import { greet, smtpReply } from "./matrix-protocols.js";
import { dialogue, exchange, plain, row, runMatrix } from "./matrix.js";
import { b64, okToBackend, refusal, Talk } from "./talk.js";

const pipelining = row<{
  /** Several commands in one packet; `readBatch` reads up to the close. */
  batch: string;
  readBatch: (t: Talk) => Promise<void>;
  /** The transcript of the batch session after the greeting and the batch. */
  batchReplies: string[];
  /** One command split across packets (sent 50 ms apart), then the replies read by `readParts`. */
  parts: string[];
  readParts: (t: Talk) => Promise<void>;
  /** What the main backend received, per session. */
  received: string[];
}>(
  (p) => `${p.label} pipelining: several commands in one packet, one command split across packets`,
  {
    imap: {
      batch: "a1 CAPABILITY\r\na2 NOOP\r\na3 LOGIN test@example.com secret\r\na4 SELECT INBOX\r\na5 LOGOUT\r\n",
      readBatch: async (t) => {
        await t.until(/a2 .*\r\n/);
        await t.line();
        await t.closed();
      },
      batchReplies: [
        "S: * CAPABILITY IMAP4 IMAP4rev1 UIDPLUS AUTH=PLAIN AUTH=LOGIN AUTH=CRAM-MD5\r\na1 OK completed\r\na2 OK completed\r\n",
        "S: a3 OK LOGIN completed\r\n",
        'closed after: "* 1 EXISTS\\r\\na4 OK [READ-WRITE] SELECT completed\\r\\n* BYE fake imap\\r\\na5 OK LOGOUT completed\\r\\n"',
      ],
      parts: ["b1 LO", "GIN test@exa", 'mple.com "sec', 'ret"\r', "\nb2 NOOP\r\n"],
      readParts: async (t) => {
        await t.line();
        await t.line();
      },
      received: [
        "a3 LOGIN {16}\r\ntest@example.com {6}\r\nsecret\r\na4 SELECT INBOX\r\na5 LOGOUT\r\n",
        "b1 LOGIN {16}\r\ntest@example.com {6}\r\nsecret\r\nb2 NOOP\r\n",
      ],
    },
    pop3: {
      batch: "CAPA\r\nNOOP\r\nUSER test@example.com\r\nPASS secret\r\nSTAT\r\nQUIT\r\n",
      readBatch: async (t) => {
        await t.closed();
      },
      batchReplies: [
        'closed after: "+OK Capability list follows\\r\\nTOP\\r\\nUSER\\r\\nUIDL\\r\\nSASL PLAIN LOGIN CRAM-MD5 EXTERNAL\\r\\n.\\r\\n+OK\\r\\n+OK\\r\\n+OK logged in\\r\\n+OK 1 24\\r\\n+OK bye\\r\\n"',
      ],
      parts: ["US", "ER test@exam", "ple.com\r", "\nPASS sec", "ret\r\nSTAT\r\n"],
      readParts: async (t) => {
        await t.line();
        await t.line();
        await t.line();
      },
      received: ["USER test@example.com\r\nPASS secret\r\nSTAT\r\nQUIT\r\n", "USER test@example.com\r\nPASS secret\r\nSTAT\r\n"],
    },
    smtp: {
      batch: `EHLO client.example\r\nNOOP\r\nAUTH PLAIN ${plain("test@example.com", "secret")}\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nQUIT\r\n`,
      readBatch: async (t) => {
        await t.closed();
      },
      batchReplies: [
        'closed after: "250-mx.example.test\\r\\n250 AUTH PLAIN LOGIN CRAM-MD5\\r\\n250 2.0.0 OK\\r\\n235 2.0.0 OK\\r\\n250 2.1.0 Ok\\r\\n250 2.1.5 Ok\\r\\n221 2.0.0 Bye\\r\\n"',
      ],
      parts: ["EH", "LO c.example\r", "\nAUTH PL", `AIN ${plain("test@example.com", "secret")}\r\n`, "NOOP\r\n"],
      readParts: async (t) => {
        await smtpReply(t);
        await t.line();
        await t.line();
      },
      received: ["EHLO mx.example.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nQUIT\r\n", "EHLO mx.example.test\r\nNOOP\r\n"],
    },
  },
  async (pair, p, d) => {
    const r = await pair.run({}, async (ports) => {
      const a = await greet(ports[p.protocol]!);
      await a.send(d.batch);
      await d.readBatch(a);
      const b = await greet(ports[p.protocol]!);
      for (const part of d.parts) {
        await b.send(part);
        await sleep(50);
      }
      await d.readParts(b);
      b.close();
      return [a.log, b.log];
    });
    assert.deepEqual(r.nginx.transcript[0]!.slice(2), d.batchReplies);
    assert.deepEqual(r.nginx.backendReceived[p.protocol], d.received);
    assertSame(r);
  },
);

// ------------------------------------------------------------------ max_errors

const maxErrors = row<{
  /** Invalid (or refused) commands, one at a time, and their replies; then the close. */
  lines: string[];
  replies: string[];
  /** Invalid commands in one packet, and all the client reads before the close. */
  pipelined?: { send: string; closedAfter: string };
  logged?: string;
}>(
  (p) => `${p.label} max_errors 3: error replies, then close${p.protocol === "imap" ? " (also when pipelined)" : ""}`,
  {
    imap: {
      lines: ["a1 FOO", "a2 LOGIN onlyone", "a%3 NOOP", ""],
      replies: ["a1 BAD invalid command", "a2 BAD invalid command", "* BAD invalid command", "* BAD invalid command"],
      pipelined: {
        send: "b1 X\r\nb2 Y\r\nb3 Z\r\nb4 NOOP\r\n",
        closedAfter: 'closed after: "b1 BAD invalid command\\r\\nb2 BAD invalid command\\r\\nb3 BAD invalid command\\r\\n"',
      },
    },
    pop3: {
      lines: ["STAT", "PASS x", "NOOP a b c d", "LISTX"],
      replies: ["-ERR invalid command", "-ERR invalid command", "-ERR invalid command", "-ERR invalid command"],
    },
    smtp: {
      // Semantic errors (501 for HELO without a name, 530 before AUTH) are not counted.
      lines: ["VRFY x", "HELO", "MAIL FROM:<a@example.com>", "DATA", "XCLIENT ADDR=1.2.3.4", "FOOBAR"],
      replies: [
        "500 5.5.1 Invalid command",
        "501 5.5.4 Invalid argument",
        "530 5.7.1 Authentication required",
        "500 5.5.1 Invalid command",
        "500 5.5.1 Invalid command",
        "500 5.5.1 Invalid command",
      ],
      logged: 'client was rejected: "MAIL FROM:<a@example.com>__" while in auth state',
    },
  },
  async (pair, p, d) => {
    const r = await pair.run({ logLevels: ["info"] }, async (ports) => {
      const a = await greet(ports.limits!);
      await dialogue(a, d.lines);
      await a.closed();
      const logs = [a.log];
      if (d.pipelined) {
        const b = await greet(ports.limits!);
        await b.send(d.pipelined.send);
        await b.closed();
        logs.push(b.log);
      }
      return logs;
    });
    const n = r.nginx;
    assert.deepEqual(n.transcript[0], [...exchange(p.greeting, d.lines, d.replies), 'closed after: ""']);
    if (d.pipelined) assert.equal(n.transcript[1]!.at(-1), d.pipelined.closedAfter);
    assert.equal(n.errorLog.filter((l) => l.includes("client sent too many invalid commands")).length, n.transcript.length);
    if (d.logged)
      assert.ok(
        n.errorLog.some((l) => l.includes(d.logged!)),
        n.errorLog.join("\n"),
      );
    assertSame(r);
  },
);

// ------------------------------------------------------------ too long command

const tooLong = row<{
  /** Per session: commands that still fit (with their replies), then the command that fills the buffer. */
  sessions: Array<{ lines?: string[]; replies?: string[]; overlong: string; closedAfter: string }>;
  logged: string;
}>(
  (p) => `${p.label} too long command: error reply and close${p.protocol === "imap" ? ", with and without a tag read" : ""}`,
  {
    imap: {
      sessions: [
        { overlong: `a1 LOGIN ${"x".repeat(256 - 9)}`, closedAfter: 'closed after: "a1 BAD invalid command\\r\\n"' },
        { overlong: "y".repeat(256), closedAfter: 'closed after: "* BAD invalid command\\r\\n"' },
      ],
      logged: 'client sent too long command "a1 LOGIN xxx',
    },
    pop3: {
      // The command buffer is a fixed 128 bytes: a USER line of 128 bytes with its CRLF fits; 128 bytes without a line end fill it.
      sessions: [
        {
          lines: [`USER ${"u".repeat(128 - 7)}`],
          replies: ["+OK"],
          overlong: `USER ${"u".repeat(128 - 5)}`,
          closedAfter: 'closed after: "-ERR invalid command\\r\\n"',
        },
      ],
      logged: 'client sent too long command "USER uuu',
    },
    smtp: {
      sessions: [{ overlong: `HELO ${"h".repeat(256 - 5)}`, closedAfter: 'closed after: "500 5.5.1 Invalid command\\r\\n"' }],
      logged: 'client sent too long command "HELO hhh',
    },
  },
  async (pair, p, d) => {
    const r = await pair.run({ logLevels: ["info"] }, async (ports) => {
      const logs: string[][] = [];
      for (const s of d.sessions) {
        const t = await greet(ports.limits!);
        await dialogue(t, s.lines ?? []);
        await t.send(s.overlong);
        await t.closed();
        logs.push(t.log);
      }
      return logs;
    });
    d.sessions.forEach((s, i) =>
      assert.deepEqual(r.nginx.transcript[i], [...exchange(p.greeting, s.lines ?? [], s.replies ?? []), `C: ${s.overlong}`, s.closedAfter]),
    );
    assert.ok(
      r.nginx.errorLog.some((l) => l.includes(d.logged)),
      r.nginx.errorLog.join("\n"),
    );
    // Postern quotes a too long authentication command (LOGIN, USER) by its tag and name only.
    assert.deepEqual(posternRecord(r), tooLongByName(r.nginx));
  },
);

// --------------------------------------------------------------------- timeout

const timeoutDeadline = row<{ noop: (i: number) => string; firstReply: string }>(
  (p) => `${p.label} timeout 1s is a deadline from the greeting, not extended by NOOPs`,
  {
    imap: { noop: (i) => `t${i} NOOP\r\n`, firstReply: "S: t0 OK completed\r\n" },
    pop3: { noop: () => "NOOP\r\n", firstReply: "S: +OK\r\n" },
    smtp: { noop: () => "NOOP\r\n", firstReply: "S: 250 2.0.0 OK\r\n" },
  },
  async (pair, p, d) => {
    const r = await pair.run({ logLevels: ["info"] }, async (ports) => {
      const t = await Talk.open(ports.short!);
      await t.line();
      const started = Date.now();
      for (let i = 0; i < 10 && !t.client.closed; i++) {
        await t.send(d.noop(i));
        await t.line().catch(() => undefined);
        await sleep(300);
      }
      await t.closed(3000);
      const ms = Date.now() - started;
      // Transcripts: only NOOP exchanges before the close, whose count depends on timing; keep the end.
      return { closedBetween: ms >= 900 && ms < 1900 ? "0.9 s and 1.9 s" : `${ms} ms`, last: t.log.at(-1), firstReply: t.log[2] };
    });
    assert.deepEqual(r.nginx.transcript, { closedBetween: "0.9 s and 1.9 s", last: 'closed after: ""', firstReply: d.firstReply });
    assert.ok(
      r.nginx.errorLog.some((l) => l.includes("client timed out (110: Connection timed out) while in auth state")),
      r.nginx.errorLog.join("\n"),
    );
    assertSame(r);
  },
);

// -------------------------------------------------------------- PROXY protocol

const proxyProtocol = row<{
  header: string;
  /** Commands after the greeting, each with one reply line. */
  lines: string[];
  clientIp: RegExp;
  /** The PROXY header the backend gets: the client from the header, the proxy's own address. */
  toBackend: string;
  received?: string;
}>(
  (p) => `${p.label} PROXY protocol listen with set_real_ip_from, and proxy_protocol to the backend`,
  {
    imap: {
      header: "PROXY TCP4 192.0.2.10 198.51.100.5 51000 143\r\n",
      lines: ["a1 LOGIN test@example.com secret", "a2 NOOP"],
      clientIp:
        /\r\nClient-IP: 192\.0\.2\.10\r\nProxy-Protocol-Addr: 192\.0\.2\.10\r\nProxy-Protocol-Port: 51000\r\nProxy-Protocol-Server-Addr: 198\.51\.100\.5\r\nProxy-Protocol-Server-Port: 143\r\n/,
      toBackend: "PROXY TCP4 192.0.2.10 127.0.0.1 51000 <port:pp>\r\n",
      received: "a1 LOGIN {16}\r\ntest@example.com {6}\r\nsecret\r\na2 NOOP\r\n",
    },
    pop3: {
      header: "PROXY TCP6 2001:db8::1 2001:db8::2 40000 110\r\n",
      lines: ["USER test@example.com", "PASS secret", "NOOP"],
      clientIp:
        /\r\nClient-IP: 2001:db8::1\r\nProxy-Protocol-Addr: 2001:db8::1\r\nProxy-Protocol-Port: 40000\r\nProxy-Protocol-Server-Addr: 2001:db8::2\r\nProxy-Protocol-Server-Port: 110\r\n/,
      toBackend: "PROXY TCP6 2001:db8::1 127.0.0.1 40000 <port:pp>\r\n",
    },
    smtp: {
      // With xclient on, the client address also reaches the backend as XCLIENT ADDR.
      header: "PROXY TCP4 192.0.2.10 198.51.100.5 51000 25\r\n",
      lines: ["HELO client.example", `AUTH PLAIN ${plain("test@example.com", "secret")}`, "NOOP"],
      clientIp: /\r\nClient-IP: 192\.0\.2\.10\r\nClient-Host: \[UNAVAILABLE\]\r\nProxy-Protocol-Addr: 192\.0\.2\.10\r\n/,
      toBackend: "PROXY TCP4 192.0.2.10 127.0.0.1 51000 <port:pp>\r\n",
      received: "EHLO mx.example.test\r\nXCLIENT ADDR=192.0.2.10 LOGIN=test@example.com NAME=[UNAVAILABLE]\r\nHELO client.example\r\nNOOP\r\n",
    },
  },
  async (pair, p, d) => {
    const r = await pair.run({ logLevels: ["info"], auth: okToBackend("pp") }, async (ports) => {
      const t = await Talk.open(ports.pp!);
      await t.send(d.header);
      await t.line();
      await dialogue(t, d.lines);
      t.close();
      return t.log;
    });
    const n = r.nginx;
    assert.match(n.authRequests[0]!, d.clientIp);
    assert.deepEqual(n.proxyHeaders.pp, [d.toBackend]);
    if (d.received) assert.equal(n.backendReceived.pp![0], d.received);
    const clientIp = /^PROXY TCP\d (\S+) /.exec(d.header)![1]!;
    const loggedIn = `client logged in, client: ${clientIp}, server: 127.0.0.1:<port:pp>`;
    assert.ok(
      n.errorLog.some((l) => l.includes(loggedIn)),
      n.errorLog.join("\n"),
    );
    assertSame(r);
  },
);

// ------------------------------------------- log context of a refused attempt

const refusedLoginContext = row<{ refused: string; badBase64: string }>(
  (p) => `${p.label} log context keeps the login of a refused attempt (Auth-Wait) for later session lines`,
  {
    imap: { refused: "a1 LOGIN someone wrong", badBase64: "a2 AUTHENTICATE PLAIN !!!" },
    smtp: { refused: `AUTH PLAIN ${plain("someone", "wrong")}`, badBase64: "AUTH PLAIN !!!" },
  },
  async (pair, p, d) => {
    const r = await pair.run({ logLevels: ["info"], auth: () => refusal("No way", 1) }, async (ports) => {
      const t = await greet(ports.limits!);
      await dialogue(t, [d.refused], 3000);
      await dialogue(t, [d.badBase64]);
      await t.send("x".repeat(256));
      await t.closed();
      return t.log;
    });
    const log = r.nginx.errorLog.join("\n");
    assert.match(
      log,
      /client sent invalid base64 encoding in AUTH PLAIN command while in auth state, client: 127\.0\.0\.1, server: 127\.0\.0\.1:<port:limits>, login: "someone"/,
    );
    assert.match(log, /client sent too long command "x+" while in auth state, client: 127\.0\.0\.1, server: 127\.0\.0\.1:<port:limits>, login: "someone"/);
    assertSame(r);
  },
);

// ------------------------------------------- EXTERNAL with an initial response

const externalNeedsConfig = row<{ port: string; lines: string[]; authRequest: RegExp; posternReplies: string[] }>(
  (p) =>
    `Postern is stricter: ${p.label} ${p.protocol === "imap" ? "AUTHENTICATE" : "AUTH"} EXTERNAL with an initial response needs ${p.protocol}_auth external`,
  {
    // imap_auth (plain login cram-md5) and the short POP3 server (no pop3_auth) leave EXTERNAL out.
    imap: {
      port: "imap",
      lines: [`a1 AUTHENTICATE EXTERNAL ${b64("test@example.com")}`, "a2 NOOP"],
      authRequest: /^Auth-Method: external\r\nAuth-User: test@example\.com\r\nAuth-Pass: \r\n/m,
      posternReplies: ["a1 BAD invalid command", "a2 OK completed"],
    },
    pop3: {
      port: "short",
      lines: [`AUTH EXTERNAL ${b64("test@example.com")}`, "NOOP"],
      authRequest: /^Auth-Method: external\r\n/m,
      posternReplies: ["-ERR invalid command", "+OK"],
    },
  },
  async (pair, p, d) => {
    const r = await pair.run({}, async (ports) => {
      const t = await greet(ports[d.port]!);
      await t.cmd(`${d.lines[0]}\r\n`);
      await t.cmd(`${d.lines[1]}\r\n`).catch(() => undefined);
      t.close();
      return t.log;
    });
    // nginx 1.22.1 (and latest) start auth_http with Auth-Method external.
    assert.match(r.nginx.authRequests[0]!, d.authRequest);
    const pr = posternRecord(r);
    assert.deepEqual(pr.transcript, exchange(p.greeting, d.lines, d.posternReplies));
    assert.deepEqual(pr.authRequests, []);
  },
);

runMatrix([pipelining, maxErrors, tooLong, timeoutDeadline, proxyProtocol, refusedLoginContext, externalNeedsConfig]);

/**
 * Injection through the values Postern copies into lines of its own
 * (issue 10, items 5-8): a login or password with CR, LF or NUL, control
 * bytes in SMTP's HELO/MAIL/RCPT, log lines forged through a login, and the
 * IMAP literal grammar. Each case runs over real sockets against a running
 * Postern whose auth server accepts ANY login and whose fake backends record
 * every byte: a refused value must reach neither, the client gets the
 * protocol's reply, and the error log holds one info line per refusal with
 * nothing forged and no password.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { MailClient } from "../support/client.js";
import { startFakeAuth, type AuthHandler, type FakeAuth } from "../support/fake-auth.js";
import { startFakeImap, startFakePop3, startFakeSmtp, type FakeBackend } from "../support/fake-backend.js";
import type { MailProxyProcess } from "../support/mail-proxy.js";
import { startNginx } from "../support/nginx.js";
import { startPostern } from "../support/postern.js";
import { freePorts } from "../support/ports.js";
import type { ProxyStarter } from "../support/differential.js";
import { sleep } from "./env.js";

const b64 = (s: string): string => Buffer.from(s, "latin1").toString("base64");
/** A 32-character digest for APOP / CRAM-MD5 (the auth server accepts anything). */
const DIGEST = "0123456789abcdef0123456789abcdef";
/** Marks a forged log line: it must never start a line of the error log. */
const FORGED = "2031/01/01 00:00:00 [emerg] 1#1: FORGED";

type Protocol = "imap" | "pop3" | "smtp";
type PortName = Protocol | "smtpNone";

interface Bed {
  proxy: MailProxyProcess;
  auth: FakeAuth;
  backends: Record<Protocol, FakeBackend>;
  ports: Record<PortName, number>;
  stop(): Promise<void>;
}

/** A proxy with every SASL mechanism on, an auth server that accepts anyone, and recording backends. */
async function startInjectionBed(start: ProxyStarter = startPostern, auth?: (b: Record<Protocol, FakeBackend>) => AuthHandler): Promise<Bed> {
  const backends = { imap: await startFakeImap(), pop3: await startFakePop3(), smtp: await startFakeSmtp() };
  const acceptAll: AuthHandler = (request) => {
    const protocol = request.header("Auth-Protocol") as Protocol;
    return {
      headers: [
        ["Auth-Status", "OK"],
        ["Auth-Server", "127.0.0.1"],
        ["Auth-Port", String(backends[protocol].port)],
        ["Auth-Pass", "backend-pass"],
      ],
    };
  };
  const fakeAuth = await startFakeAuth(auth ? auth(backends) : acceptAll);
  const [imap, pop3, smtp, smtpNone] = await freePorts(4);
  const ports = { imap: imap!, pop3: pop3!, smtp: smtp!, smtpNone: smtpNone! };
  const block = [
    `  auth_http ${fakeAuth.url};`,
    "  error_log error.log info;",
    "  imap_auth plain login cram-md5 external;",
    "  pop3_auth plain apop cram-md5 external;",
    "  smtp_auth plain login cram-md5 external;",
    "  timeout 5s;",
    `  server { listen 127.0.0.1:${ports.imap}; protocol imap; }`,
    `  server { listen 127.0.0.1:${ports.pop3}; protocol pop3; }`,
    `  server { listen 127.0.0.1:${ports.smtp}; protocol smtp; }`,
    `  server { listen 127.0.0.1:${ports.smtpNone}; protocol smtp; smtp_auth none; xclient off; }`,
  ].join("\n");
  const proxy = await start(block);
  return {
    proxy,
    auth: fakeAuth,
    backends,
    ports,
    async stop(): Promise<void> {
      await proxy.stop();
      await fakeAuth.close();
      await Promise.all(Object.values(backends).map((b) => b.close()));
    },
  };
}

/** One client turn: send, then read until `expect` matches (a string must be the exact reply). */
type Turn = readonly [send: string, expect: RegExp | string];

async function talk(port: number, turns: readonly Turn[]): Promise<MailClient> {
  const c = await MailClient.connect({ port, timeoutMs: 4000 });
  await c.readLine();
  for (const [send, expect] of turns) {
    await c.send(send);
    if (typeof expect === "string") assert.equal(await c.read(/\n/), expect, c.transcriptText());
    else assert.match(await c.read(expect), expect, c.transcriptText());
  }
  return c;
}

/** Every line of the error log must be a log line: a timestamp, a level, a pid. */
function assertNoForgedLine(log: string): void {
  for (const line of log.split("\n").filter((l) => l !== "")) {
    assert.match(line, /^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d \[[a-z]+\] \d+#\d+: /, `not a log line: ${JSON.stringify(line)}`);
  }
  assert.ok(!log.split("\n").some((l) => l.startsWith(FORGED)), "a forged line");
}

interface CredentialCase {
  readonly name: string;
  readonly port: Protocol;
  readonly turns: readonly Turn[];
  /** The info line Postern writes for the refusal. */
  readonly log: string;
}

const IMAP_BAD = /^(a1 )?BAD invalid command\r\n/m;
const POP3_ERR = "-ERR invalid command\r\n";
const SMTP_500 = "500 5.5.1 Invalid command\r\n";
/** The headline attack: a second POP3 command smuggled into the backend's USER line. */
const SMUGGLED = "user\r\nDELE 1";
/** The same for CRAM-MD5, whose login ends at the first space. */
const SMUGGLED_WORD = "user\r\nQUIT";

const CREDENTIAL_CASES: readonly CredentialCase[] = [
  // POP3
  {
    name: "POP3 AUTH PLAIN (initial response), CR LF in the login",
    port: "pop3",
    turns: [[`AUTH PLAIN ${b64(`\0${SMUGGLED}\0pass`)}\r\n`, POP3_ERR]],
    log: "client sent invalid login in AUTH PLAIN command",
  },
  {
    name: "POP3 AUTH PLAIN (continuation), CR LF in the password",
    port: "pop3",
    turns: [
      ["AUTH PLAIN\r\n", "+ \r\n"],
      [`${b64("\0user\0pass\r\nDELE 1")}\r\n`, POP3_ERR],
    ],
    log: "client sent invalid password in AUTH PLAIN command",
  },
  {
    name: "POP3 AUTH PLAIN, NUL in the password",
    port: "pop3",
    turns: [[`AUTH PLAIN ${b64("\0user\0pa\0ss")}\r\n`, POP3_ERR]],
    log: "client sent invalid password in AUTH PLAIN command",
  },
  {
    name: "POP3 AUTH LOGIN, CR LF in the user name",
    port: "pop3",
    turns: [
      ["AUTH LOGIN\r\n", "+ VXNlcm5hbWU6\r\n"],
      [`${b64(SMUGGLED)}\r\n`, POP3_ERR],
    ],
    log: "client sent invalid login in AUTH LOGIN command",
  },
  {
    name: "POP3 AUTH LOGIN, LF in the password",
    port: "pop3",
    turns: [
      [`AUTH LOGIN ${b64("user")}\r\n`, "+ UGFzc3dvcmQ6\r\n"],
      [`${b64("pass\nDELE 1")}\r\n`, POP3_ERR],
    ],
    log: "client sent invalid password in AUTH LOGIN command",
  },
  {
    name: "POP3 AUTH CRAM-MD5, CR LF in the login",
    port: "pop3",
    turns: [
      ["AUTH CRAM-MD5\r\n", /^\+ \S+\r\n/],
      [`${b64(`${SMUGGLED_WORD} ${DIGEST}`)}\r\n`, POP3_ERR],
    ],
    log: "client sent invalid login in AUTH CRAM-MD5 command",
  },
  {
    name: "POP3 AUTH EXTERNAL, CR LF in the identity",
    port: "pop3",
    turns: [[`AUTH EXTERNAL ${b64(SMUGGLED)}\r\n`, POP3_ERR]],
    log: "client sent invalid login in AUTH EXTERNAL command",
  },
  { name: "POP3 USER with NUL", port: "pop3", turns: [["USER us\0er\r\n", POP3_ERR]], log: "client sent invalid login in USER command" },
  {
    name: "POP3 PASS with NUL",
    port: "pop3",
    turns: [
      ["USER user\r\n", "+OK\r\n"],
      ["PASS pa\0ss\r\n", POP3_ERR],
    ],
    log: "client sent invalid password in PASS command",
  },
  { name: "POP3 APOP with NUL in the login", port: "pop3", turns: [[`APOP us\0er ${DIGEST}\r\n`, POP3_ERR]], log: "client sent invalid login in APOP command" },
  // IMAP
  {
    name: "IMAP LOGIN, CR LF inside a literal login",
    port: "imap",
    turns: [
      ["a1 LOGIN {12}\r\n", "+ OK\r\n"],
      ["user\r\na2 XYZ {4}\r\n", "+ OK\r\n"],
      ["pass\r\n", IMAP_BAD],
    ],
    log: "client sent invalid login in LOGIN command",
  },
  {
    name: "IMAP LOGIN, CR LF inside a literal password",
    port: "imap",
    turns: [
      ["a1 LOGIN user {17}\r\n", "+ OK\r\n"],
      ["pass\r\na2 DELETE x\r\n", IMAP_BAD],
    ],
    log: "client sent invalid password in LOGIN command",
  },
  {
    name: "IMAP LOGIN, NUL inside a quoted login",
    port: "imap",
    turns: [['a1 LOGIN "us\0er" pass\r\n', IMAP_BAD]],
    log: "client sent invalid login in LOGIN command",
  },
  {
    name: "IMAP AUTHENTICATE PLAIN, CR LF in the login",
    port: "imap",
    turns: [[`a1 AUTHENTICATE PLAIN ${b64(`\0${SMUGGLED}\0pass`)}\r\n`, IMAP_BAD]],
    log: "client sent invalid login in AUTH PLAIN command",
  },
  {
    name: "IMAP AUTHENTICATE LOGIN, CR LF in the password",
    port: "imap",
    turns: [
      ["a1 AUTHENTICATE LOGIN\r\n", "+ VXNlcm5hbWU6\r\n"],
      [`${b64("user")}\r\n`, "+ UGFzc3dvcmQ6\r\n"],
      [`${b64("pass\r\nx")}\r\n`, IMAP_BAD],
    ],
    log: "client sent invalid password in AUTH LOGIN command",
  },
  {
    name: "IMAP AUTHENTICATE CRAM-MD5, CR LF in the login",
    port: "imap",
    turns: [
      ["a1 AUTHENTICATE CRAM-MD5\r\n", /^\+ \S+\r\n/],
      [`${b64(`${SMUGGLED_WORD} ${DIGEST}`)}\r\n`, IMAP_BAD],
    ],
    log: "client sent invalid login in AUTH CRAM-MD5 command",
  },
  {
    name: "IMAP AUTHENTICATE EXTERNAL, NUL in the identity",
    port: "imap",
    turns: [
      ["a1 AUTHENTICATE EXTERNAL\r\n", "+ VXNlcm5hbWU6\r\n"],
      [`${b64("us\0er")}\r\n`, IMAP_BAD],
    ],
    log: "client sent invalid login in AUTH EXTERNAL command",
  },
  // SMTP
  {
    name: "SMTP AUTH PLAIN, CR LF in the login",
    port: "smtp",
    turns: [
      ["EHLO c\r\n", /^250 .*\r\n/m],
      [`AUTH PLAIN ${b64(`\0${SMUGGLED}\0pass`)}\r\n`, SMTP_500],
    ],
    log: "client sent invalid login in AUTH PLAIN command",
  },
  {
    name: "SMTP AUTH PLAIN (continuation), NUL in the password",
    port: "smtp",
    turns: [
      ["EHLO c\r\n", /^250 .*\r\n/m],
      ["AUTH PLAIN\r\n", "334 \r\n"],
      [`${b64("\0user\0pa\0ss")}\r\n`, SMTP_500],
    ],
    log: "client sent invalid password in AUTH PLAIN command",
  },
  {
    name: "SMTP AUTH LOGIN, CR LF in the user name",
    port: "smtp",
    turns: [
      ["EHLO c\r\n", /^250 .*\r\n/m],
      ["AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n"],
      [`${b64(SMUGGLED)}\r\n`, SMTP_500],
    ],
    log: "client sent invalid login in AUTH LOGIN command",
  },
  {
    name: "SMTP AUTH LOGIN, CR in the password",
    port: "smtp",
    turns: [
      ["EHLO c\r\n", /^250 .*\r\n/m],
      [`AUTH LOGIN ${b64("user")}\r\n`, "334 UGFzc3dvcmQ6\r\n"],
      [`${b64("pass\rx")}\r\n`, SMTP_500],
    ],
    log: "client sent invalid password in AUTH LOGIN command",
  },
  {
    name: "SMTP AUTH CRAM-MD5, NUL in the login",
    port: "smtp",
    turns: [
      ["EHLO c\r\n", /^250 .*\r\n/m],
      ["AUTH CRAM-MD5\r\n", /^334 \S+\r\n/],
      [`${b64(`us\0er ${DIGEST}`)}\r\n`, SMTP_500],
    ],
    log: "client sent invalid login in AUTH CRAM-MD5 command",
  },
  {
    name: "SMTP AUTH EXTERNAL, CR LF in the identity",
    port: "smtp",
    turns: [
      ["EHLO c\r\n", /^250 .*\r\n/m],
      [`AUTH EXTERNAL ${b64(SMUGGLED)}\r\n`, SMTP_500],
    ],
    log: "client sent invalid login in AUTH EXTERNAL command",
  },
];

describe("CR, LF and NUL in credentials never reach the auth server or a backend", () => {
  let bed: Bed;
  before(async () => {
    bed = await startInjectionBed();
  });
  after(async () => {
    await bed?.stop();
  });

  for (const c of CREDENTIAL_CASES) {
    test(c.name, async () => {
      const requestsBefore = bed.auth.requests.length;
      const connectionsBefore = bed.backends[c.port].connections.length;
      const client = await talk(bed.ports[c.port], c.turns);
      try {
        // the session goes on: a clean login still works on the same connection
        if (c.port === "pop3") await talk2(client, [["QUIT\r\n", "+OK\r\n"]]);
        if (c.port === "imap") await talk2(client, [["z9 NOOP\r\n", /^z9 OK .*\r\n/m]]);
        if (c.port === "smtp") await talk2(client, [["QUIT\r\n", /^221 /]]);
      } finally {
        client.close();
      }
      await sleep(100);
      assert.equal(bed.auth.requests.length, requestsBefore, `the auth server got a request:\n${bed.auth.requests.slice(requestsBefore).join("\n")}`);
      assert.equal(bed.backends[c.port].connections.length, connectionsBefore, "a backend was connected to");
      const log = bed.proxy.errorLog();
      assert.ok(
        log.split("\n").some((l) => l.includes(` [info] `) && l.includes(c.log)),
        `no info line "${c.log}":\n${log.slice(-1500)}`,
      );
      assertNoForgedLine(log);
    });
  }

  test("a clean login on the same proxy reaches the auth server and the backend (the bed works)", async () => {
    const requestsBefore = bed.auth.requests.length;
    const c = await talk(bed.ports.pop3, [[`AUTH PLAIN ${b64("\0user\0pass")}\r\n`, /^\+OK/]]);
    c.close();
    assert.equal(bed.auth.requests.length, requestsBefore + 1);
    assert.equal(bed.auth.parsed.at(-1)!.header("Auth-User"), "user");
  });
});

async function talk2(c: MailClient, turns: readonly Turn[]): Promise<void> {
  for (const [send, expect] of turns) {
    await c.send(send);
    if (typeof expect === "string") assert.equal(await c.read(/\n/), expect, c.transcriptText());
    else assert.match(await c.read(expect), expect, c.transcriptText());
  }
}

describe("Auth-User / Auth-Pass from the auth server with NUL never reach a backend", () => {
  for (const [protocol, header, value, internal] of [
    ["pop3", "Auth-User", "victim\0x", "-ERR internal server error\r\n"],
    ["imap", "Auth-Pass", "pass\0x", "* BAD internal server error\r\n"],
  ] as const) {
    test(`${protocol}: ${header} ${JSON.stringify(value)} -> internal error, logged, no backend connection`, async () => {
      const bed = await startInjectionBed(startPostern, (backends) => (request) => ({
        headers: [
          ["Auth-Status", "OK"],
          ["Auth-Server", "127.0.0.1"],
          ["Auth-Port", String(backends[request.header("Auth-Protocol") as Protocol].port)],
          [header, value],
        ],
      }));
      try {
        const login =
          protocol === "pop3"
            ? ([
                ["USER user\r\n", "+OK\r\n"],
                ["PASS pass\r\n", internal],
              ] as const)
            : ([["a1 LOGIN user pass\r\n", internal]] as const);
        const c = await talk(bed.ports[protocol], login);
        await c.expectClosed();
        c.close();
        assert.equal(bed.auth.requests.length, 1);
        assert.equal(bed.backends[protocol].connections.length, 0, "the backend was connected to");
        const field = header === "Auth-User" ? "login" : "password";
        assert.match(
          bed.proxy.errorLog(),
          new RegExp(`\\[error\\] .*auth http server 127\\.0\\.0\\.1:\\d+ sent invalid ${field} with CR, LF or NUL while in http auth state`),
        );
      } finally {
        await bed.stop();
      }
    });
  }
});

describe("SMTP: control bytes in HELO, EHLO, MAIL and RCPT are refused with 501", () => {
  let bed: Bed;
  before(async () => {
    bed = await startInjectionBed();
  });
  after(async () => {
    await bed?.stop();
  });

  test("NUL, TAB and DEL get 501 5.5.4; clean values reach Auth-SMTP-* and the backend, nothing else does", async () => {
    const c = await talk(bed.ports.smtpNone, [
      ["EHLO a\0b\r\n", "501 5.5.4 Invalid argument\r\n"],
      ["HELO a\tb\r\n", "501 5.5.4 Invalid argument\r\n"],
      ["EHLO a\x7fb\r\n", "501 5.5.4 Invalid argument\r\n"],
      ["EHLO client.example\r\n", /^250 .*\r\n/m],
      ["MAIL FROM:<a\tb@example.com>\r\n", "501 5.5.4 Invalid argument\r\n"],
      ["MAIL FROM:<a@example.com> X=\x01\r\n", "501 5.5.4 Invalid argument\r\n"],
      ["MAIL FROM:<a@example.com>\r\n", "250 2.0.0 OK\r\n"],
      ["RCPT TO:<b\0@example.com>\r\n", "501 5.5.4 Invalid argument\r\n"],
      ["RCPT TO:<b@example.com>\r\n", /^250 /],
    ]);
    c.close();
    assert.equal(bed.auth.requests.length, 1);
    const request = bed.auth.parsed[0]!;
    assert.equal(request.header("Auth-SMTP-Helo"), "client.example");
    assert.equal(request.header("Auth-SMTP-From"), "MAIL FROM:<a@example.com>");
    assert.equal(request.header("Auth-SMTP-To"), "RCPT TO:<b@example.com>");
    assert.ok(!/[\0\t\x7f\x01]/.test(bed.auth.requests[0]!), JSON.stringify(bed.auth.requests[0]));
    const [backend] = await bed.backends.smtp.waitForConnections(1);
    assert.ok(!/[\0\t\x7f\x01]/.test(backend!.received.toString("latin1")), JSON.stringify(backend!.received.toString("latin1")));
    const log = bed.proxy.errorLog();
    for (const verb of ["EHLO", "HELO", "MAIL", "RCPT"]) assert.match(log, new RegExp(`\\[info\\] .*client sent invalid argument in ${verb} command`));
  });
});

describe("log lines never carry a forged line, a raw control byte or a password", () => {
  let bed: Bed;
  before(async () => {
    bed = await startInjectionBed();
  });
  after(async () => {
    await bed?.stop();
  });

  test("a login with CR LF (kept by nginx's CRAM-MD5 quirk) is escaped in the log context, not written as a new line", async () => {
    // the CRAM-MD5 login ends at its first space: the forged line has none, and the bad digest keeps the login in the log context
    const forged = "2031/01/01\t00:00:00\t[emerg]\t1#1:\tFORGED";
    const c = await talk(bed.ports.imap, [
      ["a1 AUTHENTICATE CRAM-MD5\r\n", /^\+ \S+\r\n/],
      [`${b64(`x\r\n${forged} short`)}\r\n`, IMAP_BAD],
    ]);
    c.close();
    await sleep(100);
    const log = bed.proxy.errorLog();
    assertNoForgedLine(log);
    assert.ok(!log.split("\n").some((l) => l.startsWith("2031/")), "a forged line");
    assert.match(log, /invalid CRAM-MD5 hash .*login: "x\\x0D\\x0A2031\/01\/01\\x0900:00:00\\x09\[emerg\]\\x091#1:\\x09FORGED"/);
  });

  test("a quote in a login cannot close the log's quoted field", async () => {
    const c = await talk(bed.ports.pop3, [
      ['USER a", upstream: 6.6.6.6:25\r\n', "+OK\r\n"],
      ["QUIT\r\n", "+OK\r\n"],
    ]);
    c.close();
    const c2 = await talk(bed.ports.pop3, [
      ['USER b"x\r\n', "+OK\r\n"],
      [`PASS ${"p".repeat(200)}\r\n`, POP3_ERR],
    ]);
    await c2.expectClosed();
    c2.close();
    await sleep(100);
    const log = bed.proxy.errorLog();
    assert.match(log, /login: "b\\x22x"/);
    assert.ok(!log.includes('b"x'), "a raw quote in a login");
  });

  test("SMTP: a rejected MAIL line and an early talker's bytes are logged escaped", async () => {
    const c = await talk(bed.ports.smtp, [
      ["EHLO c\r\n", /^250 .*\r\n/m],
      [`MAIL FROM:<\x1b[31m${FORGED}>\r\n`, /^530 /],
    ]);
    c.close();
    await sleep(100);
    const log = bed.proxy.errorLog();
    assertNoForgedLine(log);
    assert.ok(!log.includes("\x1b"), "a raw ESC in the log");
    assert.match(log, /client was rejected: "MAIL FROM:<\\x1B\[31m2031/);
  });

  test("no alert or crit line (the forged text stays inside info lines)", () => {
    assert.deepEqual(
      bed.proxy
        .errorLog()
        .split("\n")
        .filter((l) => /^\S+ \S+ \[(alert|crit|emerg)\] /.test(l)),
      [],
    );
  });
});

describe("IMAP literal grammar over a socket (Postern vs nginx)", () => {
  /** Runs the literal probes against one proxy; returns what the client saw and the auth requests. */
  async function probe(start: ProxyStarter): Promise<{ replies: string[]; authUsers: (string | undefined)[]; authPasses: (string | undefined)[] }> {
    const bed = await startInjectionBed(start);
    try {
      const replies: string[] = [];
      // `{}`: nginx reads it as {0}, says + OK and takes the next byte (E) as the login
      const c1 = await MailClient.connect({ port: bed.ports.imap, timeoutMs: 3000 });
      await c1.readLine();
      await c1.send("a1 LOGIN {}\r\n");
      replies.push(await c1.readLine());
      if (replies[0] === "+ OK\r\n") await c1.send("E pass\r\n");
      await c1.readAll(300);
      c1.close();
      // `{0}`: an empty literal; nginx takes the CR that ends the line as the password
      const c2 = await MailClient.connect({ port: bed.ports.imap, timeoutMs: 3000 });
      await c2.readLine();
      await c2.send("a2 LOGIN user {0}\r\n");
      replies.push(await c2.readLine());
      await c2.send("\r\n");
      replies.push(await c2.readLine());
      c2.close();
      // a length past 2^64 and one past the buffer
      const c3 = await MailClient.connect({ port: bed.ports.imap, timeoutMs: 3000 });
      await c3.readLine();
      await c3.send("a3 LOGIN {18446744073709551619}\r\n");
      replies.push(await c3.readAll(300));
      await c3.send("a4 LOGIN {99999}\r\n");
      replies.push(await c3.readAll(300));
      c3.close();
      await sleep(100);
      return { replies, authUsers: bed.auth.parsed.map((r) => r.header("Auth-User")), authPasses: bed.auth.parsed.map((r) => r.header("Auth-Pass")) };
    } finally {
      await bed.stop();
    }
  }

  test("Postern: {} and oversized lengths are BAD at once, {0} is an empty literal; nginx differs (documented)", async () => {
    const ours = await probe(startPostern);
    assert.equal(ours.replies[0], "a1 BAD invalid command\r\n");
    assert.equal(ours.replies[1], "+ OK\r\n");
    assert.match(ours.replies[2]!, /^a2 OK /, "the backend's reply to the login");
    assert.deepEqual(ours.replies.slice(3), ["a3 BAD invalid command\r\n", "a4 BAD invalid command\r\n"]);
    assert.deepEqual(ours.authUsers, ["user"], "only the {0} login reached the auth server");
    assert.deepEqual(ours.authPasses, [""], "with an empty password");
    const nginx = await probe(startNginx);
    // nginx 1.22.1: + OK for {}, the login E reaches the auth server, {0} takes the CR as the password
    assert.equal(nginx.replies[0], "+ OK\r\n", "nginx reads {} as a literal");
    assert.equal(nginx.replies[1], "+ OK\r\n");
    assert.ok(nginx.authUsers.includes("E"), JSON.stringify(nginx.authUsers));
    assert.ok(nginx.authPasses.includes("%0D"), JSON.stringify(nginx.authPasses));
    assert.equal(nginx.replies[3], "+ OK\r\n", "nginx 1.22.1 wraps 18446744073709551619 to 3");
  });
});

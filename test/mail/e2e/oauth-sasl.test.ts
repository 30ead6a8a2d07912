/**
 * OAUTHBEARER and XOAUTH2 through a real Postern (raw sockets), with the
 * interface of nginx PR #1590: the mechanism in Auth-Method, the user in
 * Auth-User, the token in Auth-Pass; Auth-Error-SASL sent as the challenge
 * after Auth-Wait, the refusal after the client's dummy response; bad input
 * refused. The error log runs at debug: no token may appear in it.
 * nginx 1.22.1 has none of this (`imap_auth oauthbearer` is a -t error there:
 * test/mail/e2e/oauth-nginx.test.ts).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { MailClient } from "../../support/client.js";
import { startFakeAuth, type FakeAuth } from "../../support/fake-auth.js";
import { startFakeImap, startFakePop3, startFakeSmtp, type FakeBackend } from "../../support/fake-backend.js";
import type { MailProxyProcess } from "../../support/mail-proxy.js";
import { freePorts } from "../../support/ports.js";
import { startPostern } from "../../support/postern.js";

const USER = "test@example.com";
const GOOD = "goodToken-1.2_3~4+5/6=";
const SASL_FAIL = "saslFailToken";
const OK_WITH_SASL = "okWithSaslToken";
const BAD_SASL = "badSaslHeaderToken";
const NO_WAIT = "saslNoWaitToken";
/** RFC 7628 §3.2.2's example error, base64 (the PR's test value). */
const SASL_ERROR = Buffer.from('{"schemes":"Bearer","status":"400"}').toString("base64");

const b64 = (s: string): string => Buffer.from(s, "latin1").toString("base64");
const bearer = (token: string, user = USER): string => b64(`n,a=${user},\x01auth=Bearer ${token}\x01\x01`);
const xoauth2 = (token: string, user = USER): string => b64(`user=${user}\x01auth=Bearer ${token}\x01\x01`);

let auth: FakeAuth;
let imap: FakeBackend;
let pop3: FakeBackend;
let smtp: FakeBackend;
let postern: MailProxyProcess;
let ports: { imap: number; pop3: number; smtp: number; pop3Small: number };

before(async () => {
  [imap, pop3, smtp] = await Promise.all([startFakeImap(), startFakePop3(), startFakeSmtp()]);
  auth = await startFakeAuth((req) => {
    const pass = req.header("Auth-Pass") ?? "";
    const protocol = req.header("Auth-Protocol");
    const port = protocol === "imap" ? imap.port : protocol === "pop3" ? pop3.port : smtp.port;
    const ok: Array<[string, string]> = [
      ["Auth-Status", "OK"],
      ["Auth-Server", "127.0.0.1"],
      ["Auth-Port", String(port)],
      ["Auth-Pass", "backend-secret"],
    ];
    if (pass === GOOD) return { headers: ok };
    if (pass === OK_WITH_SASL) return { headers: [...ok, ["Auth-Error-SASL", SASL_ERROR]] };
    if (pass === SASL_FAIL)
      return {
        headers: [
          ["Auth-Status", "auth-failed"],
          ["Auth-Wait", "1"],
          ["Auth-Error-SASL", SASL_ERROR],
        ],
      };
    if (pass === NO_WAIT)
      return {
        headers: [
          ["Auth-Status", "auth-failed"],
          ["Auth-Error-SASL", SASL_ERROR],
        ],
      };
    if (pass === BAD_SASL)
      return {
        headers: [
          ["Auth-Status", "auth-failed"],
          ["Auth-Wait", "1"],
          ["Auth-Error-SASL", "not base64!"],
        ],
      };
    return {
      headers: [
        ["Auth-Status", "auth-failed"],
        ["Auth-Wait", "1"],
      ],
    };
  });
  const [i, p, s, ps] = (await freePorts(4)) as [number, number, number, number];
  ports = { imap: i, pop3: p, smtp: s, pop3Small: ps };
  postern = await startPostern(`
    auth_http ${auth.url};
    timeout 5s;
    server { listen 127.0.0.1:${i}; protocol imap; imap_auth plain oauthbearer xoauth2; }
    server { listen 127.0.0.1:${p}; protocol pop3; pop3_auth plain oauthbearer xoauth2; }
    server { listen 127.0.0.1:${ps}; protocol pop3; pop3_auth plain oauthbearer xoauth2; pop3_client_buffer 128; }
    server { listen 127.0.0.1:${s}; protocol smtp; smtp_auth plain oauthbearer xoauth2; }
  `);
});

after(async () => {
  const log = postern?.errorLog() ?? "";
  await postern?.stop();
  await Promise.all([auth?.close(), imap?.close(), pop3?.close(), smtp?.close()]);
  // the debug log saw every exchange above: no token, in clear or in its base64 forms
  for (const token of [GOOD, SASL_FAIL, OK_WITH_SASL, BAD_SASL, NO_WAIT]) {
    assert.ok(!log.includes(token), `token ${token} in the error log`);
    assert.ok(!log.includes(bearer(token)) && !log.includes(xoauth2(token)), `base64 of ${token} in the error log`);
  }
});

async function connect(port: number): Promise<MailClient> {
  const c = await MailClient.connect({ port });
  await c.readLine();
  return c;
}

async function smtpConnect(): Promise<MailClient> {
  const c = await connect(ports.smtp);
  await c.send("EHLO client.example\r\n");
  await c.read(/^250 .*\r\n/m);
  return c;
}

describe("capabilities", () => {
  test("IMAP CAPABILITY, POP3 CAPA and AUTH, SMTP EHLO name OAUTHBEARER and XOAUTH2 after the other mechanisms", async () => {
    const i = await connect(ports.imap);
    await i.send("1 CAPABILITY\r\n");
    assert.equal(await i.read(/1 OK.*\r\n/), "* CAPABILITY IMAP4 IMAP4rev1 UIDPLUS AUTH=PLAIN AUTH=OAUTHBEARER AUTH=XOAUTH2\r\n1 OK completed\r\n");
    i.close();
    const p = await connect(ports.pop3);
    await p.send("CAPA\r\n");
    assert.match(await p.read(/^\.\r\n/m), /\r\nSASL PLAIN LOGIN OAUTHBEARER XOAUTH2\r\n/);
    await p.send("AUTH\r\n");
    assert.equal(await p.read(/^\.\r\n/m), "+OK methods supported:\r\nPLAIN\r\nLOGIN\r\nOAUTHBEARER\r\nXOAUTH2\r\n.\r\n");
    p.close();
    const s = await connect(ports.smtp);
    await s.send("EHLO client.example\r\n");
    assert.match(await s.read(/^250 .*\r\n/m), /250 AUTH PLAIN OAUTHBEARER XOAUTH2\r\n$/);
    s.close();
  });
});

describe("logins", () => {
  test("IMAP AUTHENTICATE OAUTHBEARER with an initial response: Auth-Method, Auth-User and Auth-Pass as nginx PR #1590 sends them", async () => {
    const before = auth.parsed.length;
    const c = await connect(ports.imap);
    await c.send(`a1 AUTHENTICATE OAUTHBEARER ${bearer(GOOD, "te=3Dst=2C@example.com")}\r\n`);
    assert.match(await c.readLine(), /^a1 OK/);
    c.close();
    const req = auth.parsed[before]!;
    assert.equal(req.header("Auth-Method"), "oauthbearer");
    assert.equal(req.header("Auth-User"), "te=st,@example.com");
    assert.equal(req.header("Auth-Pass"), GOOD);
    assert.equal(req.header("Auth-Protocol"), "imap");
  });

  test("IMAP AUTHENTICATE XOAUTH2 without an initial response: an empty challenge, then the response", async () => {
    const before = auth.parsed.length;
    const c = await connect(ports.imap);
    await c.send("a1 AUTHENTICATE XOAUTH2\r\n");
    assert.equal(await c.readLine(), "+ \r\n");
    await c.send(`${xoauth2(GOOD)}\r\n`);
    assert.match(await c.readLine(), /^a1 OK/);
    c.close();
    assert.equal(auth.parsed[before]!.header("Auth-Method"), "xoauth2");
    assert.equal(auth.parsed[before]!.header("Auth-User"), USER);
  });

  test("POP3 AUTH OAUTHBEARER with a host= and port= pair, and AUTH XOAUTH2 after a challenge", async () => {
    let c = await connect(ports.pop3);
    await c.send(`AUTH OAUTHBEARER ${b64(`n,,\x01host=mail.example\x01port=110\x01auth=Bearer ${GOOD}\x01\x01`)}\r\n`);
    assert.match(await c.readLine(), /^\+OK/);
    c.close();
    c = await connect(ports.pop3);
    await c.send("AUTH XOAUTH2\r\n");
    assert.equal(await c.readLine(), "+ \r\n");
    await c.send(`${xoauth2(GOOD)}\r\n`);
    assert.match(await c.readLine(), /^\+OK/);
    c.close();
  });

  test("SMTP AUTH XOAUTH2 and AUTH OAUTHBEARER: 235 from the backend login", async () => {
    let c = await smtpConnect();
    await c.send(`AUTH XOAUTH2 ${xoauth2(GOOD)}\r\n`);
    assert.match(await c.readLine(), /^235 /);
    c.close();
    c = await smtpConnect();
    await c.send("AUTH OAUTHBEARER\r\n");
    assert.equal(await c.readLine(), "334 \r\n");
    await c.send(`${bearer(GOOD)}\r\n`);
    assert.match(await c.readLine(), /^235 /);
    c.close();
  });

  test("POP3 with pop3_client_buffer unset and pop3_auth oauthbearer takes a 2000-byte token (one page)", async () => {
    const c = await connect(ports.pop3);
    const long = `${"x".repeat(2000)}${GOOD}`;
    await c.send(`AUTH XOAUTH2 ${xoauth2(long)}\r\n`);
    // refused by the auth service (unknown token): the line was read whole
    assert.equal(await c.readLine(), "-ERR auth-failed\r\n");
    c.close();
  });

  test("POP3 with pop3_client_buffer 128: the same token is a too-long command", async () => {
    const c = await connect(ports.pop3Small);
    await c.send(`AUTH XOAUTH2 ${xoauth2(`${"x".repeat(2000)}${GOOD}`)}\r\n`);
    assert.match(await c.expectClosed(), /^-ERR invalid command\r\n$/);
  });
});

describe("Auth-Error-SASL", () => {
  test("IMAP: the error as a + challenge after Auth-Wait, the NO after AQ==, then a new AUTHENTICATE succeeds", async () => {
    const c = await connect(ports.imap);
    const start = Date.now();
    await c.send(`a1 AUTHENTICATE OAUTHBEARER ${bearer(SASL_FAIL)}\r\n`);
    assert.equal(await c.readLine(), `+ ${SASL_ERROR}\r\n`);
    assert.ok(Date.now() - start >= 900, "Auth-Wait honoured before the challenge");
    await c.send("AQ==\r\n");
    assert.equal(await c.readLine(), "a1 NO auth-failed\r\n");
    await c.send(`a2 AUTHENTICATE OAUTHBEARER ${bearer(GOOD)}\r\n`);
    assert.match(await c.readLine(), /^a2 OK/);
    c.close();
  });

  test("POP3: + challenge, -ERR after an empty line", async () => {
    const c = await connect(ports.pop3);
    await c.send(`AUTH XOAUTH2 ${xoauth2(SASL_FAIL)}\r\n`);
    assert.equal(await c.readLine(), `+ ${SASL_ERROR}\r\n`);
    await c.send("\r\n");
    assert.equal(await c.readLine(), "-ERR auth-failed\r\n");
    await c.send("NOOP\r\n");
    assert.equal(await c.readLine(), "+OK\r\n");
    c.close();
  });

  test("SMTP: 334 challenge, 535 after AQ==, session goes on", async () => {
    const c = await smtpConnect();
    await c.send(`AUTH OAUTHBEARER ${bearer(SASL_FAIL)}\r\n`);
    assert.equal(await c.readLine(), `334 ${SASL_ERROR}\r\n`);
    await c.send("AQ==\r\n");
    assert.equal(await c.readLine(), "535 5.7.0 auth-failed\r\n");
    await c.send("NOOP\r\n");
    assert.match(await c.readLine(), /^250 /);
    c.close();
  });

  test("any other line where the dummy response is due: the refusal, then the session ends (IMAP, POP3, SMTP)", async () => {
    const i = await connect(ports.imap);
    await i.send(`a1 AUTHENTICATE XOAUTH2 ${xoauth2(SASL_FAIL)}\r\n`);
    assert.equal(await i.readLine(), `+ ${SASL_ERROR}\r\n`);
    await i.send("a2 NOOP\r\n");
    assert.equal(await i.expectClosed(), "a1 NO auth-failed\r\n");
    const p = await connect(ports.pop3);
    await p.send(`AUTH OAUTHBEARER ${bearer(SASL_FAIL)}\r\n`);
    await p.readLine();
    await p.send(`${bearer(GOOD)}\r\n`);
    assert.equal(await p.expectClosed(), "-ERR auth-failed\r\n");
    const s = await smtpConnect();
    await s.send(`AUTH XOAUTH2 ${xoauth2(SASL_FAIL)}\r\n`);
    await s.readLine();
    await s.send("foo\r\n");
    assert.equal(await s.expectClosed(), "535 5.7.0 auth-failed\r\n");
    assert.match(postern.errorLog(), /\[info\] .*client sent invalid response to SASL error challenge/);
  });

  test("without Auth-Wait: challenge at once, the refusal after the dummy response, then close (as every refusal without Auth-Wait)", async () => {
    const c = await connect(ports.imap);
    await c.send(`a1 AUTHENTICATE OAUTHBEARER ${bearer(NO_WAIT)}\r\n`);
    assert.equal(await c.readLine(), `+ ${SASL_ERROR}\r\n`);
    await c.send("AQ==\r\n");
    assert.equal(await c.expectClosed(), "a1 NO auth-failed\r\n");
  });

  test("Auth-Error-SASL with Auth-Status OK: internal error, close, and the log says so", async () => {
    const c = await connect(ports.imap);
    await c.send(`a1 AUTHENTICATE OAUTHBEARER ${bearer(OK_WITH_SASL)}\r\n`);
    assert.equal(await c.expectClosed(), "* BAD internal server error\r\n");
    assert.match(postern.errorLog(), /\[error\] .*auth http server 127\.0\.0\.1:\d+ returned SASL error to auth success/);
  });

  test("an Auth-Error-SASL that is not base64: internal error like any invalid header (SMTP)", async () => {
    const c = await smtpConnect();
    await c.send(`AUTH OAUTHBEARER ${bearer(BAD_SASL)}\r\n`);
    assert.equal(await c.expectClosed(), "451 4.3.2 Internal server error\r\n");
    assert.match(postern.errorLog(), /\[error\] .*sent invalid Auth-Error-SASL:"not base64!"/);
  });
});

describe("bad input", () => {
  const cases: Array<[string, string, string]> = [
    ["a GS2 header with a channel-binding flag other than n", "oauthbearer", b64(`p=tls-unique,,\x01auth=Bearer ${GOOD}\x01\x01`)],
    ["a GS2 authzid without a=", "oauthbearer", b64(`n,u=${USER},\x01auth=Bearer ${GOOD}\x01\x01`)],
    ["a bare = in the saslname", "oauthbearer", b64(`n,a=a=b,\x01auth=Bearer ${GOOD}\x01\x01`)],
    ["no auth= pair", "oauthbearer", b64(`n,,\x01host=x\x01\x01`)],
    ["an unknown key", "oauthbearer", b64(`n,,\x01foo=bar\x01auth=Bearer ${GOOD}\x01\x01`)],
    ["a token with a space", "xoauth2", b64(`user=${USER}\x01auth=Bearer a b\x01\x01`)],
    ["a missing final ^A", "xoauth2", b64(`user=${USER}\x01auth=Bearer ${GOOD}\x01`)],
    ["a CR in the user", "xoauth2", b64(`user=a\rb\x01auth=Bearer ${GOOD}\x01\x01`)],
    ["non-base64", "oauthbearer", "bi*hLA=="],
  ];
  for (const [what, mechanism, response] of cases) {
    test(`${mechanism}: ${what} is refused without reaching the auth service (IMAP BAD, POP3 -ERR, SMTP 535)`, async () => {
      const before = auth.parsed.length;
      const i = await connect(ports.imap);
      await i.send(`a1 AUTHENTICATE ${mechanism.toUpperCase()} ${response}\r\n`);
      assert.equal(await i.readLine(), "a1 BAD invalid command\r\n");
      i.close();
      const p = await connect(ports.pop3);
      await p.send(`AUTH ${mechanism.toUpperCase()}\r\n`);
      await p.readLine();
      await p.send(`${response}\r\n`);
      assert.equal(await p.readLine(), "-ERR invalid command\r\n");
      p.close();
      const s = await smtpConnect();
      await s.send(`AUTH ${mechanism.toUpperCase()} ${response}\r\n`);
      assert.match(await s.readLine(), /^5\d\d /);
      s.close();
      assert.equal(auth.parsed.length, before, "nothing reached the auth service");
      assert.match(
        postern.errorLog(),
        new RegExp(`\\[info\\] .*client sent invalid (base64 encoding|message|login|token) in AUTH ${mechanism.toUpperCase()} command`),
      );
    });
  }

  test("a dummy response before any challenge is an ordinary line: IMAP BAD, SMTP 500", async () => {
    const i = await connect(ports.imap);
    await i.send("AQ==\r\n");
    assert.match(await i.readLine(), /BAD invalid command\r\n$/);
    i.close();
    const s = await smtpConnect();
    await s.send("AQ==\r\n");
    assert.match(await s.readLine(), /^500 /);
    s.close();
  });
});

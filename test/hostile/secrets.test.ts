/**
 * Secrets never reach a log: sessions with distinctive passwords and SASL
 * responses (IMAP LOGIN/AUTHENTICATE, POP3 PASS/AUTH, SMTP AUTH PLAIN/LOGIN),
 * OAuth bearer tokens (OAUTHBEARER, XOAUTH2, and one refused with Auth-Error-SASL),
 * a refused login, an auth server that hands out a backend password, and a
 * `data:` private key in the configuration, all at `error_log ... debug`
 * (main and mail level). Then every log file and stderr is searched for
 * each secret, raw and base64-encoded: none may appear.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { certs } from "../support/certs.js";
import { GREETING, assertHealthy, connectTo, startBed, type Bed } from "./env.js";

const b64 = (s: string): string => Buffer.from(s, "latin1").toString("base64");

const SECRETS = {
  imapLogin: "Sx-imap-login-4a1f",
  imapPlain: "Sx-imap-plain-77b2",
  imapLiteral: "Sx-imap-literal-0c9d",
  pop3Pass: "Sx-pop3-pass-93e0",
  pop3Login: "Sx-pop3-saslogin-5d21",
  smtpPlain: "Sx-smtp-plain-be44",
  smtpLogin: "Sx-smtp-login-1f08",
  refused: "Sx-refused-c3aa",
  backendPass: "Sx-backend-pass-6e5b",
  authHeader: "Sx-auth-header-d902",
  imapBearer: "Sx-imap-bearer-31f7",
  pop3Xoauth2: "Sx-pop3-xoauth2-8a40",
  smtpBearer: "Sx-smtp-bearer-c615",
  saslRefused: "Sx-sasl-refused-02de",
};

/** OAUTHBEARER and XOAUTH2 client responses (RFC 7628, Google's XOAUTH2). */
const bearerResponse = (user: string, token: string): string => b64(`n,a=${user},\x01auth=Bearer ${token}\x01\x01`);
const xoauth2Response = (user: string, token: string): string => b64(`user=${user}\x01auth=Bearer ${token}\x01\x01`);

async function dialogue(bed: Bed, name: "imap" | "pop3" | "smtp" | "imaps" | "smtps", steps: Array<[string, RegExp]>): Promise<void> {
  const c = await connectTo(bed, name);
  try {
    assert.match(await c.readLine(), GREETING[name.startsWith("imap") ? "imap" : name.startsWith("pop3") ? "pop3" : "smtp"]);
    for (const [send, expect] of steps) {
      await c.send(send);
      assert.match(await c.read(expect), expect, c.transcriptText());
    }
  } finally {
    c.close();
  }
}

test("passwords, SASL responses, backend passwords and a data: key never appear in any log or in stderr", async () => {
  const keyPem = certs().serverRsa.keyPem;
  const bed = await startBed({
    sslKey: `"data:${keyPem}"`,
    extra: `  error_log mail-debug.log debug;\n  auth_http_header X-Auth-Key ${SECRETS.authHeader};`,
    oauth: true,
    auth: (fakes) => (request) => {
      const pass = request.header("Auth-Pass") ?? "";
      // an OAuth refusal with RFC 7628's error challenge
      if (pass === SECRETS.saslRefused)
        return {
          headers: [
            ["Auth-Status", "Invalid token"],
            ["Auth-Wait", "1"],
            ["Auth-Error-SASL", b64('{"status":"invalid_token"}')],
          ],
        };
      if (pass === SECRETS.refused)
        return {
          headers: [
            ["Auth-Status", "Invalid login or password"],
            ["Auth-Wait", "0"],
          ],
        };
      const protocol = request.header("Auth-Protocol") as "imap" | "pop3" | "smtp";
      // the auth server may hand out another password for the backend: a secret too
      return {
        headers: [
          ["Auth-Status", "OK"],
          ["Auth-Server", "127.0.0.1"],
          ["Auth-Port", String(fakes[protocol].port)],
          ["Auth-Pass", SECRETS.backendPass],
        ],
      };
    },
  });
  try {
    await dialogue(bed, "imap", [
      [`a1 LOGIN user1 ${SECRETS.imapLogin}\r\n`, /^a1 OK.*\r\n/m],
      ["a2 LOGOUT\r\n", /^a2 OK.*\r\n/m],
    ]);
    await dialogue(bed, "imaps", [
      ["a1 AUTHENTICATE PLAIN\r\n", /^\+ \r\n/],
      [`${b64(`\0user2\0${SECRETS.imapPlain}`)}\r\n`, /^a1 OK.*\r\n/m],
    ]);
    await dialogue(bed, "imap", [
      [`a1 LOGIN {5}\r\n`, /^\+ OK\r\n/],
      [`user3 {${SECRETS.imapLiteral.length}}\r\n`, /^\+ OK\r\n/],
      [`${SECRETS.imapLiteral}\r\n`, /^a1 OK.*\r\n/m],
    ]);
    await dialogue(bed, "pop3", [
      ["USER user4\r\n", /^\+OK\r\n/],
      [`PASS ${SECRETS.pop3Pass}\r\n`, /^\+OK.*\r\n/],
    ]);
    await dialogue(bed, "pop3", [
      ["AUTH PLAIN\r\n", /^\+ \r\n/],
      [`${b64(`\0user5\0${SECRETS.pop3Login}`)}\r\n`, /^\+OK.*\r\n/],
    ]);
    await dialogue(bed, "smtps", [
      ["EHLO c\r\n", /^250 .*\r\n/m],
      [`AUTH PLAIN ${b64(`\0user6\0${SECRETS.smtpPlain}`)}\r\n`, /^235 .*\r\n/],
    ]);
    await dialogue(bed, "smtp", [
      ["EHLO c\r\n", /^250 .*\r\n/m],
      ["AUTH LOGIN\r\n", /^334 VXNlcm5hbWU6\r\n/],
      [`${b64("user7")}\r\n`, /^334 UGFzc3dvcmQ6\r\n/],
      [`${b64(SECRETS.smtpLogin)}\r\n`, /^235 .*\r\n/],
    ]);
    await dialogue(bed, "imap", [[`a1 LOGIN user8 ${SECRETS.refused}\r\n`, /^a1 NO .*\r\n/m]]);
    // OAuth: the bearer token is a secret like a password, with and without an initial response
    await dialogue(bed, "imap", [[`a1 AUTHENTICATE OAUTHBEARER ${bearerResponse("user9", SECRETS.imapBearer)}\r\n`, /^a1 OK.*\r\n/m]]);
    await dialogue(bed, "pop3", [
      ["AUTH XOAUTH2\r\n", /^\+ \r\n/],
      [`${xoauth2Response("user10", SECRETS.pop3Xoauth2)}\r\n`, /^\+OK.*\r\n/],
    ]);
    await dialogue(bed, "smtp", [
      ["EHLO c\r\n", /^250 .*\r\n/m],
      [`AUTH OAUTHBEARER ${bearerResponse("user11", SECRETS.smtpBearer)}\r\n`, /^235 .*\r\n/],
    ]);
    await dialogue(bed, "imap", [
      [`a1 AUTHENTICATE XOAUTH2 ${xoauth2Response("user12", SECRETS.saslRefused)}\r\n`, /^\+ eyJ.*\r\n/],
      ["AQ==\r\n", /^a1 NO Invalid token\r\n/],
    ]);
    // every session reached the backend with the auth server's password, so the secrets went through the proxy
    const backendSaw = [bed.imap, bed.pop3, bed.smtp].flatMap((f) => f.connections.map((c) => c.received.toString("latin1"))).join("\n");
    assert.ok(backendSaw.includes(SECRETS.backendPass), "the backend password was not used: the test would prove nothing");
    await new Promise((r) => setTimeout(r, 300));
    const files = readdirSync(bed.proxy.prefix).filter((f) => f.endsWith(".log"));
    assert.ok(files.includes("mail-debug.log"), `log files: ${files.join(", ")}`);
    const texts: Array<[string, string]> = files.map((f) => [f, readFileSync(path.join(bed.proxy.prefix, f), "latin1")]);
    texts.push(["stderr", bed.proxy.stderr()]);
    assert.ok(
      texts.some(([, t]) => / \[debug\] /.test(t) || / \[info\] /.test(t)),
      "nothing was logged: the test would prove nothing",
    );
    // the key's base64 body, a line of it, must not be logged either
    const keyLine = keyPem.split("\n")[3]!;
    const needles: Array<[string, string]> = [
      ...Object.entries(SECRETS).flatMap(([k, v]): Array<[string, string]> => [
        [k, v],
        [`${k} (base64)`, b64(v)],
      ]),
      ["SASL PLAIN response", b64(`\0user2\0${SECRETS.imapPlain}`)],
      ["OAUTHBEARER response", bearerResponse("user9", SECRETS.imapBearer)],
      ["XOAUTH2 response", xoauth2Response("user10", SECRETS.pop3Xoauth2)],
      ["data: key line", keyLine],
    ];
    for (const [file, text] of texts) {
      for (const [what, needle] of needles) assert.ok(!text.includes(needle), `${what} found in ${file}`);
    }
    assertHealthy(bed);
  } finally {
    await bed.stop();
  }
});

test("a too long authentication command is logged by tag and command name only: no password, no SASL response", async () => {
  const secret = {
    imapLogin: "Sy-imap-login-long-2b7e",
    imapSasl: "Sy-imap-sasl-long-90aa",
    pop3Pass: "Sy-pop3-pass-long-11c4",
    pop3Auth: "Sy-pop3-auth-long-5f3d",
    smtpAuth: "Sy-smtp-auth-long-e061",
    smtpLogin: "Sy-smtp-login-long-7d2c",
  };
  const plain = (s: string): string => b64(`\0user\0${s}`);
  const long = "x".repeat(5000);
  const bed = await startBed();
  try {
    const tooLong = async (name: "imap" | "pop3" | "smtp", steps: Array<[string, RegExp]>, last: string, reply: RegExp): Promise<void> => {
      const c = await connectTo(bed, name);
      try {
        assert.match(await c.readLine(), GREETING[name]);
        for (const [send, expect] of steps) {
          await c.send(send);
          assert.match(await c.read(expect), expect, c.transcriptText());
        }
        await c.send(last);
        assert.match(await c.expectClosed(3000), reply, c.transcriptText());
      } finally {
        c.close();
      }
    };
    await tooLong("imap", [], `a1 LOGIN user ${secret.imapLogin}${long}`, /^a1 BAD invalid command\r\n$/);
    // pipelined behind a NOOP in the same buffer: the NOOP line is quoted, the LOGIN only by name
    await tooLong("imap", [], `a0 NOOP\r\na2 login "user" "${secret.imapLogin}${long}`, /^a0 OK completed\r\na2 BAD invalid command\r\n$/);
    await tooLong("imap", [["a3 AUTHENTICATE PLAIN\r\n", /^\+ \r\n/]], `${plain(secret.imapSasl)}${"A".repeat(5000)}`, /^a3 BAD invalid command\r\n$/);
    await tooLong("pop3", [["USER user\r\n", /^\+OK\r\n/]], `PASS ${secret.pop3Pass}${long}`, /^-ERR invalid command\r\n$/);
    await tooLong("pop3", [], `AUTH PLAIN ${plain(secret.pop3Auth)}${"A".repeat(200)}`, /^-ERR invalid command\r\n$/);
    await tooLong("pop3", [["AUTH PLAIN\r\n", /^\+ \r\n/]], `${plain(secret.pop3Auth)}${"A".repeat(200)}`, /^-ERR invalid command\r\n$/);
    await tooLong("smtp", [["EHLO c\r\n", /^250 .*\r\n/m]], `AUTH PLAIN ${plain(secret.smtpAuth)}${"A".repeat(5000)}`, /^500 5\.5\.1 Invalid command\r\n$/);
    await tooLong(
      "smtp",
      [
        ["EHLO c\r\n", /^250 .*\r\n/m],
        ["AUTH LOGIN\r\n", /^334 .*\r\n/],
        [`${b64("user")}\r\n`, /^334 .*\r\n/],
      ],
      `${b64(secret.smtpLogin)}${"A".repeat(5000)}`,
      /^500 5\.5\.1 Invalid command\r\n$/,
    );
    await new Promise((r) => setTimeout(r, 200));
    const log = bed.proxy.errorLog();
    const quoted = log
      .split("\n")
      .map((l) => /client sent too long command "([^"]*)"/.exec(l)?.[1])
      .filter((q) => q !== undefined);
    assert.deepEqual(quoted, ["a1 LOGIN", "a0 NOOP\\x0D\\x0Aa2 login", "a3 AUTHENTICATE", "PASS", "AUTH", "AUTH", "AUTH", "AUTH"], log);
    for (const [what, value] of Object.entries(secret)) {
      for (const needle of [value, b64(value), plain(value).slice(0, 16)]) assert.ok(!log.includes(needle), `${what} (${needle}) in the error log`);
    }
    assert.ok(!log.includes(long.slice(0, 64)), "the argument of a too long command was logged");
    assertHealthy(bed);
  } finally {
    await bed.stop();
  }
});

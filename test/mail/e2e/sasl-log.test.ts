/**
 * The SASL exchange that the three front ends now share (src/mail/dispatch.ts,
 * sasl.ts) takes the user name when nginx takes it: after AUTH LOGIN's first
 * response, and from a CRAM-MD5 response whose digest is refused. nginx's log
 * lines then carry `login: "..."`, in POP3 and SMTP as in IMAP (before the
 * shared dispatcher, Postern's POP3 and SMTP front ends left it out).
 * nginx 1.22.1 vs Postern, the error logs compared line by line.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { assertSame, Pair } from "./pair.js";
import { b64, okToBackend, Talk } from "./talk.js";

let pair: Pair;

before(async () => {
  pair = await Pair.start({
    listen: ["imap", "pop3", "smtp"],
    backends: {},
    auth: okToBackend("smtp"),
    config: ({ ports, authUrl }) => `
      auth_http ${authUrl};
      server_name mx.example.test;
      server { listen 127.0.0.1:${ports.imap}; protocol imap; imap_auth login plain cram-md5; }
      server { listen 127.0.0.1:${ports.pop3}; protocol pop3; pop3_auth plain cram-md5; }
      server { listen 127.0.0.1:${ports.smtp}; protocol smtp; smtp_auth login plain cram-md5; }
    `,
  });
});

after(async () => {
  await pair?.stop();
});

const QUIT: Readonly<Record<string, string>> = { imap: "q LOGOUT\r\n", pop3: "QUIT\r\n", smtp: "QUIT\r\n" };

/** The client's lines, one reply line each, then the protocol's goodbye and the server's close. */
async function talk(protocol: string, port: number, lines: readonly string[]): Promise<string[]> {
  const t = await Talk.open(port);
  await t.line();
  for (const l of lines) await t.cmd(`${l}\r\n`);
  await t.send(QUIT[protocol]!);
  await t.closed();
  return t.log;
}

const CASES: ReadonlyArray<readonly [string, string, readonly string[], RegExp]> = [
  [
    "SMTP AUTH LOGIN: the user name, then a password that is not base64",
    "smtp",
    ["EHLO x", "AUTH LOGIN", b64("carol"), "!!!"],
    /client sent invalid base64 encoding in AUTH LOGIN command .*login: "carol"$/,
  ],
  [
    "SMTP AUTH CRAM-MD5: a digest of the wrong length",
    "smtp",
    ["EHLO x", "AUTH CRAM-MD5", b64("dave 12")],
    /client sent invalid CRAM-MD5 hash in AUTH CRAM-MD5 command .*login: "dave"$/,
  ],
  [
    "POP3 AUTH LOGIN: the user name, then a password that is not base64",
    "pop3",
    ["AUTH LOGIN", b64("erin"), "!!!"],
    /client sent invalid base64 encoding in AUTH LOGIN command .*login: "erin"$/,
  ],
  [
    "POP3 AUTH CRAM-MD5: a digest of the wrong length",
    "pop3",
    ["AUTH CRAM-MD5", b64("bob 0123")],
    /client sent invalid CRAM-MD5 hash in AUTH CRAM-MD5 command .*login: "bob"$/,
  ],
  [
    "IMAP AUTHENTICATE CRAM-MD5: a digest of the wrong length",
    "imap",
    ["a AUTHENTICATE CRAM-MD5", b64("frank 1")],
    /client sent invalid CRAM-MD5 hash in AUTH CRAM-MD5 command .*login: "frank"$/,
  ],
];

for (const [name, port, lines, logged] of CASES) {
  test(`${name}: the log line names the login, as nginx's does`, async () => {
    const r = await pair.run({ logLevels: ["info"] }, (ports) => talk(port, ports[port]!, lines));
    assert.ok(
      r.nginx.errorLog.some((l) => logged.test(l)),
      r.nginx.errorLog.join("\n"),
    );
    assertSame(r);
  });
}

/**
 * Real OAuth clients through Postern to the bundled auth service, which
 * verifies JWT access tokens against a JWKS made at test time, then to a
 * real Dovecot (IMAP, POP3) and a real SMTP server (smtp-server): imapflow
 * with `accessToken` (OAUTHBEARER, or XOAUTH2 where only that is offered),
 * nodemailer with `type: "OAuth2"`, curl with `--oauth2-bearer` in all
 * three protocols; a bad token runs the Auth-Error-SASL exchange. nginx
 * 1.22.1 knows neither mechanism (oauth-nginx.test.ts).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ImapFlow } from "imapflow";
import nodemailer from "nodemailer";
import { runPasswd } from "../../../src/auth-server/cli.js";
import { oauthSettings } from "../../../src/auth-server/oauth-cli.js";
import { startAuthServer, type RunningAuthServer } from "../../../src/auth-server/server.js";
import { startDovecot, type Dovecot } from "../../support/dovecot.js";
import { jwks, makeKey, signJwt, validClaims, type TestKey } from "../../support/jwt.js";
import type { MailProxyProcess } from "../../support/mail-proxy.js";
import { freePorts } from "../../support/ports.js";
import { startPostern } from "../../support/postern.js";
import { startSmtpBackend, type SmtpBackend } from "../../support/smtp-backend.js";
import { io } from "../../auth-server/helpers.js";

const USER = "test@example.com";
const PASS = "secret";

let dir = "";
let key: TestKey;
let dovecot: Dovecot;
let smtp: SmtpBackend;
let authServer: RunningAuthServer;
let postern: MailProxyProcess;
let ports: { imap: number; imapXoauth2: number; pop3: number; smtp: number };
const authLog: string[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "postern-oauth-e2e-"));
  const [imapPort, pop3Port] = (await freePorts(2)) as [number, number];
  dovecot = await startDovecot({ imapPort, pop3Port });
  dovecot.deliverSized(USER, 2000);
  smtp = await startSmtpBackend({ users: { [USER]: PASS } });
  const users = join(dir, "users");
  writeFileSync(users, "");
  const x = io(`${PASS}\n`);
  const code = await runPasswd(
    ["--scrypt-n", "1024", "--clear", users, USER, `imap=127.0.0.1:${imapPort}`, `pop3=127.0.0.1:${pop3Port}`, `smtp=127.0.0.1:${smtp.port}`],
    x,
  );
  assert.equal(code, 0, x.err());
  key = makeKey("ES256");
  writeFileSync(join(dir, "jwks.json"), jwks([key]));
  const oauth = await oauthSettings(
    new Map([
      ["--jwks", join(dir, "jwks.json")],
      ["--issuer", "https://issuer.example"],
      ["--audience", "mail"],
    ]),
  );
  assert.ok(typeof oauth === "object");
  authServer = await startAuthServer({ usersFile: users, wait: 1, scrypt: { N: 1024, r: 8, p: 1 }, log: (l) => authLog.push(l), oauth }, "127.0.0.1", 0);
  const [imap, imapXoauth2, pop3, smtpPort] = (await freePorts(4)) as [number, number, number, number];
  ports = { imap, imapXoauth2, pop3, smtp: smtpPort };
  postern = await startPostern(`
    auth_http 127.0.0.1:${authServer.address.port}/auth;
    server_name mx.example.test;
    server { listen 127.0.0.1:${imap}; protocol imap; imap_auth plain oauthbearer xoauth2; }
    server { listen 127.0.0.1:${imapXoauth2}; protocol imap; imap_auth xoauth2; }
    server { listen 127.0.0.1:${pop3}; protocol pop3; pop3_auth plain oauthbearer xoauth2; }
    server { listen 127.0.0.1:${smtpPort}; protocol smtp; smtp_auth plain xoauth2; xclient on; }
  `);
});

after(async () => {
  const log = postern?.errorLog() ?? "";
  await postern?.stop();
  await authServer?.close();
  await smtp?.close();
  await dovecot?.stop();
  rmSync(dir, { recursive: true, force: true });
  // the proxy ran at debug: no token (nor its signature, the part no other header shares) in its log, nor in the auth service's
  assert.ok(issued.length > 5);
  for (const t of issued) {
    const signature = t.split(".")[2]!;
    assert.ok(!log.includes(signature) && !authLog.join("\n").includes(signature), "a token in a log");
    assert.ok(!log.includes(t.slice(0, 60)), "a token's start in the log");
  }
});

/** Every token handed to a client, for the log check. */
const issued: string[] = [];
const token = (mailbox = USER, extra: Record<string, unknown> = {}): string => {
  const t = signJwt(key, validClaims(mailbox, extra));
  issued.push(t);
  return t;
};

function run(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 20000, encoding: "latin1" }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === "number" ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

async function imapflowStatus(port: number, accessToken: string): Promise<number | undefined> {
  const client = new ImapFlow({ host: "127.0.0.1", port, secure: false, logger: false, disableAutoIdle: true, auth: { user: USER, accessToken } });
  try {
    await client.connect();
    return (await client.status("INBOX", { messages: true })).messages;
  } finally {
    await client.logout().catch(() => client.close());
  }
}

test("imapflow with accessToken: AUTHENTICATE OAUTHBEARER through Postern, Dovecot's INBOX seen", async () => {
  assert.equal(await imapflowStatus(ports.imap, token()), 1);
});

test("imapflow with accessToken where only AUTH=XOAUTH2 is offered: AUTHENTICATE XOAUTH2", async () => {
  assert.equal(await imapflowStatus(ports.imapXoauth2, token()), 1);
});

test("imapflow with an expired token: the Auth-Error-SASL challenge reaches it (its AQ== answered), then NO", async () => {
  const expired = token(USER, { exp: Math.floor(Date.now() / 1000) - 3600 });
  await assert.rejects(
    imapflowStatus(ports.imap, expired),
    (err: Error & { authenticationFailed?: boolean; oauthError?: unknown; serverResponseCode?: string }) => {
      assert.equal(err.authenticationFailed, true, String(err));
      return true;
    },
  );
  assert.ok(authLog.some((l) => /refused, token refused: token expired/.test(l)));
});

test("nodemailer with auth type OAuth2 and an accessToken: AUTH XOAUTH2 through Postern to smtp-server", async () => {
  const start = smtp.messages.length;
  const transport = nodemailer.createTransport({
    host: "127.0.0.1",
    port: ports.smtp,
    secure: false,
    ignoreTLS: true,
    name: "nm.example",
    auth: { type: "OAuth2", user: USER, accessToken: token() },
  });
  try {
    await transport.sendMail({ raw: "Subject: oauth\r\n\r\nhello\r\n", from: "a@example.com", to: "b@example.com" });
  } finally {
    transport.close();
  }
  assert.equal(smtp.messages.length, start + 1);
  assert.equal(smtp.messages[start]!.xclient.LOGIN, USER);
});

test("curl --oauth2-bearer: IMAP (OAUTHBEARER), POP3 (OAUTHBEARER) and SMTP (XOAUTH2) through Postern", async () => {
  const imap = await run("curl", ["-sS", "--max-time", "15", "-u", `${USER}:`, "--oauth2-bearer", token(), `imap://127.0.0.1:${ports.imap}/INBOX;UID=1`]);
  assert.equal(imap.code, 0, imap.stderr);
  assert.match(imap.stdout, /^Subject: /);
  const pop3 = await run("curl", ["-sS", "--max-time", "15", "-u", `${USER}:`, "--oauth2-bearer", token(), `pop3://127.0.0.1:${ports.pop3}/`]);
  assert.equal(pop3.code, 0, pop3.stderr);
  assert.match(pop3.stdout, /^1 \d+\r?\n$/);
  const start = smtp.messages.length;
  const mail = join(dir, "mail.txt");
  writeFileSync(mail, "Subject: curl\r\n\r\nhi\r\n");
  const sent = await run("curl", [
    "-sS",
    "--max-time",
    "15",
    "-u",
    `${USER}:`,
    "--oauth2-bearer",
    token(),
    "--mail-from",
    "a@example.com",
    "--mail-rcpt",
    "b@example.com",
    "-T",
    mail,
    `smtp://127.0.0.1:${ports.smtp}/`,
  ]);
  assert.equal(sent.code, 0, sent.stderr);
  assert.equal(smtp.messages.length, start + 1);
});

test("curl --oauth2-bearer with a token for another mailbox: IMAP login denied (exit 67)", async () => {
  const r = await run("curl", [
    "-sS",
    "--max-time",
    "15",
    "-u",
    `${USER}:`,
    "--oauth2-bearer",
    token("other@example.com"),
    `imap://127.0.0.1:${ports.imap}/INBOX;UID=1`,
  ]);
  assert.equal(r.code, 67, r.stderr);
});

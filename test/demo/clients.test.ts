/**
 * The demo mail backend with the clients the README promises, through a
 * real Postern (auth_http answered by a fake that points at the demo):
 * imapflow and Python's imaplib log in, open INBOX, fetch the welcome
 * message and log out; poplib reads it; nodemailer submits a message that
 * imapflow then reads back. What Postern logs in with (LOGIN with literals,
 * USER/PASS, EHLO + XCLIENT) is nginx's, so the demo must take it as is.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { ImapFlow } from "imapflow";
import nodemailer from "nodemailer";
import { startFakeAuth, type FakeAuth } from "../support/fake-auth.js";
import type { MailProxyProcess } from "../support/mail-proxy.js";
import { freePorts } from "../support/ports.js";
import { startPostern } from "../support/postern.js";
import { type DemoBackend, startDemoBackend } from "../../src/demo/backend.js";

const USER = "demo@localhost";
const PASS = "demo";
const ANY = { host: "127.0.0.1", port: 0 };

let demo: DemoBackend;
let auth: FakeAuth;
let postern: MailProxyProcess;
let ports: { imap: number; pop3: number; smtp: number };
const demoLog: string[] = [];

before(async () => {
  demo = await startDemoBackend({ imap: ANY, pop3: ANY, smtp: ANY, user: USER }, (m) => demoLog.push(m));
  auth = await startFakeAuth((req) => {
    const protocol = req.header("Auth-Protocol");
    const port = protocol === "imap" ? demo.ports.imap : protocol === "pop3" ? demo.ports.pop3 : demo.ports.smtp;
    return {
      headers: [
        ["Auth-Status", "OK"],
        ["Auth-Server", "127.0.0.1"],
        ["Auth-Port", String(port)],
      ],
    };
  });
  const [imap, pop3, smtp] = (await freePorts(3)) as [number, number, number];
  ports = { imap, pop3, smtp };
  postern = await startPostern(`
    auth_http ${auth.url};
    server_name localhost;
    server { listen 127.0.0.1:${imap}; protocol imap; imap_capabilities IMAP4rev1 LITERAL+; }
    server { listen 127.0.0.1:${pop3}; protocol pop3; pop3_capabilities TOP USER UIDL; }
    server { listen 127.0.0.1:${smtp}; protocol smtp; smtp_auth plain login; }
  `);
});

after(async () => {
  await postern?.stop();
  await auth?.close();
  await demo?.close();
});

function python(script: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile("python3", ["-c", script, String(ports.imap), String(ports.pop3)], { timeout: 20_000, encoding: "latin1" }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === "number" ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

async function imapflowFetch(uid: number): Promise<string> {
  const client = new ImapFlow({ host: "127.0.0.1", port: ports.imap, secure: false, logger: false, disableAutoIdle: true, auth: { user: USER, pass: PASS } });
  await client.connect();
  try {
    const lock = await client.getMailboxLock("INBOX");
    try {
      const message = await client.fetchOne(String(uid), { source: true, uid: true, flags: true }, { uid: true });
      assert.ok(message && message.source, `no message with UID ${uid}`);
      assert.equal(message.uid, uid);
      return message.source.toString("latin1");
    } finally {
      lock.release();
    }
  } finally {
    await client.logout();
  }
}

test("imapflow through Postern: LOGIN, SELECT INBOX, FETCH the welcome message, LOGOUT", async () => {
  const source = await imapflowFetch(1);
  assert.match(source, /^Subject: Welcome to Postern\r$/m);
  assert.match(source, /^Welcome to Postern!\r$/m);
  assert.ok(demoLog.includes(`IMAP: ${USER} logged in`), demoLog.join("\n"));
});

test("Python imaplib and poplib through Postern read the welcome message", async () => {
  const r = await python(`
import imaplib, poplib, sys
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
m.login("${USER}", "${PASS}")
typ, data = m.select("INBOX")
assert typ == "OK", (typ, data)
typ, data = m.fetch("1", "(UID RFC822.SIZE BODY.PEEK[HEADER] RFC822)")
assert typ == "OK", (typ, data)
print("IMAP", data[0][0].decode(), data[0][1].decode().splitlines()[2])
m.logout()
p = poplib.POP3("127.0.0.1", int(sys.argv[2]))
p.user("${USER}")
p.pass_("${PASS}")
lines = p.retr(1)[1]
print("POP3", [l.decode() for l in lines if l.startswith(b"Subject:")][0])
p.quit()
`);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^IMAP 1 \(UID 1 RFC822\.SIZE [0-9]+ BODY\[HEADER\] \{[0-9]+\}/m);
  assert.match(r.stdout, /^POP3 Subject: Welcome to Postern$/m);
});

test("nodemailer submits through Postern (EHLO, XCLIENT to the demo, AUTH at Postern); the message is then in INBOX", async () => {
  const transport = nodemailer.createTransport({ host: "127.0.0.1", port: ports.smtp, secure: false, ignoreTLS: true, auth: { user: USER, pass: PASS } });
  const info = await transport.sendMail({ from: USER, to: USER, subject: "Sent with nodemailer", text: "Through Postern to the demo." });
  assert.match(String(info.response), /^250 2\.0\.0 delivered to the demo mailbox as UID [0-9]+/);
  const uid = Number(/UID ([0-9]+)/.exec(String(info.response))![1]);
  const source = await imapflowFetch(uid);
  assert.match(source, /^Subject: Sent with nodemailer\r$/m);
  assert.match(source, /^Received: from .* \(Postern demo mail backend\);/m);
  assert.ok(
    demoLog.some((l) => l.startsWith("SMTP: a session from Postern (ADDR=127.0.0.1 LOGIN=demo@localhost")),
    demoLog.join("\n"),
  );
});

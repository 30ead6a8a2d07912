/** Proves dovecot.ts: a real Dovecot serves IMAP and POP3 logins and the delivered message. */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { ImapFlow } from "imapflow";
import { startDovecot, type Dovecot } from "../support/dovecot.js";
import { okTo, startFakeAuth } from "../support/fake-auth.js";
import { startNginx } from "../support/nginx.js";
import { freePorts } from "../support/ports.js";

let dovecot: Dovecot;
let message: string;

before(async () => {
  const [imapPort, pop3Port] = await freePorts(2);
  dovecot = await startDovecot({ imapPort: imapPort!, pop3Port: pop3Port! });
  message = dovecot.deliverSized("test@example.com", 100_000);
});

after(async () => {
  await dovecot?.stop();
});

/** Runs a python3 snippet with argv and returns its stdout. */
function python(script: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("python3", ["-c", script, ...args], { timeout: 15000, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`python3 failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

test("python imaplib logs in and fetches the delivered message", async () => {
  const out = await python(
    `
import imaplib, sys
m = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
m.login('test@example.com', 'secret')
m.select('INBOX')
typ, data = m.fetch('1', '(BODY.PEEK[])')
sys.stdout.write(data[0][1].decode('latin1'))
m.logout()
`,
    [String(dovecot.imapPort)],
  );
  assert.equal(out.length, 100_000);
  assert.equal(out, message);
});

test("python poplib logs in and retrieves the delivered message", async () => {
  const out = await python(
    `
import poplib, sys
p = poplib.POP3('127.0.0.1', int(sys.argv[1]))
p.user('test@example.com')
p.pass_('secret')
resp, lines, octets = p.retr(1)
sys.stdout.write(str(octets) + '\\n' + '\\r\\n'.join(l.decode('latin1') for l in lines) + '\\r\\n')
p.quit()
`,
    [String(dovecot.pop3Port)],
  );
  const [octets, ...rest] = out.split("\n");
  assert.equal(Number(octets), 100_000);
  assert.equal(rest.join("\n"), message);
});

test("imapflow logs in and downloads the delivered message", async () => {
  const client = new ImapFlow({
    host: "127.0.0.1",
    port: dovecot.imapPort,
    secure: false,
    logger: false,
    disableAutoIdle: true,
    auth: { user: "test@example.com", pass: "secret" },
  });
  await client.connect();
  try {
    const lock = await client.getMailboxLock("INBOX");
    try {
      const msg = await client.fetchOne("1", { source: true });
      assert.ok(msg && msg.source, "message 1 fetched");
      assert.equal(msg.source.toString("latin1"), message);
    } finally {
      lock.release();
    }
  } finally {
    await client.logout();
  }
});

test("imapflow through nginx to Dovecot downloads the 100 KB message", async () => {
  const auth = await startFakeAuth(okTo(dovecot.imapPort));
  const [port] = await freePorts(1);
  const nginx = await startNginx(`server { listen 127.0.0.1:${port}; protocol imap; auth_http ${auth.url}; }`);
  const client = new ImapFlow({
    host: "127.0.0.1",
    port: port!,
    secure: false,
    logger: false,
    disableAutoIdle: true,
    auth: { user: "test@example.com", pass: "secret" },
  });
  try {
    await client.connect();
    const lock = await client.getMailboxLock("INBOX");
    try {
      const msg = await client.fetchOne("1", { source: true });
      assert.ok(msg && msg.source, "message 1 fetched");
      assert.equal(msg.source.toString("latin1"), message);
    } finally {
      lock.release();
    }
    await client.logout();
    assert.equal(auth.parsed[0]!.header("Auth-User"), "test@example.com");
  } finally {
    client.close();
    await nginx.stop();
    await auth.close();
  }
});

// Last: Dovecot's anvil penalises the next login from an address after a failure (about 2 s).
test("python imaplib sees a wrong password rejected", async () => {
  const out = await python(
    `
import imaplib, sys
m = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
try:
    m.login('test@example.com', 'wrong')
    print('accepted')
except imaplib.IMAP4.error as e:
    print('rejected')
`,
    [String(dovecot.imapPort)],
  );
  assert.equal(out.trim(), "rejected");
});

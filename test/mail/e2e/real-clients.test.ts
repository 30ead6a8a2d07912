/**
 * Real mail clients (curl, Python's imaplib/poplib/smtplib, imapflow, nodemailer,
 * swaks) through nginx and through Postern, with the same config, to a real Dovecot
 * (IMAP, POP3) and a real SMTP server (smtp-server): each client must see the same
 * thing through both proxies, and what it sees is asserted.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { ImapFlow } from "imapflow";
import nodemailer from "nodemailer";
import { certs } from "../../support/certs.js";
import { startDovecot, type Dovecot } from "../../support/dovecot.js";
import { startFakeAuth, type FakeAuth } from "../../support/fake-auth.js";
import type { MailProxyProcess } from "../../support/mail-proxy.js";
import { nginxAvailable, startNginx } from "../../support/nginx.js";
import { freePorts } from "../../support/ports.js";
import { startPostern } from "../../support/postern.js";
import { startSmtpBackend, type SmtpBackend } from "../../support/smtp-backend.js";

const USER = "test@example.com";
const PASS = "secret";
const SIZE = 300_000;

interface Proxy {
  kind: "nginx" | "postern";
  ports: { imap: number; pop3: number; smtp: number; imapTls: number; smtpTls: number };
  process?: MailProxyProcess;
  error?: string;
}

let dovecot: Dovecot;
let smtp: SmtpBackend;
let auth: FakeAuth;
let message: string;
const proxies: Proxy[] = [];

before(async () => {
  assert.ok(nginxAvailable(), "nginx with the mail module is required (the oracle)");
  const pki = certs();
  const [imapPort, pop3Port] = await freePorts(2);
  dovecot = await startDovecot({ imapPort: imapPort!, pop3Port: pop3Port! });
  message = dovecot.deliverSized(USER, SIZE);
  smtp = await startSmtpBackend({ users: { [USER]: PASS } });
  auth = await startFakeAuth((req) => {
    const protocol = req.header("Auth-Protocol");
    const port = protocol === "imap" ? dovecot.imapPort : protocol === "pop3" ? dovecot.pop3Port : smtp.port;
    return {
      headers: [
        ["Auth-Status", "OK"],
        ["Auth-Server", "127.0.0.1"],
        ["Auth-Port", String(port)],
      ],
    };
  });
  const second = process.env.POSTERN_E2E_SECOND === "nginx" ? startNginx : startPostern;
  for (const [kind, start] of [
    ["nginx", startNginx],
    ["postern", second],
  ] as const) {
    const [imap, pop3, smtpPort, imapTls, smtpTls] = (await freePorts(5)) as [number, number, number, number, number];
    const proxy: Proxy = { kind, ports: { imap, pop3, smtp: smtpPort, imapTls, smtpTls } };
    try {
      proxy.process = await start(`
        auth_http ${auth.url};
        server_name mx.example.test;
        server { listen 127.0.0.1:${imap}; protocol imap; imap_capabilities IMAP4rev1 LITERAL+; }
        server { listen 127.0.0.1:${pop3}; protocol pop3; pop3_capabilities TOP USER UIDL; }
        server { listen 127.0.0.1:${smtpPort}; protocol smtp; smtp_auth plain login; xclient on;
                 smtp_capabilities PIPELINING 8BITMIME "SIZE 10485760"; }
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate ${pki.serverRsa.cert};
        ssl_certificate_key ${pki.serverRsa.key};
        server { listen 127.0.0.1:${imapTls}; protocol imap; starttls only; }
        server { listen 127.0.0.1:${smtpTls}; protocol smtp; starttls only; smtp_auth plain login; xclient on; }
      `);
    } catch (err) {
      if (kind === "nginx") throw err;
      proxy.error = `postern did not start: ${(err as Error).message}`;
    }
    proxies.push(proxy);
  }
});

after(async () => {
  for (const p of proxies) await p.process?.stop();
  await auth?.close();
  await smtp?.close();
  await dovecot?.stop();
});

/** Runs `client` through nginx, then through Postern; Postern's view must equal nginx's. */
async function onBoth<T>(client: (ports: Proxy["ports"]) => Promise<T>): Promise<T> {
  const seen: Partial<Record<Proxy["kind"], T>> = {};
  for (const p of proxies) {
    if (p.error) assert.fail(`${p.error}\n(nginx saw: ${JSON.stringify(seen.nginx)?.slice(0, 500)})`);
    seen[p.kind] = await client(p.ports);
  }
  assert.deepEqual(seen.postern, seen.nginx);
  return seen.nginx!;
}

/** Runs a program; resolves with exit code, stdout and stderr. */
function run(file: string, args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { timeout: 20000, maxBuffer: 16 << 20, encoding: "latin1" }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
    if (input !== undefined) child.stdin!.end(input, "latin1");
  });
}

function python(script: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return run("python3", ["-c", script, ...args]);
}

/** The smtp-server messages received since `from`, reduced to what a test compares. */
function received(from: number): Array<{ mailFrom: string; rcptTo: string[]; data: string; user: string | undefined; xclient: Record<string, string> }> {
  return smtp.messages.slice(from).map((m) => ({
    mailFrom: m.mailFrom,
    rcptTo: m.rcptTo,
    data: m.data.toString("latin1"),
    user: m.user,
    xclient: m.xclient,
  }));
}

test("curl imap:// fetches the message through the proxy from Dovecot", async () => {
  const seen = await onBoth(async (ports) => {
    const r = await run("curl", ["-sS", "--max-time", "15", "--user", `${USER}:${PASS}`, `imap://127.0.0.1:${ports.imap}/INBOX;UID=1`]);
    return { code: r.code, exact: r.stdout === message, size: r.stdout.length, stderr: r.stderr };
  });
  assert.deepEqual(seen, { code: 0, exact: true, size: SIZE, stderr: "" });
});

test("curl pop3:// lists and retrieves the message through the proxy", async () => {
  const seen = await onBoth(async (ports) => {
    const list = await run("curl", ["-sS", "--max-time", "15", "--user", `${USER}:${PASS}`, `pop3://127.0.0.1:${ports.pop3}/`]);
    const retr = await run("curl", ["-sS", "--max-time", "15", "--user", `${USER}:${PASS}`, `pop3://127.0.0.1:${ports.pop3}/1`]);
    return { list: list.stdout, code: retr.code, exact: retr.stdout === message, stderr: retr.stderr };
  });
  assert.deepEqual(seen, { list: `1 ${SIZE}\r\n`, code: 0, exact: true, stderr: "" });
});

test("curl smtp:// with a user and password delivers through the proxy (XCLIENT login)", async () => {
  const seen = await onBoth(async (ports) => {
    const start = smtp.messages.length;
    const body = "From: a@example.com\r\nTo: b@example.com\r\nSubject: curl\r\n\r\nhello from curl\r\n";
    const r = await run(
      "curl",
      [
        "-sS",
        "--max-time",
        "15",
        "--user",
        `${USER}:${PASS}`,
        "--mail-from",
        "a@example.com",
        "--mail-rcpt",
        "b@example.com",
        "--upload-file",
        "-",
        `smtp://127.0.0.1:${ports.smtp}`,
      ],
      body,
    );
    return { code: r.code, stderr: r.stderr, messages: received(start) };
  });
  assert.deepEqual(seen.messages, [
    {
      mailFrom: "a@example.com",
      rcptTo: ["b@example.com"],
      user: USER,
      data: "From: a@example.com\r\nTo: b@example.com\r\nSubject: curl\r\n\r\nhello from curl\r\n",
      // smtp-server stores NAME=[UNAVAILABLE] as an empty name.
      xclient: { ADDR: "127.0.0.1", LOGIN: USER, NAME: "" },
    },
  ]);
  assert.equal(seen.code, 0, seen.stderr);
});

test("curl with a wrong password: the auth server refusal is what the user sees", async () => {
  auth.setHandler(() => ({ headers: [["Auth-Status", "Invalid login or password"]] }));
  try {
    const seen = await onBoth(async (ports) => {
      const r = await run("curl", ["-sS", "--max-time", "15", "--user", `${USER}:wrong`, `imap://127.0.0.1:${ports.imap}/INBOX;UID=1`]);
      return { code: r.code, stderr: r.stderr.trim() };
    });
    assert.deepEqual(seen, { code: 67, stderr: "curl: (67) Login denied" });
  } finally {
    auth.setHandler((req) => {
      const protocol = req.header("Auth-Protocol");
      const port = protocol === "imap" ? dovecot.imapPort : protocol === "pop3" ? dovecot.pop3Port : smtp.port;
      return {
        headers: [
          ["Auth-Status", "OK"],
          ["Auth-Server", "127.0.0.1"],
          ["Auth-Port", String(port)],
        ],
      };
    });
  }
});

test("python imaplib, poplib and smtplib through the proxy", async () => {
  const seen = await onBoth(async (ports) => {
    const imap = await python(
      `
import imaplib, sys
m = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
print(m.capabilities)
m.login(sys.argv[2], sys.argv[3])
typ, data = m.select('INBOX')
print(typ, data)
typ, data = m.fetch('1', '(BODY.PEEK[])')
sys.stdout.write(str(len(data[0][1])) + '\\n')
print(m.logout()[0])
`,
      [String(ports.imap), USER, PASS],
    );
    const pop = await python(
      `
import poplib, sys
p = poplib.POP3('127.0.0.1', int(sys.argv[1]))
print(p.getwelcome()[:14])
print(sorted(p.capa().keys()))
p.user(sys.argv[2])
print(p.pass_(sys.argv[3])[:3])
print(p.stat())
resp, lines, octets = p.retr(1)
print(octets)
print(p.quit()[:3])
`,
      [String(ports.pop3), USER, PASS],
    );
    const start = smtp.messages.length;
    const smtpOut = await python(
      `
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='py.example')
print(s.ehlo())
print(s.login(sys.argv[2], sys.argv[3]))
print(s.sendmail('a@example.com', ['b@example.com', 'c@example.com'], 'Subject: py\\r\\n\\r\\n.leading dot\\r\\nbye\\r\\n'))
print(s.quit()[0])
`,
      [String(ports.smtp), USER, PASS],
    );
    return { imap: imap.stdout + imap.stderr, pop: pop.stdout + pop.stderr, smtp: smtpOut.stdout + smtpOut.stderr, messages: received(start) };
  });
  assert.equal(seen.imap, `('IMAP4REV1', 'LITERAL+', 'AUTH=PLAIN')\nOK [b'1']\n${SIZE}\nBYE\n`);
  assert.equal(seen.pop, `b'+OK POP3 ready'\n['SASL', 'TOP', 'UIDL', 'USER']\nb'+OK'\n(1, ${SIZE})\n${SIZE}\nb'+OK'\n`);
  assert.equal(seen.smtp, "(250, b'mx.example.test\\nPIPELINING\\n8BITMIME\\nSIZE 10485760\\nAUTH PLAIN LOGIN')\n(235, b'2.0.0 OK')\n{}\n221\n");
  assert.deepEqual(
    seen.messages.map((m) => [m.rcptTo, m.data, m.user, m.xclient.LOGIN]),
    [[["b@example.com", "c@example.com"], "Subject: py\r\n\r\n.leading dot\r\nbye\r\n", USER, USER]],
  );
});

test("imapflow through the proxy: capabilities, mailbox, download", async () => {
  const seen = await onBoth(async (ports) => {
    const client = new ImapFlow({
      host: "127.0.0.1",
      port: ports.imap,
      secure: false,
      logger: false,
      disableAutoIdle: true,
      auth: { user: USER, pass: PASS },
    });
    try {
      await client.connect();
      const lock = await client.getMailboxLock("INBOX");
      try {
        const status = await client.status("INBOX", { messages: true });
        const msg = await client.fetchOne("1", { source: true });
        return { messages: status.messages, exact: msg !== false && msg.source?.toString("latin1") === message };
      } finally {
        lock.release();
      }
    } finally {
      await client.logout().catch(() => undefined);
      client.close();
    }
  });
  assert.deepEqual(seen, { messages: 1, exact: true });
});

test("nodemailer and swaks send through the proxy to smtp-server", async () => {
  const seen = await onBoth(async (ports) => {
    const start = smtp.messages.length;
    const transport = nodemailer.createTransport({
      host: "127.0.0.1",
      port: ports.smtp,
      secure: false,
      ignoreTLS: true,
      name: "nm.example",
      auth: { user: USER, pass: PASS },
      connectionTimeout: 5000,
      greetingTimeout: 5000,
      socketTimeout: 10000,
    });
    let info;
    try {
      info = await transport.sendMail({
        envelope: { from: "a@example.com", to: ["b@example.com"] },
        raw: "Subject: nodemailer\r\n\r\nbig line " + "z".repeat(100_000) + "\r\n",
        from: "a@example.com",
        to: "b@example.com",
      });
    } finally {
      transport.close();
    }
    const swaks = await run("swaks", [
      "--server",
      `127.0.0.1:${ports.smtp}`,
      "--helo",
      "sw.example",
      "--auth",
      "LOGIN",
      "--auth-user",
      USER,
      "--auth-password",
      PASS,
      "--from",
      "a@example.com",
      "--to",
      "d@example.com",
      "--header",
      "Subject: swaks",
      "--body",
      "hello from swaks",
      "--timeout",
      "10",
    ]);
    const lines = swaks.stdout
      .split("\n")
      .filter((l) => /^(<-|<~|\*\*\*)/.test(l))
      .map((l) => l.replace(/queued as \S+/, "queued"));
    return {
      accepted: info.accepted,
      response: info.response.replace(/queued as \S+/, "queued"),
      swaksCode: swaks.code,
      swaksServer: lines,
      messages: received(start).map((m) => ({ rcptTo: m.rcptTo, size: m.data.length, user: m.user, login: m.xclient.LOGIN })),
    };
  });
  assert.deepEqual(seen.accepted, ["b@example.com"]);
  assert.equal(seen.swaksCode, 0, seen.swaksServer.join("\n"));
  assert.ok(seen.swaksServer.includes("<-  235 2.0.0 OK"), seen.swaksServer.join("\n"));
  assert.equal(seen.messages.length, 2);
  assert.deepEqual(seen.messages[0], { rcptTo: ["b@example.com"], size: "Subject: nodemailer\r\n\r\nbig line \r\n".length + 100_000, user: USER, login: USER });
  assert.deepEqual(seen.messages[1]!.rcptTo, ["d@example.com"]);
});

test("STARTTLS with real clients: curl imap:// --ssl-reqd and python smtplib starttls() on starttls-only servers", async () => {
  const seen = await onBoth(async (ports) => {
    const plain = await run("curl", ["-sS", "--max-time", "15", "--user", `${USER}:${PASS}`, `imap://127.0.0.1:${ports.imapTls}/INBOX;UID=1`]);
    const tls = await run("curl", [
      "-sS",
      "-k",
      "--ssl-reqd",
      "--max-time",
      "15",
      "--user",
      `${USER}:${PASS}`,
      `imap://127.0.0.1:${ports.imapTls}/INBOX;UID=1`,
    ]);
    const start = smtp.messages.length;
    const py = await python(
      `
import smtplib, ssl, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='py.example')
print(s.ehlo()[1])
print(s.starttls(context=ssl._create_unverified_context()))
print(s.sock.version())
print(s.ehlo()[1])
print(s.login(sys.argv[2], sys.argv[3]))
print(s.sendmail('a@example.com', ['b@example.com'], 'Subject: tls\\r\\n\\r\\nover tls\\r\\n'))
s.quit()
`,
      [String(ports.smtpTls), USER, PASS],
    );
    return {
      plain: { code: plain.code, stderr: plain.stderr.trim() },
      tls: { code: tls.code, exact: tls.stdout === message },
      smtp: py.stdout + py.stderr,
      messages: received(start).map((m) => [m.data.toString(), m.user]),
    };
  });
  // Without TLS curl cannot log in: LOGINDISABLED and no AUTH= mechanism.
  assert.notEqual(seen.plain.code, 0);
  assert.deepEqual(seen.tls, { code: 0, exact: true });
  assert.equal(seen.smtp, "b'mx.example.test\\nSTARTTLS'\n(220, b'2.0.0 Start TLS')\nTLSv1.3\nb'mx.example.test\\nAUTH PLAIN LOGIN'\n(235, b'2.0.0 OK')\n{}\n");
  assert.deepEqual(seen.messages, [["Subject: tls\r\n\r\nover tls\r\n", USER]]);
});

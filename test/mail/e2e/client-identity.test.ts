/**
 * The client's identity on a real Dovecot backend (docs/client-identity.md):
 * Dovecot trusts the proxy (login_trusted_networks = 127.0.0.1, the address
 * Postern connects from) and logs the address it was given (`rip=`, `rport=`)
 * and the ID fields (imap_id_log = *). Raw clients connect from 127.0.0.5,
 * so the client's address and the proxy's differ; imapflow connects as is
 * and is told apart by its port and its own ID fields.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { ImapFlow } from "imapflow";
import { MailClient } from "../../support/client.js";
import { startDovecot, type Dovecot } from "../../support/dovecot.js";
import { startFakeAuth, type FakeAuth } from "../../support/fake-auth.js";
import type { MailProxyProcess } from "../../support/mail-proxy.js";
import { freePorts } from "../../support/ports.js";
import { startPostern } from "../../support/postern.js";

const USER = "test@example.com";
const PASS = "secret";
const CLIENT_ADDR = "127.0.0.5";
const CLIENT_RE = "127\\.0\\.0\\.5";

let dovecot: Dovecot;
let auth: FakeAuth;
let postern: MailProxyProcess;
const port = { imapOn: 0, imapOff: 0, pop3On: 0, pop3Off: 0, imapProxy: 0, pop3Proxy: 0 };

before(async () => {
  const [imapPort, pop3Port] = (await freePorts(2)) as [number, number];
  dovecot = await startDovecot({
    imapPort,
    pop3Port,
    extraConfig: `
login_trusted_networks = 127.0.0.1/32
imap_id_log = *
login_log_format_elements = user=<%u> method=%m rip=%r rport=%{rport} lip=%l mpid=%e %c session=<%{session}>
`,
  });
  auth = await startFakeAuth((req) => ({
    headers: [
      ["Auth-Status", "OK"],
      ["Auth-Server", "127.0.0.1"],
      ["Auth-Port", String(req.header("Auth-Protocol") === "imap" ? dovecot.imapPort : dovecot.pop3Port)],
    ],
  }));
  [port.imapOn, port.imapOff, port.pop3On, port.pop3Off, port.imapProxy, port.pop3Proxy] = (await freePorts(6)) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  postern = await startPostern(`
    auth_http ${auth.url};
    server { listen 127.0.0.1:${port.imapOn}; protocol imap; imap_id on; }
    server { listen 127.0.0.1:${port.imapOff}; protocol imap; }
    server { listen 127.0.0.1:${port.pop3On}; protocol pop3; pop3_xclient on; }
    server { listen 127.0.0.1:${port.pop3Off}; protocol pop3; }
    server { listen 127.0.0.1:${port.imapProxy} proxy_protocol; protocol imap; imap_id on; set_real_ip_from 127.0.0.0/8; }
    server { listen 127.0.0.1:${port.pop3Proxy} proxy_protocol; protocol pop3; pop3_xclient on; set_real_ip_from 127.0.0.0/8; }
  `);
});

after(async () => {
  await postern?.stop();
  await auth?.close();
  await dovecot?.stop();
});

/** Dovecot's log lines for logins of USER (one per session), in order. */
function logins(service: "imap-login" | "pop3-login"): string[] {
  return dovecot
    .log()
    .split("\n")
    .filter((l) => l.includes(`${service}: Info: Login: user=<${USER}>`));
}

/** Waits until Dovecot has logged `count` logins for the service; returns the last. */
async function lastLogin(service: "imap-login" | "pop3-login", count: number): Promise<string> {
  for (let i = 0; i < 200 && logins(service).length < count; i++) await new Promise((r) => setTimeout(r, 25));
  const all = logins(service);
  assert.equal(all.length, count, dovecot.log());
  return all[count - 1]!;
}

async function imapSession(p: number, before: string[] = [], extra: { proxyHeader?: string } = {}): Promise<{ client: MailClient; localPort: number }> {
  const client = await MailClient.connect({ port: p, localAddress: CLIENT_ADDR });
  if (extra.proxyHeader) await client.send(extra.proxyHeader);
  assert.equal(await client.readLine(), "* OK IMAP4 ready\r\n");
  for (const line of before) await client.send(line);
  await client.send(`a1 LOGIN ${USER} ${PASS}\r\n`);
  assert.match(await client.read(/^a1 .*\r\n/m), /a1 OK/);
  await client.send("a2 LOGOUT\r\n");
  await client.read(/^a2 OK.*\r\n/m);
  return { client, localPort: client.localPort! };
}

let imapCount = 0;
let pop3Count = 0;

test("imap_id on: Dovecot logs the client's address and port, the session id, and the client's ID fields", async () => {
  const id = 'b1 ID ("name" "raw \\"quoted\\" client" "version" "2.0" "os" NIL "x-originating-ip" "203.0.113.66")\r\n';
  const { client, localPort } = await imapSession(port.imapOn, [id]);
  assert.match(client.transcriptText(), /S: "\* ID NIL\\r\\nb1 OK completed\\r\\n"/);
  const login = await lastLogin("imap-login", ++imapCount);
  assert.match(login, new RegExp(`, rip=${CLIENT_RE}, rport=${localPort}, lip=127\\.0\\.0\\.1, `));
  const sessionId = /session=<([0-9a-z.]+)>/.exec(login)?.[1];
  assert.ok(sessionId, login);
  const idLine = dovecot
    .log()
    .split("\n")
    .find((l) => l.includes("imap-login: Info: ID sent:") && l.includes(`x-session-id=${sessionId}`));
  // the client's own x-originating-ip is not passed on: the proxy's word is the only one
  assert.equal(
    idLine?.replace(/^.*?ID sent: /, "").replace(/: user=<.*$/, ""),
    `x-originating-ip=${CLIENT_ADDR}, x-originating-port=${localPort}, x-connected-ip=127.0.0.1, x-connected-port=${port.imapOn}, ` +
      `x-session-id=${sessionId}, name=raw "quoted" client, version=2.0, os=NIL`,
  );
});

test("imap_id off: Dovecot sees the proxy's address, and ID before login is an unknown command", async () => {
  const { client } = await imapSession(port.imapOff, ['b1 ID ("name" "x")\r\n']);
  assert.match(client.transcriptText(), /S: "b1 BAD invalid command\\r\\n"/);
  const login = await lastLogin("imap-login", ++imapCount);
  assert.match(login, /, rip=127\.0\.0\.1, rport=\d+, lip=127\.0\.0\.1, /);
});

test("imap_id on behind PROXY protocol and set_real_ip_from: the forwarded address is the real one", async () => {
  await imapSession(port.imapProxy, [], { proxyHeader: "PROXY TCP4 192.0.2.7 198.51.100.1 40001 143\r\n" });
  const login = await lastLogin("imap-login", ++imapCount);
  assert.match(login, /, rip=192\.0\.2\.7, rport=40001, /);
});

test("imapflow: its automatic ID reaches Dovecot's login process through Postern, with its port", async () => {
  const client = new ImapFlow({
    host: "127.0.0.1",
    port: port.imapOn,
    secure: false,
    logger: false,
    auth: { user: USER, pass: PASS },
    clientInfo: { name: "ident-flow", version: "7.1" },
  });
  await client.connect();
  const localPort = (client as unknown as { socket: { localPort: number } }).socket.localPort;
  const box = await client.mailboxOpen("INBOX");
  assert.equal(box.path, "INBOX");
  await client.logout();
  await lastLogin("imap-login", ++imapCount);
  const idLine = dovecot
    .log()
    .split("\n")
    .find((l) => l.includes("imap-login: Info: ID sent:") && l.includes("name=ident-flow"));
  assert.ok(idLine, dovecot.log());
  assert.match(idLine, new RegExp(`^.*ID sent: x-originating-ip=127\\.0\\.0\\.1, x-originating-port=${localPort}, .*name=ident-flow, version=7\\.1, `));
});

async function pop3Session(p: number, proxyHeader?: string): Promise<void> {
  const client = await MailClient.connect({ port: p, localAddress: CLIENT_ADDR });
  if (proxyHeader) await client.send(proxyHeader);
  assert.match(await client.readLine(), /^\+OK/);
  await client.send(`USER ${USER}\r\n`);
  assert.match(await client.readLine(), /^\+OK/);
  await client.send(`PASS ${PASS}\r\n`);
  assert.match(await client.readLine(), /^\+OK Logged in/);
  await client.send("QUIT\r\n");
  assert.match(await client.readLine(), /^\+OK/);
}

test("pop3_xclient on: Dovecot (which offers XCLIENT to the proxy) logs the client's address, port and session id", async () => {
  await pop3Session(port.pop3On);
  const login = await lastLogin("pop3-login", ++pop3Count);
  assert.match(login, new RegExp(`, rip=${CLIENT_RE}, rport=\\d+, lip=127\\.0\\.0\\.1, .*session=<[0-9a-z]+\\.[0-9a-z]+\\.[0-9a-z]+>`));
});

test("pop3_xclient off: Dovecot sees the proxy's address", async () => {
  await pop3Session(port.pop3Off);
  const login = await lastLogin("pop3-login", ++pop3Count);
  assert.match(login, /, rip=127\.0\.0\.1, /);
});

test("pop3_xclient on behind PROXY protocol and set_real_ip_from: the forwarded address is the real one", async () => {
  await pop3Session(port.pop3Proxy, "PROXY TCP4 192.0.2.8 198.51.100.1 40002 110\r\n");
  const login = await lastLogin("pop3-login", ++pop3Count);
  assert.match(login, /, rip=192\.0\.2\.8, rport=40002, /);
});

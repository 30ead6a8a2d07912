/**
 * The client's identity, hostile and edge cases, through a real Postern to
 * fake backends that record every byte (docs/client-identity.md,
 * docs/behaviour/imap.md#imap-14-id-before-login): ID with CR/LF in a literal, quotes and
 * backslashes, too many pairs, oversized values, bad syntax counted against
 * max_errors, ID pipelined with LOGIN, a client's own x-* fields, a backend
 * that refuses ID, and POP3 backends with and without XCLIENT.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { certs } from "../../support/certs.js";
import { MailClient } from "../../support/client.js";
import { type FakeBackend, startFakeImap, startFakePop3 } from "../../support/fake-backend.js";
import { startFakeAuth, type FakeAuth } from "../../support/fake-auth.js";
import type { MailProxyProcess } from "../../support/mail-proxy.js";
import { freePorts } from "../../support/ports.js";
import { startPostern } from "../../support/postern.js";

let imap: FakeBackend;
let imapRefusing: FakeBackend;
let pop3: FakeBackend;
let pop3Plain: FakeBackend;
let pop3Refusing: FakeBackend;
let auth: FakeAuth;
let postern: MailProxyProcess;
const port = { imap: 0, imapTls: 0, pop3: 0 };

before(async () => {
  imap = await startFakeImap({ identity: true });
  imapRefusing = await startFakeImap();
  pop3 = await startFakePop3({ identity: true, greeting: "+OK [XCLIENT] fake pop3" });
  pop3Plain = await startFakePop3({ identity: true });
  pop3Refusing = await startFakePop3({ greeting: "+OK [XCLIENT] fake pop3" });
  // the login names the backend, so one auth service serves every server
  const backends: Record<string, FakeBackend> = { imap, refusing: imapRefusing, pop3, plain: pop3Plain, "pop3-refusing": pop3Refusing };
  auth = await startFakeAuth((req) => ({
    headers: [
      ["Auth-Status", "OK"],
      ["Auth-Server", "127.0.0.1"],
      ["Auth-Port", String(backends[req.header("Auth-User") ?? ""]!.port)],
    ],
  }));
  [port.imap, port.imapTls, port.pop3] = (await freePorts(3)) as [number, number, number];
  const pki = certs();
  postern = await startPostern(`
    auth_http ${auth.url};
    imap_id on;
    pop3_xclient on;
    max_errors 3;
    imap_client_buffer 8k;
    server { listen 127.0.0.1:${port.imap}; protocol imap; }
    server { listen 127.0.0.1:${port.pop3}; protocol pop3; }
    server { listen 127.0.0.1:${port.imapTls}; protocol imap; starttls on;
             ssl_certificate ${pki.serverRsa.cert}; ssl_certificate_key ${pki.serverRsa.key}; }
  `);
});

after(async () => {
  await postern?.stop();
  await auth?.close();
  for (const b of [imap, imapRefusing, pop3, pop3Plain, pop3Refusing]) await b?.close();
});

/** Waits (up to 3 s) for the error log to match: the worker writes it asynchronously. */
async function logMatches(re: RegExp): Promise<void> {
  for (let i = 0; i < 120 && !re.test(postern.errorLog()); i++) await new Promise((r) => setTimeout(r, 25));
  assert.match(postern.errorLog(), re);
}

async function imapClient(): Promise<MailClient> {
  const c = await MailClient.connect({ port: port.imap, localAddress: "127.0.0.5" });
  assert.equal(await c.readLine(), "* OK IMAP4 ready\r\n");
  return c;
}

/** Logs in as `backend` (the fake auth's routing) and returns the ID line the backend received. */
async function loginAndBackendId(c: MailClient, backend: FakeBackend, user = "imap"): Promise<string> {
  const before = backend.connections.length;
  await c.send(`l1 LOGIN ${user} pw\r\n`);
  assert.match(await c.readLine(), /^l1 OK LOGIN completed\r\n$/);
  const [conn] = (await backend.waitForConnections(before + 1)).slice(before);
  assert.match(conn!.commands[1] ?? "", /^l1 LOGIN /);
  return conn!.commands[0]!;
}

/** The proxy's own fields for a client on 127.0.0.5 and this connection. */
function ownFields(c: MailClient, line: string): string {
  const session = /"x-session-id" "([0-9a-z.]+)"/.exec(line)?.[1] ?? "(none)";
  return `"x-originating-ip" "127.0.0.5" "x-originating-port" "${c.localPort}" "x-connected-ip" "127.0.0.1" "x-connected-port" "${port.imap}" "x-session-id" "${session}"`;
}

test("capability advertises ID; ID is answered `* ID NIL`; the backend gets the quoted fields, quotes and backslashes escaped", async () => {
  const c = await imapClient();
  await c.send("c1 CAPABILITY\r\n");
  assert.equal(await c.read(/c1 .*\r\n/), "* CAPABILITY IMAP4 IMAP4rev1 UIDPLUS ID AUTH=PLAIN\r\nc1 OK completed\r\n");
  // a quoted string with \" and \\, a literal value, NIL
  await c.send('i1 ID ("name" "a\\"b\\\\c" "version" {3}\r\n');
  assert.equal(await c.readLine(), "+ OK\r\n");
  await c.send('1.0 "os" nil)\r\n');
  assert.equal(await c.read(/i1 .*\r\n/), "* ID NIL\r\ni1 OK completed\r\n");
  const line = await loginAndBackendId(c, imap);
  assert.equal(line, `l1 ID (${ownFields(c, line)} "name" "a\\"b\\\\c" "version" "1.0" "os" NIL)`);
});

test("a client's own x-* fields are not passed on: the address is the proxy's word only", async () => {
  const c = await imapClient();
  await c.send('i1 ID ("X-Originating-IP" "203.0.113.9" "x-forward-master" "admin" "name" "ok")\r\n');
  assert.equal(await c.read(/i1 .*\r\n/), "* ID NIL\r\ni1 OK completed\r\n");
  const line = await loginAndBackendId(c, imap);
  assert.equal(line, `l1 ID (${ownFields(c, line)} "name" "ok")`);
});

test("ID pipelined with LOGIN in one write: both answered in order, the fields reach the backend", async () => {
  const c = await imapClient();
  const before = imap.connections.length;
  await c.send('p1 ID ("name" "pipe")\r\np2 LOGIN imap pw\r\n');
  assert.equal(await c.read(/p2 .*\r\n/), "* ID NIL\r\np1 OK completed\r\np2 OK LOGIN completed\r\n");
  const [conn] = (await imap.waitForConnections(before + 1)).slice(before);
  assert.match(conn!.commands[0]!, /^p2 ID \("x-originating-ip" "127\.0\.0\.5" .* "name" "pipe"\)$/);
  assert.match(conn!.commands[1]!, /^p2 LOGIN /);
});

test("CR/LF inside an ID literal: the literal is skipped whole, the line refused (BAD), nothing of it reaches the backend", async () => {
  const c = await imapClient();
  await c.send('i1 ID ("name" {7}\r\n');
  assert.equal(await c.readLine(), "+ OK\r\n");
  await c.send("a\r\nb LOG)\r\n");
  assert.equal(await c.readLine(), "i1 BAD invalid command\r\n");
  const line = await loginAndBackendId(c, imap);
  assert.equal(line, `l1 ID (${ownFields(c, line)})`);
});

test("bad ID syntax, too many pairs and oversized values: BAD, counted as invalid commands (max_errors)", async () => {
  const pairs = (n: number): string => Array.from({ length: n }, (_, i) => `"f${i}" "v"`).join(" ");
  const refused = [
    "ID",
    "ID ()x",
    'ID  ("a" "b")',
    'ID ( "a" "b")',
    'ID ("a")',
    'ID ("a" "b" "A" "c")',
    'ID (NIL "b")',
    'ID ("a" "\\x")',
    'ID ("a" "é")',
    'ID ("" "b")',
    `ID (${pairs(31)})`,
    `ID ("${"f".repeat(31)}" "v")`,
    `ID ("a" "${"v".repeat(1025)}")`,
    "ID {1025}",
  ];
  const accepted = ["ID NIL", "ID ()", `ID (${pairs(30)})`, `ID ("${"f".repeat(30)}" "${"v".repeat(1024)}")`, 'ID ("a" NIL)'];
  for (const [i, cmd] of refused.entries()) {
    const c = await imapClient();
    await c.send(`r${i} ${cmd}\r\n`);
    assert.equal(await c.readLine(), `r${i} BAD invalid command\r\n`, cmd);
    await c.send("n1 NOOP\r\n");
    assert.equal(await c.readLine(), "n1 OK completed\r\n", cmd);
  }
  for (const [i, cmd] of accepted.entries()) {
    const c = await imapClient();
    await c.send(`a${i} ${cmd}\r\n`);
    assert.equal(await c.read(/a\d+ .*\r\n/), `* ID NIL\r\na${i} OK completed\r\n`, cmd.slice(0, 40));
  }
  // three bad IDs: the third closes the session, as any invalid command does
  const c = await imapClient();
  for (const n of [1, 2, 3]) {
    await c.send(`m${n} ID (x)\r\n`);
    assert.equal(await c.readLine(), `m${n} BAD invalid command\r\n`);
  }
  await c.expectClosed();
  await logMatches(/\[info\] .*client sent too many invalid commands while in auth state, client: 127\.0\.0\.5, server: /);
});

test("an IMAP backend that refuses ID: the client gets the internal error, the log quotes the backend", async () => {
  const c = await imapClient();
  await c.send("l1 LOGIN refusing pw\r\n");
  assert.equal(await c.readLine(), "* BAD internal server error\r\n");
  await c.expectClosed();
  await logMatches(
    /\[error\] .*upstream sent invalid response: "l1 BAD not logged in" while reading response from upstream, client: 127\.0\.0\.5, server: 127\.0\.0\.1:\d+, login: "refusing"/,
  );
  assert.deepEqual(
    imapRefusing.connections.at(-1)!.commands.map((l) => l.split(" (")[0]),
    ["l1 ID"],
  );
});

async function pop3Login(user: string): Promise<MailClient> {
  const c = await MailClient.connect({ port: port.pop3, localAddress: "127.0.0.5" });
  assert.match(await c.readLine(), /^\+OK/);
  await c.send(`USER ${user}\r\nPASS pw\r\n`);
  assert.equal(await c.read(/logged in\r\n/), "+OK\r\n+OK logged in\r\n");
  return c;
}

test("POP3 backend offering XCLIENT: XCLIENT ADDR= PORT= SESSION= before USER", async () => {
  const c = await pop3Login("pop3");
  const conn = pop3.connections.at(-1)!;
  const received = conn.received.toString("latin1");
  assert.match(
    received,
    new RegExp(`^XCLIENT ADDR=127\\.0\\.0\\.5 PORT=${c.localPort} SESSION=[0-9a-z]+\\.[0-9a-z]+\\.[0-9a-z]+\\r\\nUSER pop3\\r\\nPASS pw\\r\\n$`),
  );
});

test("POP3 backend without XCLIENT in its greeting: plain USER/PASS, and a warn line says the address was not passed", async () => {
  await pop3Login("plain");
  assert.equal(pop3Plain.connections.at(-1)!.received.toString("latin1"), "USER plain\r\nPASS pw\r\n");
  await logMatches(
    /\[warn\] .*upstream does not offer XCLIENT, client address not passed while reading response from upstream, client: 127\.0\.0\.5, server: /,
  );
});

test("POP3 backend offering XCLIENT but refusing it: the client gets the internal error, the log quotes the backend", async () => {
  const c = await MailClient.connect({ port: port.pop3, localAddress: "127.0.0.5" });
  assert.match(await c.readLine(), /^\+OK/);
  await c.send("USER pop3-refusing\r\nPASS pw\r\n");
  assert.equal(await c.read(/error\r\n/), "+OK\r\n-ERR internal server error\r\n");
  await c.expectClosed();
  assert.match(pop3Refusing.connections.at(-1)!.received.toString("latin1"), /^XCLIENT ADDR=127\.0\.0\.5 [^\r\n]*\r\n$/);
  await logMatches(
    /\[error\] .*upstream sent invalid response: "-ERR not logged in" while reading response from upstream, client: 127\.0\.0\.5, server: .*login: "pop3-refusing"/,
  );
});

test("an ID sent before STARTTLS is forgotten: only what the client says under TLS is passed on", async () => {
  const c = await MailClient.connect({ port: port.imapTls, localAddress: "127.0.0.5" });
  assert.equal(await c.readLine(), "* OK IMAP4 ready\r\n");
  await c.send('i1 ID ("name" "injected")\r\n');
  assert.equal(await c.read(/i1 .*\r\n/), "* ID NIL\r\ni1 OK completed\r\n");
  await c.send("s1 STARTTLS\r\n");
  assert.equal(await c.readLine(), "s1 OK completed\r\n");
  await c.startTls();
  const before = imap.connections.length;
  await c.send("l1 LOGIN imap pw\r\n");
  assert.match(await c.readLine(), /^l1 OK LOGIN completed\r\n$/);
  const [conn] = (await imap.waitForConnections(before + 1)).slice(before);
  assert.match(
    conn!.commands[0]!,
    /^l1 ID \("x-originating-ip" "127\.0\.0\.5" "x-originating-port" "\d+" "x-connected-ip" "127\.0\.0\.1" "x-connected-port" "\d+" "x-session-id" "[0-9a-z.]+"\)$/,
  );
});

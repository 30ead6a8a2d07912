/**
 * The backend login with the token, when the auth service answers OK with
 * `Auth-Method: xoauth2` or `oauthbearer`: Postern reads the backend's
 * capabilities, then AUTHENTICATE / AUTH with the token built from
 * Auth-User and Auth-Pass; a backend that does not offer the mechanism gets
 * no token (internal error to the client, its capability line logged); an
 * unknown Auth-Method value is an invalid header. Without Auth-Method the
 * login is the usual LOGIN / USER+PASS (oauth-sasl.test.ts).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { MailClient } from "../../support/client.js";
import { startFakeAuth, type FakeAuth } from "../../support/fake-auth.js";
import type { MailProxyProcess } from "../../support/mail-proxy.js";
import { freePorts } from "../../support/ports.js";
import { startPostern } from "../../support/postern.js";

const USER = "test@example.com";
const TOKEN = "client-token.abc";
const b64 = (s: string): string => Buffer.from(s, "latin1").toString("base64");

/** A scripted backend: greeting, then each received line answered by `reply`; records the lines. */
interface Scripted {
  port: number;
  lines: string[];
  close(): Promise<void>;
}
async function scripted(greeting: string, reply: (line: string) => string): Promise<Scripted> {
  const lines: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.write(greeting);
    let buf = "";
    s.on("data", (d) => {
      buf += d.toString("latin1");
      let i;
      while ((i = buf.indexOf("\r\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        lines.push(line);
        s.write(reply(line));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    lines,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

let imap: Scripted;
let imapNoOauth: Scripted;
let pop3: Scripted;
let smtp: Scripted;
let auth: FakeAuth;
let postern: MailProxyProcess;
let ports: { imap: number; pop3: number; smtp: number };
let imapBackend = 0;
let method = "xoauth2";

before(async () => {
  imap = await scripted("* OK ready\r\n", (line) => {
    const [tag, cmd] = line.split(" ");
    if (cmd === "CAPABILITY") return `* CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 AUTH=OAUTHBEARER\r\n${tag} OK done\r\n`;
    if (cmd === "AUTHENTICATE") return "+ \r\n";
    return `a1 OK logged in\r\n`;
  });
  imapNoOauth = await scripted("* OK ready\r\n", (line) => `* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n${line.split(" ")[0]} OK done\r\n`);
  pop3 = await scripted("+OK ready\r\n", (line) =>
    line === "CAPA" ? "+OK\r\nUSER\r\nSASL PLAIN OAUTHBEARER\r\n.\r\n" : line.startsWith("AUTH") ? "+ \r\n" : "+OK logged in\r\n",
  );
  smtp = await scripted("220 backend ESMTP\r\n", (line) =>
    line.startsWith("EHLO") ? "250-backend\r\n250-AUTH PLAIN XOAUTH2\r\n250 8BITMIME\r\n" : line.startsWith("AUTH") ? "235 2.7.0 ok\r\n" : "250 ok\r\n",
  );
  auth = await startFakeAuth((req) => {
    const protocol = req.header("Auth-Protocol");
    const port = protocol === "imap" ? imapBackend : protocol === "pop3" ? pop3.port : smtp.port;
    return {
      headers: [
        ["Auth-Status", "OK"],
        ["Auth-Server", "127.0.0.1"],
        ["Auth-Port", String(port)],
        ["Auth-Method", protocol === "pop3" ? "oauthbearer" : method],
      ],
    };
  });
  const [i, p, s] = (await freePorts(3)) as [number, number, number];
  ports = { imap: i, pop3: p, smtp: s };
  postern = await startPostern(`
    auth_http ${auth.url};
    server { listen 127.0.0.1:${i}; protocol imap; imap_auth oauthbearer xoauth2; }
    server { listen 127.0.0.1:${p}; protocol pop3; pop3_auth oauthbearer; }
    server { listen 127.0.0.1:${s}; protocol smtp; smtp_auth xoauth2; }
  `);
});

after(async () => {
  const log = postern?.errorLog() ?? "";
  await postern?.stop();
  await Promise.all([auth?.close(), imap?.close(), imapNoOauth?.close(), pop3?.close(), smtp?.close()]);
  assert.ok(!log.includes(TOKEN), "the token in the error log");
});

async function login(port: number, command: string): Promise<MailClient> {
  const c = await MailClient.connect({ port });
  await c.readLine();
  if (port === ports.smtp) {
    await c.send("EHLO c\r\n");
    await c.read(/^250 .*\r\n/m);
  }
  await c.send(command);
  return c;
}

test("IMAP: CAPABILITY, then AUTHENTICATE XOAUTH2 with the token to the backend", async () => {
  imapBackend = imap.port;
  method = "xoauth2";
  const c = await login(ports.imap, `a1 AUTHENTICATE OAUTHBEARER ${b64(`n,a=${USER},\x01auth=Bearer ${TOKEN}\x01\x01`)}\r\n`);
  assert.equal(await c.readLine(), "a1 OK logged in\r\n");
  c.close();
  assert.deepEqual(imap.lines.slice(-3), ["a1 CAPABILITY", "a1 AUTHENTICATE XOAUTH2", b64(`user=${USER}\x01auth=Bearer ${TOKEN}\x01\x01`)]);
});

test("POP3: CAPA, then AUTH OAUTHBEARER with a GS2 header built from Auth-User", async () => {
  const c = await login(ports.pop3, `AUTH OAUTHBEARER ${b64(`n,a=${USER},\x01auth=Bearer ${TOKEN}\x01\x01`)}\r\n`);
  assert.equal(await c.readLine(), "+OK logged in\r\n");
  c.close();
  assert.deepEqual(pop3.lines.slice(-3), ["CAPA", "AUTH OAUTHBEARER", b64(`n,a=${USER},\x01auth=Bearer ${TOKEN}\x01\x01`)]);
});

test("SMTP: EHLO with AUTH XOAUTH2, then AUTH XOAUTH2 with the initial response; the client gets 235", async () => {
  const c = await login(ports.smtp, `AUTH XOAUTH2 ${b64(`user=${USER}\x01auth=Bearer ${TOKEN}\x01\x01`)}\r\n`);
  assert.equal(await c.readLine(), "235 2.0.0 OK\r\n");
  c.close();
  assert.equal(smtp.lines.at(-1), `AUTH XOAUTH2 ${b64(`user=${USER}\x01auth=Bearer ${TOKEN}\x01\x01`)}`);
});

test("a backend that does not offer the mechanism gets no token: internal error, its capability line logged", async () => {
  imapBackend = imapNoOauth.port;
  const c = await login(ports.imap, `a1 AUTHENTICATE XOAUTH2 ${b64(`user=${USER}\x01auth=Bearer ${TOKEN}\x01\x01`)}\r\n`);
  assert.equal(await c.expectClosed(), "* BAD internal server error\r\n");
  assert.deepEqual(imapNoOauth.lines, ["a1 CAPABILITY"]);
  assert.match(postern.errorLog(), /\[error\] .*upstream sent invalid response: "\* CAPABILITY IMAP4rev1 AUTH=PLAIN/);
});

test("an Auth-Method other than plain, oauthbearer or xoauth2: invalid header, internal error", async () => {
  imapBackend = imap.port;
  method = "cram-md5";
  const c = await login(ports.imap, `a1 AUTHENTICATE XOAUTH2 ${b64(`user=${USER}\x01auth=Bearer ${TOKEN}\x01\x01`)}\r\n`);
  assert.equal(await c.expectClosed(), "* BAD internal server error\r\n");
  assert.match(postern.errorLog(), /\[error\] .*sent invalid Auth-Method:"cram-md5"/);
});

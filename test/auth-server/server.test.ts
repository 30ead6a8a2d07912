import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AuthResponse } from "../../src/mail/auth-http/response.js";
import type { Credentials, MailProtocolName } from "../../src/mail/types.js";
import { runAuthServer, runPasswd } from "../../src/auth-server/cli.js";
import { ask as askAs, io, plain } from "./helpers.js";
import { startAuthServer, unescapeAuthValue, type RunningAuthServer } from "../../src/auth-server/server.js";
import { escapeAuthValue } from "../../src/mail/auth-http/request.js";
import fc from "fast-check";
import { parseUsers } from "../../src/auth-server/users.js";

let dir = "";
let usersFile = "";
let server: RunningAuthServer | undefined;
const logLines: string[] = [];

/** Test entries use a low scrypt cost, so the suite stays fast (the default is tested in passwd.test.ts). */
const TEST_SCRYPT = { N: 1024, r: 8, p: 1 };

async function passwd(args: string[], password: string): Promise<void> {
  const x = io(`${password}\n`);
  const code = await runPasswd(["--scrypt-n", "1024", ...args], x);
  assert.equal(code, 0, x.err());
}

/** Sends a request exactly as nginx would (one connection, HTTP/1.0, read to close). */
function ask(
  port: number,
  protocol: MailProtocolName,
  credentials: Credentials,
  attempt = 1,
  clientAddr = "127.0.0.1",
): Promise<AuthResponse & { raw: string }> {
  return askAs(port, protocol, credentials, clientAddr, [], attempt);
}

const s = (b: Buffer | undefined): string | undefined => b?.toString("latin1");

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "postern-authsrv-"));
  usersFile = join(dir, "users");
  writeFileSync(usersFile, "# Postern users\n");
  await passwd([usersFile, "alice@example.com", "127.0.0.1:1025", "imap=127.0.0.1:1143", "pop3=127.0.0.1:1110"], "pa ss%word");
  await passwd(["--clear", usersFile, "bob", "127.0.0.2:1110"], "bobsecret");
  server = await startAuthServer({ usersFile, wait: 3, scrypt: TEST_SCRYPT, log: (l) => logLines.push(l) }, "127.0.0.1", 0);
});

after(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

test("passwd writes a documented line per user, keeps comments, hashes with scrypt", () => {
  const text = readFileSync(usersFile, "utf8");
  assert.ok(text.startsWith("# Postern users\n"));
  assert.match(
    text,
    /^alice@example\.com:scrypt\$1024\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:127\.0\.0\.1:1025,imap=127\.0\.0\.1:1143,pop3=127\.0\.0\.1:1110$/m,
  );
  assert.match(text, /^bob:scrypt\$[^:]+:127\.0\.0\.2:1110:clear=Ym9ic2VjcmV0$/m);
  assert.doesNotMatch(text, /pa ss%word/);
  assert.equal(parseUsers(text).size, 2);
});

test("a correct password gets OK with the backend of the request's protocol", async () => {
  const port = server!.address.port;
  const imap = await ask(port, "imap", plain("alice@example.com", "pa ss%word"));
  assert.deepEqual([imap.failure, s(imap.server), s(imap.port)], [undefined, "127.0.0.1", "1143"]);
  assert.match(imap.raw, /\r\nAuth-Status: OK\r\n/);
  const pop3 = await ask(port, "pop3", plain("alice@example.com", "pa ss%word"));
  assert.equal(s(pop3.port), "1110");
  const smtp = await ask(port, "smtp", plain("alice@example.com", "pa ss%word"));
  assert.equal(s(smtp.port), "1025");
});

test("wrong passwords and unknown users get the same refusal with Auth-Wait; SMTP gets an error code", async () => {
  const port = server!.address.port;
  for (const cr of [plain("alice@example.com", "bad-pw-123"), plain("nobody", "pa ss%word")]) {
    const r = await ask(port, "imap", cr, 1, "127.0.0.10");
    assert.equal(s(r.failure), "Invalid login or password");
    assert.equal(r.sleep, 3);
    assert.equal(r.server, undefined);
  }
  const smtp = await ask(port, "smtp", plain("alice@example.com", "bad-pw-123"), 1, "127.0.0.11");
  assert.equal(s(smtp.failure), "Invalid login or password");
  assert.equal(s(smtp.errorCode), "535 5.7.8");
  // after many attempts in one session, no Auth-Wait: nginx closes the client
  const late = await ask(port, "imap", plain("alice@example.com", "bad-pw-123"), 12, "127.0.0.12");
  assert.equal(late.sleep, 0);
  assert.ok(logLines.length > 0);
  for (const l of logLines) assert.doesNotMatch(l, /pa ss%word|bad-pw-123|bobsecret|second/);
});

test("APOP and CRAM-MD5 work only for users with a stored clear-text secret, which is returned as Auth-Pass", async () => {
  const port = server!.address.port;
  const salt = "<1896.697170952@mx.example.test>";
  const apop = createHash("md5")
    .update(salt + "bobsecret")
    .digest("hex");
  const ok = await ask(port, "pop3", { method: "apop", login: Buffer.from("bob"), password: Buffer.from(apop), salt });
  assert.deepEqual([ok.failure, s(ok.server), s(ok.port), s(ok.pass)], [undefined, "127.0.0.2", "1110", "bobsecret"]);
  const cram = createHmac("md5", "bobsecret").update(salt).digest("hex");
  const ok2 = await ask(port, "imap", { method: "cram-md5", login: Buffer.from("bob"), password: Buffer.from(cram), salt });
  assert.equal(s(ok2.pass), "bobsecret");
  const bad = await ask(port, "pop3", { method: "apop", login: Buffer.from("bob"), password: Buffer.from("0".repeat(32)), salt }, 1, "127.0.0.20");
  assert.equal(s(bad.failure), "Invalid login or password");
  const noClear = await ask(port, "pop3", { method: "apop", login: Buffer.from("alice@example.com"), password: Buffer.from(apop), salt }, 1, "127.0.0.21");
  assert.equal(s(noClear.failure), "Invalid login or password");
});

test("failures are bounded per client IP: after 20 within 5 minutes every attempt is refused", async () => {
  const port = server!.address.port;
  for (let i = 0; i < 19; i++) await ask(port, "imap", plain("alice@example.com", "bad-pw-123"), 1, "192.0.2.99");
  const stillOpen = await ask(port, "imap", plain("alice@example.com", "pa ss%word"), 1, "192.0.2.99");
  assert.equal(stillOpen.failure, undefined, "19 failures: not blocked yet");
  await ask(port, "imap", plain("alice@example.com", "bad-pw-123"), 1, "192.0.2.99");
  const blocked = await ask(port, "imap", plain("alice@example.com", "pa ss%word"), 1, "192.0.2.99");
  assert.equal(s(blocked.failure), "Too many failed login attempts, try again later");
  assert.equal(blocked.sleep, 0);
  const other = await ask(port, "imap", plain("alice@example.com", "pa ss%word"), 1, "192.0.2.100");
  assert.equal(other.failure, undefined);
});

test("SMTP without authentication is refused without a relay", async () => {
  const r = await ask(server!.address.port, "smtp", { method: "none", login: Buffer.alloc(0), password: Buffer.alloc(0) });
  assert.equal(s(r.failure), "Authentication required");
  assert.equal(s(r.errorCode), "530 5.7.0");
});

test("the users file is reloaded when it changes (passwd round trip)", async () => {
  const port = server!.address.port;
  await passwd([usersFile, "carol", "imap=127.0.0.3:143"], "first");
  assert.equal(s((await ask(port, "imap", plain("carol", "first"))).server), "127.0.0.3");
  await passwd([usersFile, "carol", "imap=127.0.0.4:143"], "second");
  assert.equal(s((await ask(port, "imap", plain("carol", "first"), 1, "127.0.0.30")).failure), "Invalid login or password");
  const r = await ask(port, "imap", plain("carol", "second"));
  assert.equal(s(r.server), "127.0.0.4");
  // carol has no pop3 backend and no default
  const p = await ask(port, "pop3", plain("carol", "second"));
  assert.equal(s(p.failure), "No mail server for this account");
  // a broken file keeps the last good list
  const good = readFileSync(usersFile, "utf8");
  writeFileSync(usersFile, good + "broken line\n");
  assert.equal(s((await ask(port, "imap", plain("carol", "second"))).server), "127.0.0.4");
  assert.ok(logLines.some((l) => /not reloaded: line \d+: expected login:hash:backends/.test(l)));
  writeFileSync(usersFile, good);
  for (const l of logLines) assert.doesNotMatch(l, /first|second/);
});

test("runAuthServer() serves until stopped; bad options exit 2", async () => {
  let stop: () => void = () => {};
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  const x = { ...io(""), stopped };
  const running = runAuthServer(["--listen", "127.0.0.1:0", "--users", usersFile, "--wait", "0", "--scrypt-n", "1024"], x);
  let port = 0;
  for (let i = 0; i < 100 && port === 0; i++) {
    await new Promise((r) => setTimeout(r, 20));
    port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(x.out())?.[1] ?? 0);
  }
  assert.ok(port > 0, x.out() + x.err());
  const r = await ask(port, "imap", plain("alice@example.com", "bad"));
  assert.equal(r.sleep, 0);
  stop();
  assert.equal(await running, 0);
  assert.equal(await runAuthServer(["--bogus"], io("")), 2);
  assert.equal(await runAuthServer(["--listen", "localhost:9000", "--users", usersFile], io("")), 2);
  assert.equal(await runPasswd([usersFile, "x"], io("pw\n")), 2);
  assert.equal(await runPasswd([usersFile, "x", "nothost:1"], io("pw\n")), 2);
  assert.equal(await runPasswd([usersFile, "x", "127.0.0.1:1"], io("")), 1);
});

test("unescapeAuthValue() inverts nginx's escaping of any bytes", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      const b = Buffer.from(bytes);
      assert.deepEqual(unescapeAuthValue(escapeAuthValue(b).toString("latin1")), b);
    }),
    { numRuns: 1000 },
  );
});

test("users file lines: per-protocol backends, IPv6 in brackets, errors name the line", () => {
  const users = parseUsers("# c\n\nu:scrypt$1$1$1$AA==$AA==:[::1]:143,smtp=10.0.0.1:25\n");
  const u = users.get("u")!;
  assert.deepEqual(u.backends, { default: { host: "::1", port: 143 }, smtp: { host: "10.0.0.1", port: 25 } });
  assert.throws(() => parseUsers("a:scrypt$x:127.0.0.1:1\nb:scrypt$x:mail.example:25\n"), /line 2: invalid backend "mail\.example:25"/);
  assert.throws(() => parseUsers("a:scrypt$x:ftp=127.0.0.1:21\n"), /line 1: unknown protocol "ftp"/);
});

/**
 * Transcripts against the real nginx 1.22.1 (the oracle): every auth-state
 * IMAP behaviour of the auth state is sent to nginx, its replies are recorded per
 * client segment, and the IMAP front end (through the fake session) must
 * produce exactly the same bytes for the same segments. Where latest nginx
 * differs from 1.22.1 the latest bytes are asserted and the difference named.
 * auth_http points to a closed port: an attempt to authenticate ends with
 * nginx's internal error, which the fake mirrors for the front end.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { type Server as HttpServer, createServer as createHttpServer } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { imapProtocol } from "../../../src/mail/imap/protocol.js";
import { type FakeSession, type ImapOptions as FakeOptions, imapSession } from "../fake-session.js";
import { freePort } from "../../support/ports.js";

const NGINX = "/usr/sbin/nginx";
const MODULE = "/usr/lib/nginx/modules/ngx_mail_module.so";
const QUIET_MS = 250;

type ServerName = "plain" | "all" | "caps" | "maxerr" | "small" | "tlsOn" | "tlsOnly" | "wait";

const SERVERS: Record<ServerName, { conf: string; fake: FakeOptions }> = {
  plain: { conf: "", fake: {} },
  all: { conf: "imap_auth plain login cram-md5 external;", fake: { auth: ["plain", "login", "cram-md5", "external"] } },
  caps: { conf: "imap_capabilities IMAP4rev1 ID LITERAL+; imap_auth cram-md5;", fake: { capabilities: ["IMAP4rev1", "ID", "LITERAL+"], auth: ["cram-md5"] } },
  maxerr: { conf: "max_errors 3;", fake: { maxErrors: 3 } },
  small: { conf: "imap_client_buffer 64;", fake: { bufferSize: 64 } },
  tlsOn: { conf: "starttls on;", fake: { starttls: "on" } },
  tlsOnly: { conf: "starttls only; imap_auth plain login;", fake: { starttls: "only", auth: ["plain", "login"] } },
  // auth_http refuses with Auth-Wait: 1 (HTTP_PORT is filled in when the test server listens)
  wait: { conf: "auth_http 127.0.0.1:HTTP_PORT/auth;", fake: {} },
};
const REFUSAL = "Invalid login or password";
const WAIT_QUIET_MS = 1500;

interface Case {
  readonly server: ServerName;
  /** client segments, sent one at a time */
  readonly send: readonly string[];
  /** latest nginx differs from 1.22.1: what latest sends per segment, and why */
  readonly latest?: { readonly replies: readonly string[]; readonly why: string };
}

const b64 = (s: string) => Buffer.from(s, "latin1").toString("base64");
const LONG = "x".repeat(80);

const CASES: readonly Case[] = [
  // 3.1 / 3.3 fixed strings
  { server: "plain", send: ["a1 NOOP\r\n", "a2 noop x y z\r\n", "a3 LOGOUT\r\n"] },
  { server: "plain", send: ["a CAPABILITY\r\n", "b capability foo\r\n"] },
  { server: "all", send: ["a CAPABILITY\r\n"] },
  { server: "caps", send: ["a CAPABILITY\r\n"] },
  { server: "tlsOn", send: ["a CAPABILITY\r\n", "b STARTTLS\r\nc NOOP\r\n"] },
  {
    server: "tlsOnly",
    send: ["a CAPABILITY\r\n", "b LOGIN user pass\r\n", "c AUTHENTICATE PLAIN\r\n", "d AUTHENTICATE LOGIN\r\n", "e NOOP\r\n", "f STARTTLS\r\n"],
  },
  { server: "plain", send: ["a STARTTLS\r\n"] },
  // 3.2 tags
  { server: "plain", send: [" NOOP\r\n", "A-z.9_ NOOP\r\n", "a    NOOP\r\n"] },
  { server: "plain", send: [`${"t".repeat(32)} NOOP\r\n`, `${"t".repeat(33)} NOOP\r\n`] },
  { server: "plain", send: ["a+b NOOP\r\n", "a\tNOOP\r\n", "abc\r\n", "\r\n", "\n", "a \r\n"] },
  // 3.2 command words
  { server: "plain", send: ["a ID\r\n", "b SELECT INBOX\r\n", "c NOOP1\r\n", "d LoGoUt\r\n"] },
  // RFC 2971 ID before login: latest nginx has no ID either, so without imap_id it is an unknown command (counted)
  { server: "maxerr", send: ['a ID ("name" "x" "version" "1")\r\n', "b ID NIL\r\n", "c NOOP\r\n", 'd id ("name" {3+}\r\nabc)\r\n'] },
  { server: "plain", send: ["a NOOP\n", "b NOOP\rX\r\n", "c NOOP a b c\r\n", "d NOOP a b c d\r\n"] },
  // arguments, quoting, literals
  { server: "plain", send: ['a LOGIN "us\\\r\n', 'b LOGIN "\\x\\y"\r\n', 'c LOGIN us"er\r\n'] },
  { server: "plain", send: ['a LOGIN "user\r\n', "b LOGIN user pass\r\n", 'c NOOP "x"\r\n', "d LOGIN user\r\n"] },
  { server: "plain", send: ["a LOGIN {4}\r\n", "user {4}\r\n", "pass\r\n"] },
  { server: "plain", send: ["a NOOP {3}\r\nabc\r\n", "b NOOP {3+}\r\nabc {1+}\r\nX\r\n"] },
  { server: "plain", send: ["a NOOP {4x}\r\n", "b NOOP {4+x\r\n", "c NOOP {4}x\r\n"] },
  // Postern's stricter literal grammar (parser.ts): nginx reads {}, {+} as {0}, and {0} takes one byte
  {
    server: "plain",
    send: ["b NOOP {3+}\r\nabc {0+}\r\nX\r\n"],
    latest: { replies: ["b BAD invalid command\r\n"], why: "Postern: {0+} is an empty literal, so X is no literal data; nginx took X as the data" },
  },
  {
    server: "plain",
    send: ["a NOOP {0}\r\n", "X\r\n"],
    latest: {
      replies: ["+ OK\r\n", "a BAD invalid command\r\n"],
      why: "Postern: {0} is an empty literal, so X is no literal data (only SP or CRLF may follow); nginx took X as the data",
    },
  },
  {
    server: "plain",
    send: ["d NOOP {+}\r\nZ\r\n"],
    latest: {
      replies: ["d BAD invalid command\r\n"],
      why: "Postern: {+} has no length, a syntax error (and a line ending in +} closes); nginx read {0+} and took Z",
    },
  },
  {
    server: "plain",
    send: ["e NOOP {}\r\n", "E\r\n"],
    latest: {
      replies: ["e BAD invalid command\r\n", "* BAD invalid command\r\n"],
      why: "Postern: {} has no length, a syntax error; nginx read {0}, sent + OK and took E",
    },
  },
  {
    server: "plain",
    send: ["a NOOP {3+}\r\nabcX y\r\n"],
    latest: { replies: ["a BAD invalid command\r\n"], why: "latest requires SP or CRLF after literal data; 1.22.1 swallowed the X" },
  },
  {
    server: "plain",
    send: ["a NOOP {1+}\r\na{1+}\r\nb\r\n"],
    latest: { replies: ["a BAD invalid command\r\n"], why: "latest refuses a literal right after a literal; 1.22.1 accepted it" },
  },
  {
    server: "plain",
    send: ["a NOOP {99999999999999999999+}\r\nx\r\n"],
    latest: { replies: ["a BAD invalid command\r\n"], why: "latest refuses literal lengths past size_t/10; 1.22.1 wrapped around" },
  },
  // 3.2 +} quirk
  { server: "plain", send: ["a FOO {5+}\r\nhello\r\n"] },
  { server: "plain", send: ["+}\r\n", "a NOOP\r\n+}\r\n"] },
  // 3.3 LOGIN (auth_http unreachable -> internal error)
  { server: "plain", send: ["a LOGIN\r\n", "b LOGIN u\r\n", "c LOGIN u p x\r\n", 'd LOGIN "" p\r\n', "e LOGIN user pass\r\n"] },
  { server: "plain", send: ['a LOGIN "us er" {4+}\r\np "s\r\n'] },
  {
    server: "plain",
    send: ['a LOGIN "us er" {4+}\r\np\r\ns\r\n'],
    latest: { replies: ["a BAD invalid command\r\n"], why: "Postern refuses CR, LF or NUL in a login or password (logged); nginx passed it to auth_http" },
  },
  // AUTHENTICATE
  {
    server: "plain",
    send: [
      "a AUTHENTICATE\r\n",
      "b AUTHENTICATE FOO\r\n",
      "c AUTHENTICATE CRAM-MD5\r\n",
      "d AUTHENTICATE EXTERNAL\r\n",
      "e AUTHENTICATE PLAIN x y\r\n",
      "f AUTHENTICATE LOGIN x y\r\n",
    ],
  },
  {
    server: "plain",
    send: ["a AUTHENTICATE PLAIN\r\n", "*\r\n", "b AUTHENTICATE PLAIN\r\n", `${b64("user\0pass")}\r\n`, `c AUTHENTICATE PLAIN ${b64("nonul")}\r\n`],
  },
  { server: "plain", send: ["a AUTHENTICATE plain\r\n", `${b64("\0user\0pass")} junk\r\n`] },
  { server: "plain", send: [`a AUTHENTICATE PLAIN ${b64("z\0user\0pass")}\r\n`] },
  { server: "plain", send: ["a AUTHENTICATE LOGIN\r\n", "!!!\r\n", "b AUTHENTICATE LOGIN\r\n", `${b64("user")}\r\n`, "!!!\r\n"] },
  { server: "plain", send: ["a AUTHENTICATE LOGIN\r\n", `${b64("user")}\r\n`, `${b64("pass")}\r\n`] },
  { server: "plain", send: [`a AUTHENTICATE LOGIN ${b64("user")}\r\n`, `${b64("pass")}\r\n`] },
  { server: "plain", send: ["a AUTHENTICATE LOGIN !!!\r\n", "b AUTHENTICATE PLAIN\r\n", "x {3}\r\n", "abc\r\n"] },
  { server: "plain", send: ["a AUTHENTICATE PLAIN\r\n", "x\ry\r\n", "b AUTHENTICATE PLAIN\r\n", "1 2 3 4\r\n"] },
  {
    server: "all",
    send: [
      "a AUTHENTICATE CRAM-MD5 x\r\n",
      "b AUTHENTICATE CRAM-MD5\r\n",
      `${b64("user short")}\r\n`,
      "c AUTHENTICATE CRAM-MD5\r\n",
      `${b64(`user ${"0".repeat(32)}`)}\r\n`,
    ],
  },
  { server: "all", send: ["a AUTHENTICATE EXTERNAL a b\r\n", "b AUTHENTICATE EXTERNAL\r\n", "!!!\r\n", "c AUTHENTICATE EXTERNAL\r\n", `${b64("id")}\r\n`] },
  { server: "all", send: [`a AUTHENTICATE EXTERNAL ${b64("id")}\r\n`] },
  {
    server: "plain",
    send: [`a AUTHENTICATE EXTERNAL ${b64("test")}\r\n`],
    latest: {
      replies: ["a BAD invalid command\r\n"],
      why: "Postern refuses EXTERNAL with an initial response unless imap_auth has external; nginx accepts it",
    },
  },
  // 8: max_errors, too long
  { server: "maxerr", send: ["a FOO\r\n", "\r\n", "b AUTHENTICATE FOO\r\n", "c BAR\r\n"] },
  { server: "maxerr", send: ["a FOO\r\nb FOO\r\nc FOO\r\nd NOOP\r\n"] },
  { server: "small", send: [`a LOGIN ${LONG}\r\n`] },
  { server: "small", send: ["y".repeat(70)] },
  {
    server: "small",
    send: ["a LOGIN {100}\r\n", "z".repeat(100)],
    latest: {
      replies: ["a BAD invalid command\r\n", "* BAD invalid command\r\n"],
      why: "Postern: a literal longer than the buffer is a syntax error at once (no + OK; the z's then overflow as a line of their own); nginx said + OK and overflowed",
    },
  },
  { server: "small", send: [`a NOOP ${"x".repeat(55)}\r\n`] },
  { server: "small", send: ["a AUTHENTICATE PLAIN\r\n", "A".repeat(50)] },
  { server: "small", send: ["a NOOP\r\nb NOOP x", "x".repeat(60)] },
  // a refusal with Auth-Wait: `<tag> NO ...`, then nginx's stale tag for a line without one
  { server: "wait", send: ["abcdef LOGIN u p\r\n", "\r\n", "q NOOP\r\n", "\r\n"] },
  { server: "wait", send: ["a NOOP\r\nxyz LOGIN u p\r\n", "\r\n"] },
  { server: "wait", send: ["x1 LOGIN user pass\r\n\r\n"] },
  { server: "wait", send: ["a AUTHENTICATE PLAIN\r\n", `${b64("\0u\0p")}\r\n`, "b NOOP\r\n", "\r\n"] },
  { server: "wait", send: ["a LOGIN u p\r\n", "b AUTHENTICATE LOGIN\r\n", `${b64("u")}\r\n`, `${b64("p")}\r\n`, "!\r\n"] },
];

let dir = "";
let nginx: ChildProcess | undefined;
let auth: HttpServer | undefined;
const ports = new Map<ServerName, number>();

async function waitForPort(port: number): Promise<void> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nginx did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "postern-imap-nginx-"));
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1", "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")],
    { stdio: "ignore" },
  );
  auth = createHttpServer((_req, res) => {
    res.writeHead(200, { "Auth-Status": REFUSAL, "Auth-Wait": "1" });
    res.end();
  });
  await new Promise<void>((resolve) => auth!.listen(0, "127.0.0.1", resolve));
  const httpPort = (auth.address() as { port: number }).port;
  const servers: string[] = [];
  for (const name of Object.keys(SERVERS) as ServerName[]) {
    const port = await freePort();
    ports.set(name, port);
    servers.push(`  server { listen 127.0.0.1:${port}; protocol imap; ${SERVERS[name].conf.replace("HTTP_PORT", String(httpPort))} }`);
  }
  writeFileSync(
    join(dir, "nginx.conf"),
    [
      `load_module ${MODULE};`,
      "daemon off;",
      "master_process off;",
      `pid ${join(dir, "nginx.pid")};`,
      `error_log ${join(dir, "error.log")} info;`,
      "events { worker_connections 512; }",
      "mail {",
      "  auth_http 127.0.0.1:1/auth;",
      "  server_name mx.example.test;",
      `  ssl_certificate ${join(dir, "cert.pem")};`,
      `  ssl_certificate_key ${join(dir, "key.pem")};`,
      ...servers,
      "}",
      "",
    ].join("\n"),
  );
  nginx = spawn(NGINX, ["-p", `${dir}/`, "-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log")], { stdio: "ignore" });
  for (const port of ports.values()) await waitForPort(port);
});

after(() => {
  nginx?.kill("SIGTERM");
  auth?.close();
  if (dir && existsSync(dir)) rmSync(dir, { recursive: true, force: true });
});

/** Sends each segment after the previous replies went quiet; returns the replies per segment (greeting first). */
async function record(port: number, segments: readonly string[], quietMs: number): Promise<string[]> {
  const sock = connect(port, "127.0.0.1");
  const replies: string[] = [];
  let current = "";
  let closed = false;
  let wake: (() => void) | undefined;
  sock.on("data", (d) => {
    current += d.toString("latin1");
    wake?.();
  });
  sock.on("close", () => {
    closed = true;
    wake?.();
  });
  sock.on("error", () => {});
  const settle = async (): Promise<void> => {
    // On a loaded machine a reply can come late: nothing yet, or a reply not
    // ending in CRLF, gets more (bounded) patience before the segment ends.
    const patience = Date.now() + 1000;
    for (;;) {
      const before = current.length;
      const timer = new Promise<void>((r) => {
        wake = r;
        setTimeout(r, quietMs);
      });
      await timer;
      if (closed) return;
      const incomplete = current.length === 0 || !current.endsWith("\r\n");
      if (current.length === before && (!incomplete || Date.now() > patience)) return;
    }
  };
  await settle();
  replies.push(current);
  for (const s of segments) {
    current = "";
    if (!closed) sock.write(Buffer.from(s, "latin1"));
    await settle();
    replies.push(current + (closed ? "<close>" : ""));
    if (closed) break;
  }
  sock.destroy();
  return replies;
}

const fakes: FakeSession[] = [];

/** The same segments through the front end; an auth attempt ends with the internal error, as with nginx here. */
function replay(c: Case, nginxReplies: readonly string[]): string[] {
  const fake = SERVERS[c.server].fake;
  // the CRAM-MD5 salt is random: reuse the one nginx sent
  const challenge = nginxReplies.join("").match(/^\+ (P[A-Za-z0-9+/=]+)\r\n/m);
  const salt = challenge ? Buffer.from(challenge[1]!, "base64").toString("latin1") : undefined;
  const s = imapSession({ ...fake, ...(salt ? { salt } : {}) });
  fakes.push(s);
  const replies = [s.output()];
  for (const seg of c.send) {
    s.receive(seg);
    if (s.authenticating && c.server === "wait") s.refuse(REFUSAL);
    let out = s.output();
    if (s.authenticating && !s.closed) {
      out += imapProtocol.replies.internalError;
      s.close();
    }
    replies.push(out + (s.closed ? "<close>" : ""));
    if (s.closed) break;
  }
  return replies;
}

test("the front end answers every transcript byte for byte like nginx", async () => {
  const recorded = await Promise.all(CASES.map((c) => record(ports.get(c.server)!, c.send, c.server === "wait" ? WAIT_QUIET_MS : QUIET_MS)));
  const table = CASES.map((c, i) => ({ server: c.server, sent: c.send, nginx: recorded[i]! }));
  for (const [i, c] of CASES.entries()) {
    const nginxReplies = recorded[i]!;
    assert.equal(nginxReplies[0], "* OK IMAP4 ready\r\n", "greeting");
    const ours = replay(c, nginxReplies);
    if (c.latest) {
      // nginx 1.22.1 answers differently here; latest nginx (and Postern) send c.latest
      assert.notDeepEqual(nginxReplies.slice(1), c.latest.replies, `1.22.1 really differs: ${c.latest.why}`);
      assert.deepEqual(
        ours.slice(1).map((r) => r.replace(/<close>$/, "")),
        c.latest.replies,
        c.latest.why,
      );
    } else {
      assert.deepEqual(ours, nginxReplies, `transcript ${i} (${c.server}): ${JSON.stringify(table[i])}`);
    }
  }
});

/** `client sent invalid ...` lines without the timestamp, connection number and addresses. */
function saslLogLines(lines: readonly string[]): string[] {
  return lines
    .filter((l) => l.includes("client sent invalid"))
    .map((l) => l.replace(/^.*?\*\d+ /, "").replace(/, client: [^,]*, server: [^,]*/, ""))
    .sort();
}

test("the front end logs the same SASL complaints as nginx, with the same login context", () => {
  assert.ok(fakes.length > 0, "runs after the transcripts");
  const nginxLines = saslLogLines(readFileSync(join(dir, "error.log"), "latin1").split("\n"));
  // the EXTERNAL case nginx accepted and Postern refuses logs nothing on either side
  // Postern alone refuses (and logs) a LOGIN password holding CR LF
  const ours = saslLogLines(fakes.flatMap((f) => f.infoLog)).filter((l) => !l.includes("in LOGIN command"));
  assert.ok(nginxLines.length >= 6);
  assert.deepEqual(ours, nginxLines);
});

/**
 * Byte-for-byte comparison with the real nginx 1.22.1: every auth-state
 * transcript below is played against nginx (with a recording auth_http
 * server that refuses every login), the replies are recorded as a table of
 * { client bytes -> bytes received }, and the same input is played through
 * the POP3 front end on a fake session. Both tables must be equal, and the
 * credentials nginx sent to auth_http must equal what the front end hands
 * to `authenticate`. Each case is also played over a real socket against
 * Postern's session core with the POP3 front end (auth_http and TLS replaced
 * by in-test services), which must answer the same bytes.
 * Where Postern deliberately differs, the case names it.
 * `POP3_WIRE_DUMP=1` prints the tables recorded from nginx.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { type IncomingHttpHeaders, type Server, createServer } from "node:http";
import { type AddressInfo, type Socket, connect, createServer as createTcpServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TLSSocket, connect as tlsConnect, createSecureContext } from "node:tls";
import { ErrorLog, MemorySink } from "../../../src/core/log.js";
import { pop3Protocol } from "../../../src/mail/pop3/protocol.js";
import { Session, type SessionServices, type SessionTls } from "../../../src/mail/session.js";
import type { StarttlsMode } from "../../../src/mail/front-end.js";
import type { Credentials } from "../../../src/mail/types.js";
import { FakeSession, pop3Server } from "../fake-session.js";
import { freePort } from "../../support/ports.js";

const NGINX = "/usr/sbin/nginx";
const MAIL_MODULE = "/usr/lib/nginx/modules/ngx_mail_module.so";
const REFUSAL = "Invalid login";

/** One server block, configured identically in nginx and in the fake session. */
interface ServerSpec {
  readonly directives: string;
  readonly starttls: StarttlsMode;
}

const SERVERS = {
  plain: { directives: "", starttls: "off" },
  all: { directives: "pop3_auth plain apop cram-md5 external; pop3_capabilities TOP USER UIDL PIPELINING;", starttls: "off" },
  apopOnly: { directives: "pop3_auth apop; pop3_capabilities TOP user;", starttls: "off" },
  on: { directives: "", starttls: "on" },
  only: { directives: "pop3_auth plain apop cram-md5 external; pop3_capabilities TOP USER UIDL PIPELINING;", starttls: "only" },
  errors: { directives: "max_errors 3;", starttls: "off" },
} as const satisfies Record<string, ServerSpec>;
type ServerName = keyof typeof SERVERS;

/** A client step: bytes to send, or a TLS handshake after STLS. */
type Step = string | { readonly tls: true };
const TLS: Step = { tls: true };

interface Case {
  readonly name: string;
  readonly server: ServerName;
  readonly steps: readonly Step[];
  /** Depends on the core's buffer, which the fake session does not model: compared over a socket only. */
  readonly socketOnly?: boolean;
}

const b64 = (s: string) => Buffer.from(s, "latin1").toString("base64");
const DIGEST = "0123456789abcdef0123456789abcdef";

const CASES: readonly Case[] = [
  { name: "NOOP, CAPA, AUTH list, QUIT", server: "plain", steps: ["NOOP\r\n", "CAPA\r\n", "AUTH\r\n", "noop\n", "QUIT\r\n"] },
  {
    name: "syntax errors and refusals",
    server: "plain",
    steps: ["STAT\r\n", "PASS x\r\n", "USER\r\n", "STLS\r\n", "APOP a b\r\n", "AUTH CRAM-MD5\r\n", "AUTH FOO\r\n", "NOOP\r\n"],
  },
  { name: "unknown commands", server: "errors", steps: ["LIST\r\n", "CAPA\r\n", "RETR 1\r\n", "UIDL\r\n"] },
  {
    name: "max_errors counts syntax errors only",
    server: "errors",
    steps: ["PASS a\r\nUSER\r\nAPOP x y\r\n", "noop a b c d\r\nTOP 1 2\r\n", "NOOP\r\n", "x\r\n"],
  },
  { name: "max_errors pipelined", server: "errors", steps: ["A\r\nB\r\nC\r\nNOOP\r\n"] },
  { name: "CR not followed by LF, empty line, leading space", server: "plain", steps: ["NOOP\rx\r\n", "\r\n", " NOOP\r\n", "NOOP\r\n"] },
  { name: "split command and pipelining", server: "plain", steps: ["NO", "OP\r", "\nCAPA\nNOOP\r\nUS", "ER bob\r\n", "CAPA\r\n"] },
  {
    name: "USER state quirk",
    server: "plain",
    steps: ["USER a\r\n", "NOOP\r\n", "CAPA\r\n", "STAT\r\n", "PASS x\r\n", "USER a\r\nUSER b\r\nPASS y\r\n", "USER c\r\nAUTH\r\n", "PASS z\r\n"],
  },
  { name: "USER/PASS with spaces", server: "plain", steps: ["USER  bob smith \r\n", "PASS  secret with space\r\n"] },
  { name: "USER/PASS with escaped bytes", server: "plain", steps: ["USER a%b+c:d\r\n", 'PASS \x01\xff"\r\n'] },
  { name: "USER then QUIT", server: "plain", steps: ["USER a\r\n", "QUIT\r\n"] },
  { name: "128-byte command fits", server: "plain", steps: [`USER ${"x".repeat(121)}\r\n`, "PASS p\r\n"] },
  { name: "129-byte command is too long", server: "plain", steps: [`USER ${"x".repeat(122)}\r\n`] },
  { name: "a pipelined command must fit in what is left of the buffer", server: "plain", steps: [`NOOP\r\nUSER ${"x".repeat(120)}\r\n`], socketOnly: true },
  { name: "AUTH PLAIN with challenge", server: "plain", steps: ["AUTH PLAIN\r\n", `${b64("zid\0bob\0pw")}\r\n`] },
  { name: "AUTH PLAIN initial response", server: "apopOnly", steps: [`auth plain ${b64("\0al\0p w")}\r\n`] },
  {
    name: "AUTH PLAIN errors",
    server: "plain",
    steps: [
      "AUTH PLAIN\r\n",
      "*\r\n",
      `AUTH PLAIN ${b64("nonul")}\r\n`,
      `AUTH PLAIN ${b64("\0one")}\r\n`,
      "AUTH PLAIN a b\r\n",
      "AUTH PLAIN a b c d\r\n",
      "CAPA\r\n",
    ],
  },
  { name: "AUTH LOGIN two steps", server: "plain", steps: ["AUTH LOGIN\r\n", `${b64("bob")} junk\r\n`, `${b64("secret")}\r\n`] },
  { name: "AUTH LOGIN initial response, empty password", server: "plain", steps: [`AUTH login ${b64("al")}\r\n`, "\r\n"] },
  {
    name: "AUTH LOGIN errors",
    server: "plain",
    steps: ["AUTH LOGIN a b\r\n", "AUTH LOGIN\r\n", "!!\r\n", "AUTH LOGIN\r\n", "YQ==\r\n", "a b c d\r\n", "PASS x\r\n", "AUTH LOGIN !\r\n", "NOOP\r\n"],
  },
  { name: "CAPA and AUTH with every method", server: "all", steps: ["CAPA\r\n", "AUTH\r\n", "USER u\r\n", "CAPA\r\n", "QUIT\r\n"] },
  { name: "CAPA and AUTH with apop only", server: "apopOnly", steps: ["CAPA\r\n", "AUTH\r\n", "AUTH CRAM-MD5\r\n", "AUTH EXTERNAL\r\n"] },
  { name: "APOP", server: "all", steps: ["APOP bob\r\n", "APOP a b c\r\n", `APOP bob ${DIGEST}\r\n`] },
  {
    name: "AUTH CRAM-MD5",
    server: "all",
    steps: ["AUTH CRAM-MD5 x\r\n", "AUTH CRAM-MD5\r\n", `${b64("bob short")}\r\n`, "auth cram-md5\r\n", `${b64(`bob ${DIGEST}`)}\r\n`],
  },
  { name: "AUTH EXTERNAL with challenge", server: "all", steps: ["AUTH EXTERNAL\r\n", "*\r\n", "AUTH EXTERNAL\r\n", `${b64("cn=bob")}\r\n`] },
  { name: "AUTH EXTERNAL initial response, enabled", server: "all", steps: [`AUTH EXTERNAL ${b64("ext")}\r\n`] },
  {
    name: "starttls on: CAPA, STLS refused in USER state, STLS, CAPA after TLS",
    server: "on",
    steps: ["CAPA\r\n", "USER a\r\n", "CAPA\r\n", "STLS\r\n", "STLS\r\nCAPA\r\n", TLS, "CAPA\r\n", "STLS\r\n", "USER b\r\n", "PASS c\r\n"],
  },
  {
    name: "starttls only: refusals, CAPA, STLS, then login",
    server: "only",
    steps: [
      "USER bob\r\n",
      "APOP bob d\r\n",
      "AUTH\r\n",
      "AUTH PLAIN\r\n",
      `AUTH EXTERNAL ${b64("x")}\r\n`,
      "CAPA\r\n",
      "PASS x\r\n",
      "STLS\r\n",
      TLS,
      "CAPA\r\n",
      "AUTH\r\n",
      "AUTH LOGIN\r\n",
      `${b64("tls user")}\r\n`,
      `${b64("pw")}\r\n`,
    ],
  },
];

/**
 * The one deliberate difference: nginx accepts AUTH EXTERNAL with an initial
 * response even when `external` is not enabled; Postern
 * refuses it with the invalid-command reply.
 */
const EXTERNAL_DEVIATION: Case = { name: "AUTH EXTERNAL initial response, not enabled", server: "plain", steps: [`AUTH EXTERNAL ${b64("ext")}\r\n`] };

/** One row of a transcript table. */
interface Row {
  readonly sent: string;
  readonly received: string;
}

/** The auth_http request fields that carry the credentials. */
interface AuthRequest {
  readonly method: string;
  readonly user: string;
  readonly pass: string;
  readonly salt: string | undefined;
}

let dir = "";
let nginx: ChildProcess | undefined;
let authServer: Server | undefined;
const ports = new Map<ServerName, number>();
const authRequests: AuthRequest[] = [];
/** Postern's listeners, one per server spec, and what its sessions asked auth_http. */
const posternPorts = new Map<ServerName, number>();
const posternListeners: ReturnType<typeof createTcpServer>[] = [];
const posternSockets = new Set<Socket>();
const posternAuths: Credentials[] = [];
const posternLog = new MemorySink(1 << 20, "info");

/** nginx's %XX escaping undone, bytes as latin1. */
function unescape(value: string): string {
  return Buffer.from(
    value.replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))),
    "latin1",
  ).toString("latin1");
}

function header(h: IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

async function waitForPort(port: number, deadline: number): Promise<void> {
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nginx did not listen on ${port}: ${readFileSync(join(dir, "error.log"), "latin1")}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "postern-pop3-nginx-"));
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      join(dir, "key.pem"),
      "-out",
      join(dir, "cert.pem"),
      "-days",
      "1",
      "-subj",
      "/CN=mx.example.test",
    ],
    { stdio: "ignore" },
  );
  authServer = createServer((req, res) => {
    authRequests.push({
      method: header(req.headers, "auth-method") ?? "",
      user: unescape(header(req.headers, "auth-user") ?? ""),
      pass: unescape(header(req.headers, "auth-pass") ?? ""),
      salt: header(req.headers, "auth-salt"),
    });
    res.writeHead(200, { "Auth-Status": REFUSAL });
    res.end();
  });
  await new Promise<void>((resolve) => authServer!.listen(0, "127.0.0.1", resolve));
  const authPort = (authServer.address() as AddressInfo).port;
  let servers = "";
  for (const [name, spec] of Object.entries(SERVERS) as [ServerName, ServerSpec][]) {
    const port = await freePort();
    ports.set(name, port);
    servers += `server { listen 127.0.0.1:${port}; protocol pop3; ${spec.directives} starttls ${spec.starttls}; }\n`;
  }
  writeFileSync(
    join(dir, "nginx.conf"),
    [
      `load_module ${MAIL_MODULE};`,
      "daemon off;",
      "master_process off;",
      `pid ${dir}/nginx.pid;`,
      `error_log ${dir}/error.log debug;`,
      "events { worker_connections 64; }",
      "mail {",
      `auth_http 127.0.0.1:${authPort}/auth;`,
      "server_name mx.example.test;",
      `ssl_certificate ${dir}/cert.pem;`,
      `ssl_certificate_key ${dir}/key.pem;`,
      servers,
      "}",
      "",
    ].join("\n"),
  );
  await startPostern();
  nginx = spawn(NGINX, ["-p", `${dir}/`, "-c", join(dir, "nginx.conf"), "-e", join(dir, "error.log")], { stdio: "ignore" });
  const deadline = Date.now() + 10_000;
  for (const port of ports.values()) await waitForPort(port, deadline);
});

after(async () => {
  if (nginx && nginx.exitCode === null) {
    const exited = new Promise((resolve) => nginx!.once("exit", resolve));
    nginx.kill("SIGTERM");
    await exited;
  }
  await new Promise<void>((resolve) => (authServer ? authServer.close(() => resolve()) : resolve()));
  for (const s of posternSockets) s.destroy();
  await Promise.all(posternListeners.map((l) => new Promise<void>((resolve) => l.close(() => resolve()))));
  rmSync(dir, { recursive: true, force: true });
});

/** Listens for each server spec with Postern's session core and the POP3 front end. */
async function startPostern(): Promise<void> {
  const secureContext = createSecureContext({ cert: readFileSync(join(dir, "cert.pem")), key: readFileSync(join(dir, "key.pem")) });
  const errorLog = new ErrorLog([posternLog]);
  for (const [name, spec] of Object.entries(SERVERS) as [ServerName, ServerSpec][]) {
    const server = pop3Server(spec.directives);
    const tls: SessionTls = {
      starttls: spec.starttls,
      async handshake(socket) {
        const secure = new TLSSocket(socket, { isServer: true, secureContext });
        await new Promise<void>((resolve, reject) => {
          secure.once("secure", resolve);
          secure.once("error", reject);
        });
        return secure;
      },
      checkClientCertificate: () => ({ result: "ok" }),
      ticketsSent: () => Promise.resolve(),
      describe: (socket) => ({ protocol: socket.getProtocol() ?? "", cipher: socket.getCipher().name }),
    };
    const services: SessionServices = {
      tls: () => (spec.starttls === "off" ? null : tls),
      authenticate(_server, _info, credentials) {
        posternAuths.push(credentials);
        return Promise.resolve({ kind: "refused", message: REFUSAL });
      },
      readProxyProtocol: () => Promise.reject(new Error("no proxy_protocol here")),
      realClientAddress: () => undefined,
      proxy: () => Promise.reject(new Error("no backend here")),
    };
    const listener = createTcpServer((socket) => {
      posternSockets.add(socket);
      socket.once("close", () => posternSockets.delete(socket));
      new Session(socket, server, server.listens[0]!, pop3Protocol, services, errorLog).start();
    });
    await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
    posternListeners.push(listener);
    posternPorts.set(name, (listener.address() as AddressInfo).port);
  }
}

/** A line client that collects whatever arrives until the peer goes quiet. */
class WireClient {
  #socket: Socket;
  #data = "";
  #last = 0;
  closed = false;

  private constructor(socket: Socket) {
    this.#socket = socket;
    this.#listen(socket);
  }

  static async open(port: number): Promise<WireClient> {
    const socket = connect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    return new WireClient(socket);
  }

  #listen(socket: Socket): void {
    socket.on("data", (d: Buffer) => {
      this.#data += d.toString("latin1");
      this.#last = Date.now();
    });
    socket.on("close", () => {
      this.closed = true;
    });
    socket.on("end", () => {
      this.closed = true;
    });
    socket.on("error", () => {
      this.closed = true;
    });
  }

  send(text: string): void {
    if (!this.closed) this.#socket.write(Buffer.from(text, "latin1"));
  }

  /** Everything received until a complete line is followed by 60 ms of quiet, or 800 ms pass without data (a loaded machine answers late), or the peer closes. */
  async collect(): Promise<string> {
    const start = Date.now();
    for (;;) {
      await new Promise((r) => setTimeout(r, 10));
      const now = Date.now();
      if (this.closed) break;
      if (this.#data.endsWith("\r\n") && now - this.#last >= 60) break;
      if (this.#data === "" && now - start >= 800) break;
      if (now - start >= 5000) break;
    }
    const out = this.#data;
    this.#data = "";
    return out;
  }

  /** Runs the client side of the TLS handshake over the connection. */
  async startTls(): Promise<void> {
    const plain = this.#socket;
    plain.removeAllListeners("data");
    const secure = tlsConnect({ socket: plain, rejectUnauthorized: false, servername: "mx.example.test" });
    await new Promise<void>((resolve, reject) => {
      secure.once("secureConnect", resolve);
      secure.once("error", reject);
    });
    this.#socket = secure;
    this.#listen(secure);
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** Plays a case over a socket: greeting, the table, and the auth_http requests it caused. */
async function playSocket(c: Case, port: number, requests: () => AuthRequest[]): Promise<{ greeting: string; table: Row[]; auths: AuthRequest[] }> {
  const first = requests().length;
  const client = await WireClient.open(port);
  try {
    const greeting = await client.collect();
    const table: Row[] = [];
    for (const step of c.steps) {
      if (typeof step === "string") {
        client.send(step);
        table.push({ sent: step, received: await client.collect() });
      } else {
        await client.startTls();
        table.push({ sent: "<TLS handshake>", received: await client.collect() });
      }
    }
    return { greeting, table, auths: requests().slice(first) };
  } finally {
    client.close();
  }
}

/** Plays a case against nginx. */
function playNginx(c: Case): Promise<{ greeting: string; table: Row[]; auths: AuthRequest[] }> {
  return playSocket(c, ports.get(c.server)!, () => authRequests);
}

/** Plays a case against Postern's session core, with its random salt replaced by `salt`. */
async function playPosternSocket(c: Case, salt: string): Promise<{ greeting: string; table: Row[]; auths: AuthRequest[] }> {
  const played = await playSocket(c, posternPorts.get(c.server)!, () => posternAuths.map(asRequest));
  const own = /<[^>]*>/.exec(played.greeting)?.[0];
  const swap = (text: string): string => (own ? text.split(own).join(salt).split(b64(own)).join(b64(salt)) : text);
  return {
    greeting: swap(played.greeting),
    table: played.table.map((r) => ({ sent: r.sent, received: swap(r.received) })),
    auths: played.auths.map((a) => ({ ...a, salt: a.salt === undefined ? undefined : swap(a.salt) })),
  };
}

/** Plays a case through the front end on a fake session; auth attempts get nginx's refusal. */
function playPostern(c: Case, salt: string): { greeting: string; table: Row[]; credentials: Credentials[] } {
  const spec: ServerSpec = SERVERS[c.server];
  const s = new FakeSession(pop3Server(spec.directives), { starttls: spec.starttls, salt }).start();
  const greeting = s.sent;
  const table: Row[] = [];
  let closedByAuth = false;
  for (const step of c.steps) {
    if (typeof step !== "string") {
      s.finishStartTls();
      table.push({ sent: "<TLS handshake>", received: "" });
      continue;
    }
    if (closedByAuth || s.closed) {
      table.push({ sent: step, received: "" });
      continue;
    }
    const before = s.credentials.length;
    let received = s.receive(step);
    if (s.credentials.length > before) {
      // auth_http refused without Auth-Wait: the core sends the reply and closes.
      received += s.frontEnd.authFailedReply(REFUSAL, undefined);
      closedByAuth = true;
    }
    table.push({ sent: step, received });
  }
  return { greeting, table, credentials: s.credentials };
}

function asRequest(c: Credentials): AuthRequest {
  return { method: c.method, user: c.login.toString("latin1"), pass: c.password.toString("latin1"), salt: c.salt === undefined ? undefined : c.salt };
}

/** nginx 1.22.1 sends Auth-Salt for any non-plain method once a salt exists; latest only for apop and cram-md5. */
function latestSalt(r: AuthRequest): AuthRequest {
  return { ...r, salt: r.method === "apop" || r.method === "cram-md5" ? r.salt : undefined };
}

for (const c of CASES) {
  test(`same bytes as nginx: ${c.name}`, async () => {
    const theirs = await playNginx(c);
    const salt = /<[^>]*>/.exec(theirs.greeting)?.[0] ?? "<0.0@mx.example.test>";
    if (process.env.POP3_WIRE_DUMP) console.log(JSON.stringify({ case: c.name, greeting: theirs.greeting, table: theirs.table, auths: theirs.auths }));
    if (!c.socketOnly) {
      const ours = playPostern(c, salt);
      assert.equal(ours.greeting, theirs.greeting, "greeting");
      assert.deepEqual(ours.table, theirs.table);
      assert.deepEqual(ours.credentials.map(asRequest), theirs.auths.map(latestSalt), "credentials sent to auth_http");
    }
    const live = await playPosternSocket(c, salt);
    assert.equal(live.greeting, theirs.greeting, "greeting over a socket");
    assert.deepEqual(live.table, theirs.table, "over a socket");
    assert.deepEqual(live.auths, theirs.auths.map(latestSalt), "credentials over a socket");
  });
}

test(`deliberate difference: ${EXTERNAL_DEVIATION.name}`, async () => {
  const theirs = await playNginx(EXTERNAL_DEVIATION);
  const ours = playPostern(EXTERNAL_DEVIATION, "<0.0@mx.example.test>");
  const live = await playPosternSocket(EXTERNAL_DEVIATION, "<0.0@mx.example.test>");
  assert.deepEqual(live.table, ours.table);
  assert.deepEqual(
    theirs.table.map((r) => r.received),
    [`-ERR ${REFUSAL}\r\n`],
    "nginx goes to auth_http although external is not enabled",
  );
  assert.deepEqual(
    theirs.auths.map((a) => a.method),
    ["external"],
  );
  assert.deepEqual(
    ours.table.map((r) => r.received),
    ["-ERR invalid command\r\n"],
    "Postern refuses it",
  );
  assert.equal(ours.credentials.length, 0);
});

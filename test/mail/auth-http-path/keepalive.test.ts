/**
 * auth_http_keepalive over real sockets: the fake auth service counts the
 * connections each request came on.
 */
import { after, afterEach, test } from "node:test";
import assert from "node:assert/strict";
import { authenticate } from "../../../src/mail/auth-http/client.js";
import { closeIdle, idleCount } from "../../../src/mail/auth-http/pool.js";
import { okTo, startFakeAuth, type FakeAuth } from "../../support/fake-auth.js";
import { makeSetup } from "./helpers.js";

const OK = { kind: "ok", backend: { host: "127.0.0.1", port: 1143 }, login: Buffer.from("user"), password: Buffer.from("secret") };
const fakes: FakeAuth[] = [];
afterEach(closeIdle);
after(async () => {
  closeIdle();
  for (const f of fakes) await f.close();
});

async function fake(...args: Parameters<typeof startFakeAuth>): Promise<FakeAuth> {
  const f = await startFakeAuth(...args);
  fakes.push(f);
  return f;
}

test("keep-alive: three logins, one connection, HTTP/1.1 with Connection: keep-alive and nginx's headers otherwise", async () => {
  const auth = await fake(okTo(1143), 0, { keepAlive: true });
  const { params, lines } = makeSetup([auth.url], { keepalive: 2, keepaliveTimeout: 5000 });
  for (let i = 0; i < 3; i++) assert.deepEqual(await authenticate(params()), OK);
  assert.equal(auth.parsed.length, 3);
  assert.equal(auth.connections, 1);
  assert.deepEqual(auth.connectionOf, [0, 0, 0]);
  assert.equal(auth.parsed[0]!.requestLine, "GET /auth HTTP/1.1");
  assert.deepEqual(
    auth.parsed[0]!.headers.map(([k]) => k),
    ["Host", "Auth-Method", "Auth-User", "Auth-Pass", "Auth-Protocol", "Auth-Login-Attempt", "Client-IP", "Connection"],
  );
  assert.equal(auth.parsed[0]!.header("Connection"), "keep-alive");
  assert.deepEqual(lines(), []);
});

test("without auth_http_keepalive: HTTP/1.0 and one connection per login, as nginx", async () => {
  const auth = await fake(okTo(1143));
  const { params } = makeSetup([auth.url]);
  for (let i = 0; i < 3; i++) assert.deepEqual(await authenticate(params()), OK);
  assert.equal(auth.connections, 3);
  assert.equal(auth.parsed[0]!.requestLine, "GET /auth HTTP/1.0");
  assert.equal(auth.parsed[0]!.header("Connection"), undefined);
});

test("the auth service closing idle connections: the next login opens a fresh one and succeeds", async () => {
  const auth = await fake(okTo(1143), 0, { keepAlive: true, idleCloseMs: 30 });
  const { params, lines } = makeSetup([auth.url], { keepalive: 2, keepaliveTimeout: 5000 });
  assert.deepEqual(await authenticate(params()), OK);
  // the server closes the idle connection; the pool drops it when the close arrives
  assert.equal(idleCount(`127.0.0.1:${auth.port}|plain`), 1);
  while (idleCount(`127.0.0.1:${auth.port}|plain`) > 0) await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(await authenticate(params()), OK);
  assert.deepEqual(auth.connectionOf, [0, 1]);
  assert.deepEqual(lines(), []);
});

test("Connection: close, HTTP/1.0 answers and answers without framing are used but their connection is not reused", async () => {
  for (const [status, headers] of [
    ["HTTP/1.1 200 OK", "Connection: close\r\nContent-Length: 0\r\n"],
    ["HTTP/1.0 200 OK", "Content-Length: 0\r\n"],
    ["HTTP/1.1 200 OK", ""],
  ] as const) {
    closeIdle();
    const answer = `${status}\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 1143\r\n${headers}\r\n`;
    const auth = await fake(() => answer, 0, { keepAlive: true });
    const { params } = makeSetup([auth.url], { keepalive: 2, keepaliveTimeout: 5000 });
    assert.deepEqual(await authenticate(params()), OK);
    assert.deepEqual(await authenticate(params()), OK);
    assert.equal(auth.connections, 2, `${status} ${JSON.stringify(headers)}`);
  }
});

test("a chunked body and a Content-Length body are read to their end and the connection reused", async () => {
  for (const framing of ["Transfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n", "Content-Length: 5\r\n\r\nhello"]) {
    closeIdle();
    const answer = `HTTP/1.1 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 1143\r\n${framing}`;
    const auth = await fake(() => answer, 0, { keepAlive: true });
    const { params, lines } = makeSetup([auth.url], { keepalive: 2, keepaliveTimeout: 5000 });
    assert.deepEqual(await authenticate(params()), OK);
    assert.deepEqual(await authenticate(params()), OK);
    assert.equal(auth.connections, 1, JSON.stringify(framing));
    assert.deepEqual(lines(), []);
  }
});

test("bad framing in the header block: the protocol's temporary failure, an error line, and the next login is served on a fresh connection", async () => {
  const head = "HTTP/1.1 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 1143\r\n";
  const cases: [string, string][] = [
    ["Transfer-Encoding: gzip, chunked\r\n\r\n", "sent invalid response"],
    ["Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "sent invalid response"],
    ["Content-Length: 0\r\nContent-Length: 0\r\n\r\n", "sent invalid response"],
    ["Content-Length: -1\r\n\r\n", "sent invalid response"],
    ["Content-Length: 99999999\r\n\r\n", "sent too large response"],
    [`X-Big: ${"y".repeat(1100)}\r\nContent-Length: 0\r\n\r\n`, "sent too large response"],
  ];
  for (const [tail, message] of cases) {
    closeIdle();
    let n = 0;
    const auth = await fake(() => (n++ === 0 ? head + tail : `${head}Content-Length: 0\r\n\r\n`), 0, { keepAlive: true });
    const { params, lines } = makeSetup([auth.url], { keepalive: 2, keepaliveTimeout: 5000 });
    assert.deepEqual(await authenticate(params()), { kind: "error" }, `case ${cases.findIndex((c) => c[0] === tail)}`);
    assert.deepEqual(lines(), [`[error] auth http server 127.0.0.1:${auth.port} ${message} while in http auth state`]);
    assert.deepEqual(await authenticate(params()), OK);
    assert.equal(auth.connections, 2);
  }
});

test("a broken, oversized or endless body: the header block decides the login at once (as nginx), the connection is not reused", async () => {
  const head = "HTTP/1.1 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 1143\r\n";
  const bodies = [
    "Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    "Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
    `Transfer-Encoding: chunked\r\n\r\n${"3fff\r\n" + "x".repeat(0x3fff) + "\r\n"}${"3fff\r\n" + "x".repeat(0x3fff) + "\r\n"}0\r\n\r\n`,
    // 3 bytes of 10, and nothing more: nginx never waits for a body
    "Content-Length: 10\r\n\r\nabc",
    "Transfer-Encoding: chunked\r\n\r\n5\r\nhel",
  ];
  for (const tail of bodies) {
    closeIdle();
    let n = 0;
    const auth = await fake(() => (n++ === 0 ? head + tail : `${head}Content-Length: 0\r\n\r\n`), 0, { keepAlive: true });
    // a login that waited for the body would get auth_http_timeout's error
    const { params, lines } = makeSetup([auth.url], { keepalive: 2, keepaliveTimeout: 5000, timeout: 3000 });
    assert.deepEqual(await authenticate(params()), OK, JSON.stringify(tail.slice(0, 40)));
    assert.deepEqual(lines(), []);
    assert.deepEqual(await authenticate(params()), OK);
    assert.equal(auth.connections, 2, "the connection with the bad body was not reused");
  }
});

test("a request written on a kept-alive connection is never sent again: the server closing instead of answering costs that login only", async () => {
  let n = 0;
  const auth = await fake(() => (n++ === 1 ? { headers: [], close: "beforeReply" } : okTo(1143)({} as never)), 0, { keepAlive: true });
  const { params, lines } = makeSetup([auth.url], { keepalive: 2, keepaliveTimeout: 5000 });
  assert.deepEqual(await authenticate(params()), OK);
  assert.deepEqual(await authenticate(params()), { kind: "error" });
  assert.equal(auth.parsed.length, 2, "the second login's request went once");
  assert.deepEqual(lines(), [`[error] auth http server 127.0.0.1:${auth.port} closed the connection without a response while in http auth state`]);
  assert.deepEqual(await authenticate(params()), OK);
  assert.deepEqual(auth.connectionOf, [0, 0, 1]);
});

test("the pool keeps at most auth_http_keepalive idle connections", async () => {
  const auth = await fake(
    () => ({
      headers: [
        ["Auth-Status", "OK"],
        ["Auth-Server", "127.0.0.1"],
        ["Auth-Port", "1143"],
      ],
      delayMs: 50,
    }),
    0,
    { keepAlive: true },
  );
  const { params } = makeSetup([auth.url], { keepalive: 1, keepaliveTimeout: 5000 });
  await Promise.all([authenticate(params()), authenticate(params()), authenticate(params())]);
  assert.equal(auth.connections, 3);
  await Promise.all([authenticate(params()), authenticate(params())]);
  // one of the three was kept: the second round needed one new connection
  assert.equal(auth.connections, 4);
});

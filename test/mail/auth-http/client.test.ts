import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConnectionLog, ErrorLog, MemorySink } from "../../../src/core/log.js";
import { authenticate, type AuthenticateParams } from "../../../src/mail/auth-http/client.js";
import type { AuthHttpSettings } from "../../../src/mail/auth-http/module.js";
import { parseAuthHttpUrl } from "../../../src/mail/auth-http/url.js";
import type { Credentials, SessionInfo } from "../../../src/mail/types.js";

type Handler = (socket: Socket, request: string, index: number) => void;

/** A raw auth server: collects each request up to the blank line, then lets the test answer. */
async function fakeAuthServer(handler: Handler, path?: string): Promise<{ server: Server; port: number; requests: string[]; close: () => Promise<void> }> {
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let data = "";
    let answered = false;
    socket.on("data", (chunk) => {
      data += chunk.toString("latin1");
      if (!answered && data.includes("\r\n\r\n")) {
        answered = true;
        requests.push(data);
        handler(socket, data, requests.length - 1);
      }
    });
  });
  await new Promise<void>((resolve) => (path ? server.listen(path, resolve) : server.listen(0, "127.0.0.1", resolve)));
  const port = path ? 0 : (server.address() as AddressInfo).port;
  return {
    server,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const SESSION: SessionInfo = {
  id: 7,
  protocol: "imap",
  clientAddr: "127.0.0.1",
  clientPort: 40000,
  localAddr: "127.0.0.1",
  localPort: 143,
  unixClient: false,
};

function setup(url: string, over: Partial<AuthenticateParams> = {}, timeout = 2000) {
  const sink = new MemorySink(1 << 16, "debug");
  const log = new ConnectionLog(new ErrorLog([sink]), 7, { client: "127.0.0.1", server: "127.0.0.1:143", login: "user" });
  const parsed = parseAuthHttpUrl(url);
  const settings: AuthHttpSettings = { url: parsed, headers: [], timeout, passClientCert: false };
  const credentials: Credentials = { method: "plain", login: Buffer.from("user"), password: Buffer.from("pass word") };
  const params: AuthenticateParams = { settings, address: parsed.address, session: SESSION, credentials, attempt: 1, log, ...over };
  // debug lines (src/mail/debug-log.ts) are checked in test/mail/debug-log*.test.ts
  return {
    params,
    sink,
    lines: () =>
      sink.contents
        .trim()
        .split("\n")
        .filter((l) => l !== "" && !/ \[debug\] /.test(l))
        .map((l) => l.replace(/^\S+ \S+ (\[\w+\]) \d+#\d+: /, "$1 ")),
  };
}

const reply =
  (text: string): Handler =>
  (socket) =>
    socket.end(text);

test("authenticate() returns the backend and the request goes over a fresh connection", async () => {
  const fake = await fakeAuthServer(reply("HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 1143\r\n\r\n"));
  try {
    const { params, lines } = setup(`127.0.0.1:${fake.port}/auth`);
    const out = await authenticate(params);
    assert.deepEqual(out, { kind: "ok", backend: { host: "127.0.0.1", port: 1143 }, login: Buffer.from("user"), password: Buffer.from("pass word") });
    assert.match(fake.requests[0]!, /^GET \/auth HTTP\/1\.0\r\nHost: 127\.0\.0\.1\r\nAuth-Method: plain\r\nAuth-User: user\r\nAuth-Pass: pass%20word\r\n/);
    assert.deepEqual(lines(), []);
    assert.equal(params.log.action, "in http auth state");
  } finally {
    await fake.close();
  }
});

test("a refusal is logged at info and returned with its wait", async () => {
  const fake = await fakeAuthServer(reply("HTTP/1.0 200 OK\r\nAuth-Status: Invalid login or password\r\nAuth-Wait: 3\r\n\r\n"));
  try {
    const { params, lines } = setup(`127.0.0.1:${fake.port}/auth`);
    assert.deepEqual(await authenticate(params), { kind: "refused", message: "Invalid login or password", errorCode: undefined, wait: 3 });
    assert.deepEqual(lines(), [
      '[info] *7 client login failed: "Invalid login or password" while in http auth state, client: 127.0.0.1, server: 127.0.0.1:143, login: "user"',
    ]);
  } finally {
    await fake.close();
  }
});

test("a refused connection is an internal error logged as recv() failed", async () => {
  const fake = await fakeAuthServer(() => {});
  const port = fake.port;
  await fake.close();
  const { params, lines } = setup(`127.0.0.1:${port}/auth`);
  assert.deepEqual(await authenticate(params), { kind: "error" });
  assert.deepEqual(lines(), [
    '[error] *7 recv() failed (111: Connection refused) while in http auth state, client: 127.0.0.1, server: 127.0.0.1:143, login: "user"',
  ]);
});

test("a missing unix socket is logged as connect() to unix:PATH failed", async () => {
  const dir = mkdtempSync(join(tmpdir(), "postern-ah-"));
  try {
    const { params, lines } = setup(`unix:${dir}/none.sock:/auth`);
    assert.deepEqual(await authenticate(params), { kind: "error" });
    assert.match(
      lines()[0]!,
      new RegExp(`^\\[crit\\] \\*7 connect\\(\\) to unix:${dir}/none\\.sock failed \\(2: No such file or directory\\) while in http auth state`),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("auth_http over a unix socket sends Host: localhost", async () => {
  const dir = mkdtempSync(join(tmpdir(), "postern-ah-"));
  const fake = await fakeAuthServer(reply("Auth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 110\r\n\r\n"), join(dir, "a.sock"));
  try {
    const { params } = setup(`unix:${dir}/a.sock:/check`);
    assert.equal((await authenticate(params)).kind, "ok");
    assert.match(fake.requests[0]!, /^GET \/check HTTP\/1\.0\r\nHost: localhost\r\n/);
  } finally {
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("auth_http_timeout is one deadline: trickled bytes do not extend it", async () => {
  const fake = await fakeAuthServer((socket) => {
    const t = setInterval(() => socket.write("X-Pad: a\r\n"), 50);
    socket.on("close", () => clearInterval(t));
  });
  try {
    const { params, lines } = setup(`127.0.0.1:${fake.port}/auth`, {}, 300);
    const started = Date.now();
    assert.deepEqual(await authenticate(params), { kind: "error" });
    const took = Date.now() - started;
    assert.ok(took >= 290 && took < 1500, `took ${took} ms`);
    assert.deepEqual(lines(), [
      `[error] *7 auth http server 127.0.0.1:${fake.port} timed out (110: Connection timed out) while in http auth state, client: 127.0.0.1, server: 127.0.0.1:143, login: "user"`,
    ]);
  } finally {
    await fake.close();
  }
});

test("a connection closed before the blank line is an internal error with nothing logged", async () => {
  const fake = await fakeAuthServer(reply("HTTP/1.0 200 OK\r\nAuth-Status: OK\r\n"));
  try {
    const { params, lines } = setup(`127.0.0.1:${fake.port}/auth`);
    assert.deepEqual(await authenticate(params), { kind: "error" });
    assert.deepEqual(lines(), []);
  } finally {
    await fake.close();
  }
});

test("a header block over 1024 bytes is an internal error with nothing logged", async () => {
  const fake = await fakeAuthServer((socket) => socket.write(`HTTP/1.0 200 OK\r\nX-Big: ${"a".repeat(1100)}\r\n\r\n`));
  try {
    const { params, lines } = setup(`127.0.0.1:${fake.port}/auth`);
    assert.deepEqual(await authenticate(params), { kind: "error" });
    assert.deepEqual(lines(), []);
  } finally {
    await fake.close();
  }
});

test("garbage is logged as an invalid header, a bad status line as an invalid response", async () => {
  for (const [text, what] of [
    ["<html>\r\n\r\n", "sent invalid header in response"],
    ["HTTP/1.0 200\rOK\r\n\r\n", "sent invalid response"],
  ] as const) {
    const fake = await fakeAuthServer(reply(text));
    try {
      const { params, lines } = setup(`127.0.0.1:${fake.port}/auth`);
      assert.deepEqual(await authenticate(params), { kind: "error" });
      assert.deepEqual(lines(), [
        `[error] *7 auth http server 127.0.0.1:${fake.port} ${what} while in http auth state, client: 127.0.0.1, server: 127.0.0.1:143, login: "user"`,
      ]);
    } finally {
      await fake.close();
    }
  }
});

test("Auth-Status: WAIT repeats the request after Auth-Wait with the same attempt; APOP repeats with an empty Auth-Pass", async () => {
  const times: number[] = [];
  const fake = await fakeAuthServer((socket, _req, i) => {
    times.push(Date.now());
    if (i === 0) socket.end("HTTP/1.0 200 OK\r\nAuth-Status: WAIT\r\nAuth-Wait: 1\r\nAuth-User: renamed\r\n\r\n");
    else if (i === 1) socket.end("HTTP/1.0 200 OK\r\nAuth-Status: WAIT\r\n\r\n");
    else socket.end("HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 110\r\nAuth-Pass: clear\r\n\r\n");
  });
  try {
    const credentials: Credentials = {
      method: "apop",
      login: Buffer.from("user"),
      password: Buffer.from("0123456789abcdef0123456789abcdef"),
      salt: "<1.2@mx>",
    };
    const { params } = setup(`127.0.0.1:${fake.port}/auth`, { credentials, attempt: 4, session: { ...SESSION, protocol: "pop3" } });
    const out = await authenticate(params);
    assert.deepEqual(out, { kind: "ok", backend: { host: "127.0.0.1", port: 110 }, login: Buffer.from("renamed"), password: Buffer.from("clear") });
    assert.equal(fake.requests.length, 3);
    assert.match(fake.requests[0]!, /\r\nAuth-User: user\r\nAuth-Pass: 0123456789abcdef0123456789abcdef\r\nAuth-Salt: <1\.2@mx>\r\n/);
    for (const r of fake.requests.slice(1)) assert.match(r, /\r\nAuth-User: renamed\r\nAuth-Pass: \r\nAuth-Salt: <1\.2@mx>\r\n/);
    for (const r of fake.requests) assert.match(r, /\r\nAuth-Login-Attempt: 4\r\n/);
    assert.ok(times[1]! - times[0]! >= 950, `waited ${times[1]! - times[0]!} ms`);
    assert.ok(times[2]! - times[1]! < 900, "no Auth-Wait: repeated at once");
  } finally {
    await fake.close();
  }
});

test("CRAM-MD5: a WAIT reply's Auth-Pass is sent once, then withdrawn again with the salt", async () => {
  const fake = await fakeAuthServer((socket, _req, i) => {
    if (i === 0) socket.end("Auth-Status: WAIT\r\nAuth-Pass: from wait\r\n\r\n");
    else socket.end("Auth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 143\r\n\r\n");
  });
  try {
    const credentials: Credentials = { method: "cram-md5", login: Buffer.from("user"), password: Buffer.from("d".repeat(32)), salt: "<5.6@mx>" };
    const { params, lines } = setup(`127.0.0.1:${fake.port}/auth`, { credentials });
    assert.deepEqual(await authenticate(params), { kind: "error" });
    assert.match(fake.requests[1]!, /\r\nAuth-Pass: from%20wait\r\nAuth-Salt: <5\.6@mx>\r\n/);
    assert.match(lines()[0]!, /did not send password while in http auth state/);
  } finally {
    await fake.close();
  }
});

test("APOP success without Auth-Pass is an error: nginx has no password for the backend", async () => {
  const fake = await fakeAuthServer(reply("Auth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 110\r\n\r\n"));
  try {
    const credentials: Credentials = { method: "apop", login: Buffer.from("user"), password: Buffer.from("d"), salt: "<1.2@mx>" };
    const { params, lines } = setup(`127.0.0.1:${fake.port}/auth`, { credentials, session: { ...SESSION, protocol: "pop3" } });
    assert.deepEqual(await authenticate(params), { kind: "error" });
    assert.match(lines()[0]!, new RegExp(`^\\[error\\] \\*7 auth http server 127\\.0\\.0\\.1:${fake.port} did not send password while in http auth state`));
  } finally {
    await fake.close();
  }
});

test("aborting (client gone) drops the request at once and logs nothing", async () => {
  const fake = await fakeAuthServer(() => {});
  try {
    const controller = new AbortController();
    const { params, lines } = setup(`127.0.0.1:${fake.port}/auth`, { signal: controller.signal }, 5000);
    const started = Date.now();
    setTimeout(() => controller.abort(), 100);
    assert.deepEqual(await authenticate(params), { kind: "error" });
    assert.ok(Date.now() - started < 1000);
    assert.deepEqual(lines(), []);
  } finally {
    await fake.close();
  }
});

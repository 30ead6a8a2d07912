/**
 * The SMTP front end inside the real session core (src/mail/session.ts) on
 * a real socket: greeting, pipelining, the greeting delay, resolving, and
 * an auth refusal. auth_http and TLS are stubbed through SessionServices.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { ErrorLog } from "../../../src/core/log.js";
import { Session, type SessionServices } from "../../../src/mail/session.js";
import { smtpProtocol } from "../../../src/mail/smtp/protocol.js";
import { smtpAuthDirective, smtpGreetingDelayDirective } from "../../../src/mail/smtp/module.js";
import { resolverDirective, resolverTimeoutDirective } from "../../../src/mail/core-module.js";
import type { ListenSpec } from "../../../src/mail/listen.js";
import type { Credentials, SessionInfo } from "../../../src/mail/types.js";
import { FakeDns } from "../../event/fake-dns.js";
import { LinesSink, type Setting, set, smtpServer } from "../fake-session.js";

const GREETING = "220 mx.example.test ESMTP ready\r\n";
let dns: FakeDns;
const servers: Server[] = [];

before(async () => {
  dns = await new FakeDns().start();
});
after(async () => {
  for (const s of servers) await new Promise((r) => s.close(r));
  await dns.close();
});

interface Harness {
  readonly port: number;
  readonly auths: Array<{ info: SessionInfo; credentials: Credentials }>;
  readonly sink: LinesSink;
}

async function listen(settings: readonly Setting[]): Promise<Harness> {
  const server = smtpServer(settings);
  const sink = new LinesSink();
  const log = new ErrorLog([sink]);
  const auths: Harness["auths"] = [];
  const services: SessionServices = {
    tls: () => null,
    authenticate: (_server, info, credentials) => {
      auths.push({ info, credentials });
      return Promise.resolve({ kind: "refused", message: "Invalid login or password" });
    },
    readProxyProtocol: () => Promise.reject(new Error("not used")),
    realClientAddress: () => undefined,
    proxy: () => Promise.resolve(),
  };
  const net = createServer((socket) => {
    const spec = {
      host: "127.0.0.1",
      port: 0,
      text: "127.0.0.1:25",
      wildcard: false,
      ssl: false,
      proxyProtocol: false,
      backlog: 511,
      bind: false,
      ipv6only: false,
      location: { file: "t", line: 1 },
    } as ListenSpec;
    new Session(socket, server, spec, smtpProtocol, services, log).start();
  });
  servers.push(net);
  await new Promise<void>((r) => net.listen(0, "127.0.0.1", r));
  return { port: (net.address() as AddressInfo).port, auths, sink };
}

/** Connects; `upTo(text)` resolves with all bytes received once `text` arrived (or the close, or 3 s). */
async function client(port: number): Promise<{ socket: Socket; upTo: (text: string) => Promise<string>; received: () => string; closed: Promise<void> }> {
  const socket = connect(port, "127.0.0.1");
  let data = "";
  const waiters: Array<() => void> = [];
  socket.on("data", (d) => {
    data += d.toString("latin1");
    waiters.splice(0).forEach((w) => w());
  });
  const closed = new Promise<void>((r) =>
    socket.on("close", () => {
      waiters.splice(0).forEach((w) => w());
      r();
    }),
  );
  socket.on("error", () => undefined);
  await new Promise<void>((r) => socket.once("connect", () => r()));
  const upTo = async (text: string): Promise<string> => {
    const deadline = Date.now() + 3000;
    while (!data.includes(text) && !socket.destroyed && Date.now() < deadline) {
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 100);
      });
    }
    return data;
  };
  return { socket, upTo, received: () => data, closed };
}

test("greeting, pipelined commands answered in order, AUTH refused and closed", async () => {
  const h = await listen([]);
  const c = await client(h.port);
  assert.equal(await c.upTo(GREETING), GREETING);
  c.socket.write("EHLO a\r\nNOOP\r\nDATA\r\nAUTH PLAIN\r\n");
  const expected = GREETING + "250-mx.example.test\r\n250 AUTH PLAIN LOGIN\r\n250 2.0.0 OK\r\n500 5.5.1 Invalid command\r\n334 \r\n";
  assert.equal(await c.upTo("334 \r\n"), expected);
  c.socket.write(`${Buffer.from("\0u\0p").toString("base64")}\r\n`);
  await c.closed;
  assert.equal(await c.upTo("535"), expected + "535 5.7.0 Invalid login or password\r\n");
  assert.equal(h.auths.length, 1);
  assert.deepEqual(h.auths[0]!.info.smtp, { helo: "a", esmtp: true, from: undefined, to: undefined, clientHost: "[UNAVAILABLE]" });
});

test("greeting delay: an early talker gets 503 through the real core", async () => {
  const h = await listen([set(smtpGreetingDelayDirective, 400)]);
  const c = await client(h.port);
  c.socket.write("EHLO early\r\n");
  const t0 = Date.now();
  await c.closed;
  assert.ok(Date.now() - t0 < 350, "rejected before the delay ends");
  assert.equal(await c.upTo("503"), "503 5.5.0 Improper use of SMTP command pipelining\r\n");
  assert.ok(h.sink.lines.some((l) => l.text.includes('client was rejected before greeting: "EHLO early__"')));
});

test("resolving: no greeting before the answer; input sent meanwhile is answered after it", async () => {
  dns.answers.set("PTR 1.0.0.127.in-addr.arpa", { records: [{ type: "PTR", data: "localhost.example" }], delayMs: 300 });
  dns.answers.set("A localhost.example", { records: [{ type: "A", data: "127.0.0.1" }] });
  dns.answers.set("AAAA localhost.example", { records: [] });
  const h = await listen([
    set(smtpAuthDirective, new Set(["none"] as const)),
    set(resolverDirective, { servers: [{ host: "127.0.0.1", port: dns.port }], ipv4: true, ipv6: true }),
    set(resolverTimeoutDirective, 2000),
  ]);
  const c = await client(h.port);
  c.socket.write("HELO h\r\nMAIL FROM:<a>\r\n");
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(c.received(), "", "nothing before the PTR answer");
  assert.equal(await c.upTo("250 2.0.0 OK\r\n"), GREETING + "250 mx.example.test\r\n250 2.0.0 OK\r\n");
  c.socket.write("RCPT TO:<b>\r\n");
  await c.closed;
  assert.equal(h.auths[0]!.info.smtp?.clientHost, "localhost.example");
  assert.equal(h.auths[0]!.credentials.method, "none");
});

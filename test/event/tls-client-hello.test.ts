/**
 * The server name read from a client's first TLS bytes (event/tls-client-hello.ts),
 * on ClientHellos captured from Node's own TLS client, whole, cut short,
 * spread over records, and damaged.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { scanClientHello, validServerName } from "../../src/event/tls-client-hello.js";

/** The bytes a TLS client sends first (its ClientHello record). */
async function clientHello(servername: string | undefined): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  const got = new Promise<Buffer>((resolve) => server.once("connection", (s) => s.once("data", (d: Buffer) => (resolve(d), s.destroy()))));
  // an IP address as host sends no SNI
  const client = tls.connect({ port, host: "127.0.0.1", ...(servername ? { servername } : {}) });
  client.on("error", () => undefined);
  const bytes = await got;
  client.destroy();
  server.close();
  return bytes;
}

/** The same handshake message re-framed in records of at most `size` bytes. */
function reframe(record: Buffer, size: number): Buffer {
  const body = record.subarray(5, 5 + record.readUInt16BE(3));
  const out: Buffer[] = [];
  for (let at = 0; at < body.length; at += size) {
    const part = body.subarray(at, at + size);
    const header = Buffer.from([22, 3, 1, 0, 0]);
    header.writeUInt16BE(part.length, 3);
    out.push(header, part);
  }
  return Buffer.concat(out);
}

test("a whole ClientHello gives its server name; without SNI none", async () => {
  const hello = await clientHello("mail.example.org");
  const scan = scanClientHello(hello);
  assert.equal(scan.kind, "hello");
  assert.equal(scan.kind === "hello" ? scan.serverName?.toString() : undefined, "mail.example.org");
  const none = scanClientHello(await clientHello(undefined));
  assert.equal(none.kind, "hello");
  assert.equal(none.kind === "hello" ? none.serverName : "?", undefined);
});

test("cut short: more is needed, at every length", async () => {
  const hello = await clientHello("a.example");
  for (const n of [0, 1, 4]) assert.deepEqual(scanClientHello(hello.subarray(0, n)), { kind: "more", need: 5 }, `at ${n} bytes`);
  for (const n of [5, 6, 9, 50, hello.length - 1])
    assert.deepEqual(scanClientHello(hello.subarray(0, n)), { kind: "more", need: hello.length }, `at ${n} bytes`);
});

test("spread over several records: read across them", async () => {
  const hello = await clientHello("b.example");
  const spread = reframe(hello, 37);
  const scan = scanClientHello(spread);
  assert.equal(scan.kind === "hello" ? scan.serverName?.toString() : scan.kind, "b.example");
  assert.deepEqual(scanClientHello(spread.subarray(0, 42)), { kind: "more", need: 47 }, "the first record alone: the next header is needed");
  assert.deepEqual(scanClientHello(spread.subarray(0, 42 + 5)), { kind: "more", need: 42 + 42 }, "then the second record");
});

test("not a ClientHello, or damaged: invalid (OpenSSL then says why)", async () => {
  assert.deepEqual(scanClientHello(Buffer.from("GET / HTTP/1.1\r\n\r\n")), { kind: "invalid" });
  assert.deepEqual(scanClientHello(Buffer.from("a LOGIN u p\r\n")), { kind: "invalid" });
  const hello = Buffer.from(await clientHello("c.example"));
  const serverHello = Buffer.from(hello);
  serverHello[5] = 2;
  assert.deepEqual(scanClientHello(serverHello), { kind: "invalid" }, "another handshake message");
  const emptyRecord = Buffer.from([22, 3, 1, 0, 0]);
  assert.deepEqual(scanClientHello(emptyRecord), { kind: "invalid" });
  // the extensions' length claims more than the message holds
  const damaged = Buffer.from(hello);
  const sidLength = damaged[5 + 4 + 2 + 32]!;
  const at = 5 + 4 + 2 + 32 + 1 + sidLength;
  const suites = damaged.readUInt16BE(at);
  const extensionsAt = at + 2 + suites + 1 + damaged[at + 2 + suites]!;
  damaged.writeUInt16BE(0xfff0, extensionsAt);
  assert.deepEqual(scanClientHello(damaged), { kind: "invalid" });
});

test("validServerName: host names only, lower-cased, without a trailing dot", () => {
  assert.equal(validServerName(Buffer.from("Mail.Example.ORG.")), "mail.example.org");
  assert.equal(validServerName(Buffer.from("xn--bcher-kva.example")), "xn--bcher-kva.example");
  assert.equal(validServerName(Buffer.from("_dmarc.example")), "_dmarc.example");
  for (const bad of ["", ".", "a..b", "a b", "bad!name", "a/b", "a\r\nb", "münchen.example", `${"x".repeat(64)}.example`, "a.".repeat(130)]) {
    assert.equal(validServerName(Buffer.from(bad)), undefined, JSON.stringify(bad));
  }
});

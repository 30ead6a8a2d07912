/**
 * The ticket key name read from a ClientHello (event/tls-client-hello.ts),
 * on ClientHellos of Node's own TLS client offering a session a real server
 * made: what picks the context among a server's ticket keys (docs/shared-tls.md).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { scanClientHello } from "../../src/event/tls-client-hello.js";
import { certs } from "../support/certs.js";

/**
 * The first bytes of a client offering a session it got from a real
 * server whose ticket key is `key`: the ticket's key name must be read from
 * the session_ticket extension (TLS 1.2) or the pre_shared_key identity (TLS 1.3).
 */
async function helloOffering(version: "TLSv1.2" | "TLSv1.3", key: Buffer): Promise<Buffer> {
  const c = certs();
  const server = tls.createServer({ cert: readFileSync(c.serverEcdsa.cert), key: readFileSync(c.serverEcdsa.key), ticketKeys: key }, (s) => s.end("hi"));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  const session = await new Promise<Buffer>((resolve, reject) => {
    const s = tls.connect({ port, host: "127.0.0.1", rejectUnauthorized: false, maxVersion: version, minVersion: version });
    let got: Buffer | undefined;
    s.on("session", (b: Buffer) => (got = b));
    s.on("data", () => undefined);
    s.on("end", () => (got ? resolve(got) : reject(new Error("no session"))));
    s.on("error", reject);
  });
  server.close();
  const raw = net.createServer();
  await new Promise<void>((r) => raw.listen(0, "127.0.0.1", r));
  const rawPort = (raw.address() as net.AddressInfo).port;
  const got = new Promise<Buffer>((resolve) => raw.once("connection", (s) => s.once("data", (d: Buffer) => (resolve(d), s.destroy()))));
  const client = tls.connect({ port: rawPort, host: "127.0.0.1", session, maxVersion: version, minVersion: version });
  client.on("error", () => undefined);
  const bytes = await got;
  client.destroy();
  raw.close();
  return bytes;
}

test("a ticket's key name, from a TLS 1.2 session_ticket and a TLS 1.3 pre_shared_key identity", async () => {
  const key = randomBytes(48);
  for (const version of ["TLSv1.2", "TLSv1.3"] as const) {
    const scan = scanClientHello(await helloOffering(version, key));
    assert.equal(scan.kind, "hello");
    if (scan.kind !== "hello") continue;
    assert.deepEqual(scan.ticketKeyName, key.subarray(0, 16), `${version}: the key name Node put first in its ticket`);
    assert.equal(scan.offersTls13 === true, version === "TLSv1.3");
  }
  const other = scanClientHello(await helloOffering("TLSv1.3", randomBytes(48)));
  assert.notDeepEqual(other.kind === "hello" ? other.ticketKeyName : undefined, key.subarray(0, 16), "another key, another name");
});

/**
 * The metrics endpoint when a master stops accepting (USR2: the new binary
 * holds the socket and answers from then on). A connection the old master
 * had already accepted, whose request had not arrived yet, is still
 * answered: http.Server#close() would have closed it as idle, and a load
 * balancer's health check would have seen a reset.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { once } from "node:events";
import { createServer } from "node:http";
import { MetricsEndpoint, stopListening } from "../../src/process/metrics-endpoint.js";
import type { MetricsHub } from "../../src/event/metrics-ipc.js";
import { freePorts } from "../support/ports.js";

/** Turns the event loop until this process holds `n` TCP connections (the client's end, then the one the endpoint accepted). */
async function connectionsOpen(n: number): Promise<void> {
  while (process.getActiveResourcesInfo().filter((r) => r === "TCPSocketWrap").length < n) await new Promise((r) => setImmediate(r));
}

test("a connection accepted before the endpoint stops accepting gets its /health answer, then the connection closes", async () => {
  const [port] = (await freePorts(1)) as [number];
  const endpoint = new MetricsEndpoint({} as MetricsHub, () => "ready");
  await endpoint.configure({ host: "127.0.0.1", port, text: `127.0.0.1:${port}` });
  const client = net.connect({ host: "127.0.0.1", port });
  try {
    await once(client, "connect");
    await connectionsOpen(2);
    endpoint.stopAccepting();
    let answer = "";
    client.setEncoding("latin1");
    client.on("data", (d: string) => (answer += d));
    // bounded: the bug left this connection open and unanswered
    const closed = once(client, "close", { signal: AbortSignal.timeout(5000) });
    client.write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    await closed;
    assert.match(answer, /^HTTP\/1\.1 200 OK\r\n/);
    // after it, the connection ends: nothing keeps the old master's socket open
    assert.match(answer, /\r\nconnection: close\r\n/i);
    assert.match(answer.slice(answer.indexOf("\r\n\r\n")), /ready\n/);
    // and the port takes no new connection from this endpoint
    const refused = net.connect({ host: "127.0.0.1", port });
    const [err] = (await once(refused, "error")) as [NodeJS.ErrnoException];
    assert.equal(err.code, "ECONNREFUSED");
  } finally {
    client.destroy();
    endpoint.close();
  }
});

test("once the connections a stopped endpoint still answered have ended, the server's request-timeout timer stops too", async () => {
  const server = createServer((_req, res) => res.end("ok"));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  // Node's http.Server checks its connections' timeouts with this interval (an internal, named here so a release that renames it fails this test)
  const key = Object.getOwnPropertySymbols(server).find((k) => k.description === "http.server.connectionsCheckingInterval");
  assert.ok(key, "http.Server's connection-check interval");
  const timer = (): { _destroyed: boolean } => (server as unknown as Record<symbol, { _destroyed: boolean }>)[key]!;
  const client = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
  await once(client, "connect");
  stopListening(server);
  client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  // still answered after the stop, and the timer still guards the open connection
  await once(client, "data");
  assert.equal(timer()._destroyed, false);
  const closed = once(server, "close");
  client.end();
  await closed;
  await new Promise((r) => setImmediate(r));
  assert.equal(timer()._destroyed, true);
});

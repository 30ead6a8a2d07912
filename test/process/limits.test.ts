/**
 * worker_connections: past the cap new clients are refused cleanly (closed
 * without a greeting) while the sessions already open keep working, and the
 * worker logs nginx's alert.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { MailClient } from "../support/client.js";
import { Instance, config, freePort, waitFor } from "./harness.js";

test("worker_connections caps sessions per worker; others are untouched", async () => {
  const inst = new Instance();
  const clients: MailClient[] = [];
  try {
    const port = await freePort();
    // one worker, 5 connections: the listening socket, the channel to the master, 3 sessions
    inst.write(config({ ports: [port], workers: 1 }).replace("worker_connections 64;", "worker_connections 5;"));
    await inst.up();
    for (let i = 0; i < 3; i++) {
      const c = await MailClient.connect({ port });
      assert.equal(await c.readLine(), "* OK IMAP4 ready\r\n");
      clients.push(c);
    }
    const extra = await MailClient.connect({ port });
    await extra.expectClosed();
    assert.equal(extra.transcriptText().includes("IMAP4 ready"), false, "no greeting past the cap");
    await clients[0]!.send("a NOOP\r\n");
    assert.equal(await clients[0]!.readLine(), "a OK completed\r\n");
    await waitFor("the alert", () => /\[alert\] \d+#\d+: 5 worker_connections are not enough/.test(inst.log()));
    clients.shift()!.close();
    await new Promise((r) => setTimeout(r, 200));
    const next = await MailClient.connect({ port });
    assert.equal(await next.readLine(), "* OK IMAP4 ready\r\n", "a freed slot serves the next client");
    clients.push(next);
  } finally {
    for (const c of clients) c.close();
    await inst.cleanup();
  }
});

/**
 * Times longer than Node's timers hold (2^31-1 ms, about 24.8 days): nginx
 * takes `timeout 30d`; a Node timer given that fires after 1 ms, which
 * would end every session at once and rotate an automatic ticket key every
 * millisecond. Postern waits the longest a timer can (docs/compat.md).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { subscribeTicketKey } from "../../src/event/tls-session-ipc.js";
import { GREETING, connectTo, goodSession, startBed } from "./env.js";

test("timeout, auth_http_timeout and proxy_timeout of 30 days: sessions wait, log in and relay as with short ones", async () => {
  const bed = await startBed({ timeout: "30d", extra: "  auth_http_timeout 30d;\n  proxy_timeout 30d;\n  smtp_greeting_delay 0;" });
  try {
    // an idle client is not closed at once
    const idle = await connectTo(bed, "imap");
    assert.match(await idle.readLine(), GREETING.imap);
    await sleep(300);
    await idle.send("a NOOP\r\n");
    assert.match(await idle.read(/^a .*\r\n/m), /^a OK/m, idle.transcriptText());
    idle.close();
    for (const name of ["imap", "pop3", "smtp", "imaps"] as const) await goodSession(bed, name);
  } finally {
    await bed.stop();
  }
});

test("an automatic ticket key under ssl_session_timeout 30d is not rotated every millisecond", async () => {
  const keys: Buffer[] = [];
  subscribeTicketKey("long-timeouts-test", 1 << 20, 30 * 24 * 3600, (k) => keys.push(k));
  await sleep(100);
  assert.equal(keys.length, 1, "one key, no rotation within 100 ms");
});

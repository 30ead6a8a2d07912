/**
 * The recorder keeps its series across deltas (event/metrics.ts): each
 * delta carries only what changed since the one before, and what it handed
 * over is never touched again (the local hub keeps the arrays it is given).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { AUTH_HTTP_SECONDS, METRICS, MetricsRecorder, SESSIONS, SESSIONS_CURRENT } from "../../src/event/metrics.js";

const S = METRICS.indexOf(SESSIONS);
const G = METRICS.indexOf(SESSIONS_CURRENT);
const H = METRICS.indexOf(AUTH_HTTP_SECONDS);

test("a series changed again after a delta is sent with its new change only, in first-change order", () => {
  const r = new MetricsRecorder();
  r.enabled = true;
  let bursts = 0;
  r.onChange = () => bursts++;
  r.add(SESSIONS_CURRENT, ["auth"], 1);
  r.add(SESSIONS, ["imap", "127.0.0.1:143", "proxied"]);
  r.add(SESSIONS, ["imap", "127.0.0.1:143", "proxied"]);
  r.add(SESSIONS, ["imap", "127.0.0.1:143", "error"]);
  r.add(SESSIONS_CURRENT, ["auth"], -1);
  assert.equal(bursts, 1);
  assert.deepEqual(r.takeDelta(), [
    [G, ["auth"], 0],
    [S, ["imap", "127.0.0.1:143", "proxied"], 2],
    [S, ["imap", "127.0.0.1:143", "error"], 1],
  ]);
  assert.equal(r.takeDelta(), undefined);
  r.add(SESSIONS, ["imap", "127.0.0.1:143", "error"], 3);
  assert.equal(bursts, 2);
  assert.deepEqual(r.takeDelta(), [[S, ["imap", "127.0.0.1:143", "error"], 3]]);
});

test("a histogram's handed-over buckets stay as they were", () => {
  const r = new MetricsRecorder();
  r.enabled = true;
  r.observe(AUTH_HTTP_SECONDS, [], 0.004);
  const first = r.takeDelta()!;
  r.observe(AUTH_HTTP_SECONDS, [], 0.004);
  r.observe(AUTH_HTTP_SECONDS, [], 20);
  const second = r.takeDelta()!;
  assert.deepEqual(first, [[H, [], 0.004, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]]);
  assert.deepEqual(second, [[H, [], 20.004, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]]]);
});

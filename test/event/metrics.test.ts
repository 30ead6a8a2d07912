/**
 * The metrics store and its IPC messages (event/metrics*.ts): a worker's
 * deltas are summed, a retired worker's counters stay and its gauges go,
 * every malformed message is dropped whole, a scrape never waits on a
 * silent worker for more than its bound.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { AUTH_HTTP_SECONDS, METRICS, MetricsRecorder, SESSIONS, SESSIONS_CURRENT } from "../../src/event/metrics.js";
import { MemoryMetricsStore } from "../../src/event/metrics-store.js";
import { METRICS_MESSAGE, MetricsHub, metricsMessage } from "../../src/event/metrics-ipc.js";

const S = METRICS.indexOf(SESSIONS);
const G = METRICS.indexOf(SESSIONS_CURRENT);

test("deltas are summed; a retired source keeps its counters and loses its gauges", () => {
  const store = new MemoryMetricsStore();
  store.apply("w1", [
    [S, ["imap", "127.0.0.1:143", "proxied"], 2],
    [G, ["proxied"], 3],
  ]);
  store.apply("w2", [
    [S, ["imap", "127.0.0.1:143", "proxied"], 1],
    [G, ["proxied"], 1],
  ]);
  let page = store.render();
  assert.match(page, /^postern_sessions_total\{protocol="imap",listener="127.0.0.1:143",outcome="proxied"\} 3$/m);
  assert.match(page, /^postern_sessions_current\{stage="proxied"\} 4$/m);
  store.retire("w1");
  page = store.render();
  assert.match(page, /^postern_sessions_total\{protocol="imap",listener="127.0.0.1:143",outcome="proxied"\} 3$/m);
  assert.match(page, /^postern_sessions_current\{stage="proxied"\} 1$/m);
  assert.match(page, /^# TYPE postern_sessions_total counter$/m);
  assert.match(page, /^postern_worker_restarts_total 0$/m);
});

test("histograms: cumulative buckets, sum and count", () => {
  const r = new MetricsRecorder();
  r.enabled = true;
  r.observe(AUTH_HTTP_SECONDS, [], 0.004);
  r.observe(AUTH_HTTP_SECONDS, [], 0.3);
  const store = new MemoryMetricsStore();
  store.apply("w", r.takeDelta()!);
  const page = store.render();
  assert.match(page, /^postern_auth_http_duration_seconds_bucket\{le="0.005"\} 1$/m);
  assert.match(page, /^postern_auth_http_duration_seconds_bucket\{le="0.25"\} 1$/m);
  assert.match(page, /^postern_auth_http_duration_seconds_bucket\{le="0.5"\} 2$/m);
  assert.match(page, /^postern_auth_http_duration_seconds_bucket\{le="\+Inf"\} 2$/m);
  assert.match(page, /^postern_auth_http_duration_seconds_count 2$/m);
  assert.match(page, /^postern_auth_http_duration_seconds_sum 0.304$/m);
  assert.equal(r.takeDelta(), undefined, "a delta is handed over once");
});

test("a disabled recorder records nothing; label values outside the alphabet are replaced", () => {
  const r = new MetricsRecorder();
  r.add(SESSIONS, ["imap", "x", "proxied"]);
  assert.equal(r.takeDelta(), undefined);
  r.enabled = true;
  r.add(SESSIONS, ["imap", 'a"b\n', "proxied"]);
  assert.deepEqual(r.takeDelta(), [[S, ["imap", "other", "proxied"], 1]]);
});

test("malformed worker messages are dropped whole", () => {
  const ok = { type: METRICS_MESSAGE, op: "delta", seq: 0, entries: [[S, ["imap", "l", "proxied"], 1]] };
  assert.ok(metricsMessage(ok));
  const bad: unknown[] = [
    null,
    "x",
    { ...ok, type: "other" },
    { ...ok, seq: "1" },
    { ...ok, entries: [[999, [], 1]] },
    { ...ok, entries: [[S, ["imap", "l"], 1]] },
    { ...ok, entries: [[S, ["imap", "l", 'a"b'], 1]] },
    { ...ok, entries: [[S, ["imap", "l", "proxied"], -1]] },
    { ...ok, entries: [[S, ["imap", "l", "proxied"], Infinity]] },
    {
      ...ok,
      entries: [
        [S, ["imap", "l", "proxied"], 1],
        [S, ["imap"], 1],
      ],
    },
    { ...ok, entries: [[METRICS.indexOf(AUTH_HTTP_SECONDS), [], 1, [1, 2]]] },
    { ...ok, entries: new Array(10001).fill([S, ["imap", "l", "proxied"], 1]) },
  ];
  for (const m of bad) assert.equal(metricsMessage(m), undefined, JSON.stringify(m)?.slice(0, 80));
});

/** A fake worker channel: `answer` decides whether it replies to a flush. */
class FakeWorker extends EventEmitter {
  connected = true;
  constructor(readonly answer: boolean) {
    super();
  }
  send(m: unknown): boolean {
    const msg = metricsMessage(m);
    if (msg?.op === "flush" && this.answer) {
      setImmediate(() => this.emit("message", { type: METRICS_MESSAGE, op: "delta", seq: msg.seq, entries: [[S, ["pop3", "l", "proxied"], 1]] }));
    }
    return true;
  }
}

test("a scrape takes the workers' latest deltas and does not wait past its bound for a silent worker", async (t) => {
  const hub = new MetricsHub();
  hub.attach(new FakeWorker(true), "1");
  const silent = new FakeWorker(false);
  const retire = hub.attach(silent, "2");
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const page = hub.collect(500);
  await new Promise((r) => setImmediate(r));
  t.mock.timers.tick(500);
  assert.match(await page, /^postern_sessions_total\{protocol="pop3",listener="l",outcome="proxied"\} 1$/m);
  // a worker that exits during a scrape ends the wait at once
  const second = hub.collect(60000);
  await new Promise((r) => setImmediate(r));
  retire();
  assert.match(await second, /outcome="proxied"\} 2$/m);
});

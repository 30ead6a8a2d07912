/**
 * The access log and the metrics endpoint, end to end (docs/observability.md):
 * real IMAP sessions through Postern with two workers (success, bad
 * password, backend down, timeout), the exact access-log lines they leave,
 * and the Prometheus page read by the real client library's parser
 * (python3-prometheus-client), across a reload (HUP) and a worker killed
 * with SIGKILL: counters never go backwards. /health says ready, then
 * draining once a graceful shutdown began.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { startPostern } from "../../support/postern.js";
import { startFakeAuth, type AuthHandler } from "../../support/fake-auth.js";
import { startFakeImap } from "../../support/fake-backend.js";
import { MailClient } from "../../support/client.js";
import { freePorts } from "../../support/ports.js";
import { eventually, workerPids } from "../../hostile/env.js";

type Samples = Record<string, number>;

/** The page through prometheus_client's own text parser: `name{label="v",...}` -> value (labels sorted). */
function parsePage(page: string): Samples {
  const script = `
import sys, json
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join('%s="%s"' % (k, v) for k, v in sorted(s.labels.items()))
        out[s.name + ("{" + labels + "}" if labels else "")] = s.value
print(json.dumps(out))
`;
  return JSON.parse(execFileSync("/usr/bin/python3", ["-c", script], { input: page, encoding: "utf8" })) as Samples;
}

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: await res.text() };
}

/** Bytes one session's client sent and received, from its transcript. */
function counts(c: MailClient): { sent: number; received: number } {
  let sent = 0;
  let received = 0;
  for (const e of c.transcript) (e.dir === "C" ? (n: number) => (sent += n) : (n: number) => (received += n))(Buffer.byteLength(e.data, "latin1"));
  return { sent, received };
}

test("access-log lines and metric values after real sessions, with two workers, across a reload and a killed worker", async () => {
  const [imapPort, metricsPort, deadPort] = await freePorts(3);
  const backend = await startFakeImap();
  const handler: AuthHandler = (req) => {
    const user = req.header("Auth-User");
    if (user === "bad") return { headers: [["Auth-Status", "Invalid login or password"]] };
    if (user === "nobackend")
      return {
        headers: [
          ["Auth-Status", "OK"],
          ["Auth-Server", "127.0.0.1"],
          ["Auth-Port", String(deadPort)],
        ],
      };
    return {
      headers: [
        ["Auth-Status", "OK"],
        ["Auth-Server", "127.0.0.1"],
        ["Auth-Port", String(backend.port)],
      ],
    };
  };
  const auth = await startFakeAuth(handler);
  const block = `mail {
    auth_http 127.0.0.1:${auth.port}/auth;
    metrics_listen 127.0.0.1:${metricsPort};
    log_format mail '$remote_addr $protocol $server_port "$mail_login" $mail_auth_method $mail_auth_status $upstream_addr $mail_session_end $bytes_received $bytes_sent';
    access_log access.log mail;
    server { listen 127.0.0.1:${imapPort}; protocol imap; timeout 1s; }
  }`;
  const proxy = await startPostern(block, { workerProcesses: 2, ports: [imapPort!, metricsPort!] });
  const listener = `127.0.0.1:${imapPort}`;
  const accessLog = (): string[] => readFileSync(`${proxy.prefix}access.log`, "latin1").split("\n").filter(Boolean);
  const scrape = async (): Promise<Samples> => {
    const r = await get(metricsPort!, "/metrics");
    assert.equal(r.status, 200);
    return parsePage(r.body);
  };
  try {
    await eventually(() => workerPids(proxy.pid).length === 2, 5000, "two workers");
    assert.deepEqual(await get(metricsPort!, "/health"), { status: 200, body: "ready\n" });

    // success
    const ok = await MailClient.connect({ port: imapPort! });
    await ok.readLine();
    await ok.send("a LOGIN alice secret\r\n");
    assert.match(await ok.read(/^a .*\r\n/m), /^a OK/m);
    await ok.send("b LOGOUT\r\n");
    await ok.expectClosed();
    // bad password
    const bad = await MailClient.connect({ port: imapPort! });
    await bad.readLine();
    await bad.send("a LOGIN bad wrong\r\n");
    assert.match(await bad.read(/^a .*\r\n/m), /^a NO Invalid login or password/m);
    await bad.expectClosed();
    // backend down
    const down = await MailClient.connect({ port: imapPort! });
    await down.readLine();
    await down.send("a LOGIN nobackend x\r\n");
    assert.match(await down.read(/\r\n/), /internal server error|UNAVAILABLE/i);
    await down.expectClosed();
    // timeout (1s)
    const idle = await MailClient.connect({ port: imapPort! });
    await idle.readLine();
    await idle.expectClosed(4000);

    // LOGOUT before authenticating
    const quit = await MailClient.connect({ port: imapPort! });
    await quit.readLine();
    await quit.send("q LOGOUT\r\n");
    await quit.expectClosed();

    const c = [ok, bad, down, idle, quit].map(counts);
    await eventually(() => accessLog().length === 5, 5000, "five access-log lines");
    assert.deepEqual(
      accessLog().sort(),
      [
        `127.0.0.1 imap ${imapPort} "alice" plain ok 127.0.0.1:${backend.port} logout ${c[0]!.sent} ${c[0]!.received}`,
        `127.0.0.1 imap ${imapPort} "bad" plain refused - error ${c[1]!.sent} ${c[1]!.received}`,
        `127.0.0.1 imap ${imapPort} "nobackend" plain ok 127.0.0.1:${deadPort} error ${c[2]!.sent} ${c[2]!.received}`,
        `127.0.0.1 imap ${imapPort} "-" - - - timeout ${c[3]!.sent} ${c[3]!.received}`,
        `127.0.0.1 imap ${imapPort} "-" - - - logout ${c[4]!.sent} ${c[4]!.received}`,
      ].sort(),
    );

    const first = await scrape();
    const expected: Samples = {
      [`postern_sessions_total{listener="${listener}",outcome="proxied",protocol="imap"}`]: 1,
      [`postern_sessions_total{listener="${listener}",outcome="auth_refused",protocol="imap"}`]: 1,
      [`postern_sessions_total{listener="${listener}",outcome="backend_error",protocol="imap"}`]: 1,
      [`postern_sessions_total{listener="${listener}",outcome="timeout",protocol="imap"}`]: 1,
      [`postern_sessions_total{listener="${listener}",outcome="logout",protocol="imap"}`]: 1,
      'postern_auth_http_requests_total{result="ok"}': 2,
      'postern_auth_http_requests_total{result="refused"}': 1,
      postern_auth_http_duration_seconds_count: 3,
      'postern_backend_connects_total{result="ok"}': 1,
      'postern_backend_connects_total{result="error"}': 1,
      'postern_backend_logins_total{result="ok"}': 1,
      postern_backend_login_duration_seconds_count: 1,
      postern_worker_restarts_total: 0,
    };
    for (const [k, v] of Object.entries(expected)) assert.equal(first[k], v, k);
    assert.ok((first['postern_relayed_bytes_total{direction="client_to_backend"}'] ?? 0) >= "b LOGOUT\r\n".length);
    for (const stage of ["pre_auth", "auth", "proxied"]) assert.equal(first[`postern_sessions_current{stage="${stage}"}`] ?? 0, 0, stage);

    // a session open while we look: counted as proxied now
    const open = await MailClient.connect({ port: imapPort! });
    await open.readLine();
    await open.send("a LOGIN alice secret\r\n");
    await open.read(/^a .*\r\n/m);
    assert.equal((await scrape())['postern_sessions_current{stage="proxied"}'], 1);

    // reload: counters stay, the reload is counted
    const before = workerPids(proxy.pid);
    proxy.signal("SIGHUP");
    await eventually(() => workerPids(proxy.pid).filter((p) => !before.includes(p)).length === 2, 5000, "new workers");
    await eventually(
      () =>
        proxy
          .errorLog()
          .split("\n")
          .filter((l) => l.includes("start worker process")).length >= 4,
      5000,
      "reload done",
    );
    const afterReload = await scrape();
    assert.equal(afterReload['postern_reloads_total{result="ok"}'], 1);
    for (const [k, v] of Object.entries(expected))
      if (k !== "postern_worker_restarts_total") assert.ok((afterReload[k] ?? 0) >= v, `${k} went back after the reload`);
    await open.send("b LOGOUT\r\n");
    await open.expectClosed();
    await eventually(() => accessLog().length === 6, 5000, "the sixth line (session across the reload)");

    // a worker killed: its counts stay, its sessions leave the gauge, the restart is counted
    await eventually(() => workerPids(proxy.pid).length === 2, 10000, "old workers gone");
    const beforeKill = await scrape();
    const victim = workerPids(proxy.pid)[0]!;
    process.kill(victim, "SIGKILL");
    await eventually(() => workerPids(proxy.pid).length === 2 && !workerPids(proxy.pid).includes(victim), 5000, "a replacement");
    const afterKill = await scrape();
    for (const [k, v] of Object.entries(beforeKill)) {
      if (k.startsWith("postern_sessions_current")) continue;
      if (k === "postern_worker_restarts_total") continue;
      assert.ok((afterKill[k] ?? 0) >= v, `${k} went back after a worker was killed: ${v} -> ${afterKill[k]}`);
    }
    assert.equal(afterKill.postern_worker_restarts_total, 1);
    assert.equal(afterKill[`postern_sessions_total{listener="${listener}",outcome="proxied",protocol="imap"}`], 2);

    // graceful shutdown with a session still open: /health says draining
    const last = await MailClient.connect({ port: imapPort! });
    await last.readLine();
    await last.send("a LOGIN alice secret\r\n");
    await last.read(/^a .*\r\n/m);
    proxy.signal("SIGQUIT");
    await eventually(() => proxy.errorLog().includes("SIGQUIT"), 3000, "the QUIT");
    assert.deepEqual(await get(metricsPort!, "/health"), { status: 503, body: "draining\n" });
    last.close();
  } finally {
    await proxy.stop();
    await auth.close();
    await backend.close();
  }
});

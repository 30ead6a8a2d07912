/**
 * Limits as the access log and the metrics show them (issue 15: "visible in
 * metrics and the access log"): a client refused by limit_conn and one
 * refused by the failure throttle end as `limit` in $mail_session_end, and
 * postern_limits_hit_total counts each kind (a throttle refusal is a refused
 * authentication: $mail_auth_status says refused, but no auth_http answer
 * is counted); a delayed attempt is counted
 * as a delay and its session does not end as `limit`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { startPostern } from "../../support/postern.js";
import { startFakeAuth } from "../../support/fake-auth.js";
import { MailClient } from "../../support/client.js";
import { freePorts } from "../../support/ports.js";
import { eventually } from "../../hostile/env.js";

async function metric(port: number, name: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
  const line = (await res.text()).split("\n").find((l) => l.startsWith(name + " "));
  return line === undefined ? 0 : Number(line.slice(name.length + 1));
}

test("limit_conn and failure-throttle refusals end as 'limit' in the access log and count in postern_limits_hit_total", async () => {
  const [imapPort, throttlePort, metricsPort] = await freePorts(3);
  const auth = await startFakeAuth(() => ({ headers: [["Auth-Status", "Invalid login or password"]] }));
  const block = `mail {
    auth_http 127.0.0.1:${auth.port}/auth;
    metrics_listen 127.0.0.1:${metricsPort};
    log_format mail '$server_port "$mail_login" $mail_auth_status $mail_session_end';
    access_log access.log mail;
    limit_conn_zone $binary_remote_addr zone=addr:32k;
    auth_fail_zone zone=fails:1m window=10m;
    server { listen 127.0.0.1:${imapPort}; protocol imap; limit_conn addr 1; }
    server { listen 127.0.0.1:${throttlePort}; protocol imap; auth_fail_throttle fails delay_after=1 delay=100ms refuse_after=2; }
  }`;
  const proxy = await startPostern(block, { workerProcesses: 1, ports: [imapPort!, throttlePort!, metricsPort!] });
  const accessLog = (): string[] => readFileSync(`${proxy.prefix}access.log`, "latin1").split("\n").filter(Boolean);
  try {
    // limit_conn: the second client of the address is refused
    const first = await MailClient.connect({ port: imapPort! });
    await first.readLine();
    const second = await MailClient.connect({ port: imapPort! });
    assert.equal(await second.readLine(), "* BYE Too many connections\r\n");
    await second.expectClosed();
    await first.send("a LOGOUT\r\n");
    await first.expectClosed();

    // the throttle: a failure, then a delayed failure, then a refusal before auth_http is asked
    for (const [i, expected] of [
      [1, /^a NO Invalid login or password/m],
      [2, /^a NO Invalid login or password/m],
      [3, /^a NO \[UNAVAILABLE\] Too many authentication failures, try later/m],
    ] as const) {
      const c = await MailClient.connect({ port: throttlePort! });
      await c.readLine();
      await c.send(`a LOGIN sprayer${i} wrong\r\n`);
      assert.match(await c.read(/^a .*\r\n/m), expected);
      await c.expectClosed();
    }
    assert.equal(auth.requests.length, 2);

    await eventually(() => accessLog().length === 5, 5000, "five access-log lines");
    assert.deepEqual(accessLog(), [
      `${imapPort} "-" - limit`,
      `${imapPort} "-" - logout`,
      `${throttlePort} "sprayer1" refused error`,
      `${throttlePort} "sprayer2" refused error`,
      `${throttlePort} "sprayer3" refused limit`,
    ]);
    assert.equal(await metric(metricsPort!, 'postern_limits_hit_total{limit="conn"}'), 1);
    assert.equal(await metric(metricsPort!, 'postern_limits_hit_total{limit="auth_delay"}'), 1);
    assert.equal(await metric(metricsPort!, 'postern_limits_hit_total{limit="auth_refuse"}'), 1);
    // the throttle's refusal is no auth_http answer: the counter has the two the service gave
    assert.equal(await metric(metricsPort!, 'postern_auth_http_requests_total{result="refused"}'), 2);
  } finally {
    await proxy.stop();
    await auth.close();
  }
});

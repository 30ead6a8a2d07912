/**
 * The access log under real sessions: nginx's escaping (default and json)
 * of a hostile login, `if=`, a buffered log flushed by `flush=`, a log whose
 * writes fail (/dev/full: one error-log line, the proxy goes on) and a log
 * directory removed before USR1 (the reopen fails with nginx's open()
 * message at emerg, the old file is kept, sessions are still served).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startPostern } from "../../support/postern.js";
import { okTo, startFakeAuth } from "../../support/fake-auth.js";
import { startFakeImap } from "../../support/fake-backend.js";
import { MailClient } from "../../support/client.js";
import { freePorts } from "../../support/ports.js";
import { eventually } from "../../hostile/env.js";

async function login(port: number, user: string): Promise<void> {
  const c = await MailClient.connect({ port });
  await c.readLine();
  await c.send(`a LOGIN ${user} secret\r\n`);
  assert.match(await c.read(/^a .*\r\n/m), /^a OK/m);
  await c.send("b LOGOUT\r\n");
  await c.expectClosed();
}

test("escaping, if=, flush=, a failing write and a failed reopen", async () => {
  const [port] = await freePorts(1);
  const backend = await startFakeImap();
  const auth = await startFakeAuth(okTo(backend.port));
  const logs = mkdtempSync(join(tmpdir(), "postern-access-logs-"));
  const block = `mail {
    auth_http 127.0.0.1:${auth.port}/auth;
    log_format plain '"$mail_login" $mail_session_end';
    log_format json escape=json '{"login":"$mail_login","tls":"$ssl_protocol","end":"$mail_session_end"}';
    access_log ${logs}/plain.log plain;
    access_log json.log json if=$mail_login;
    access_log buffered.log plain buffer=64k flush=300ms;
    access_log /dev/full plain;
    server { listen 127.0.0.1:${port}; protocol imap; timeout 1s; }
  }`;
  const proxy = await startPostern(block, { ports: [port!] });
  const at = (name: string): string => (name.startsWith("logs/") ? join(logs, name.slice(5)) : proxy.prefix + name);
  const read = (name: string): string[] => (existsSync(at(name)) ? readFileSync(at(name), "latin1").split("\n").filter(Boolean) : []);
  try {
    // a login with a quote, a backslash and a byte >= 0x7f (IMAP quoted string)
    await login(port!, '"a\\"b\\\\c\xe9"');
    const idle = await MailClient.connect({ port: port! });
    await idle.readLine();
    await idle.expectClosed(4000);
    await eventually(() => read("logs/plain.log").length === 2, 5000, "two plain lines");
    assert.deepEqual(read("logs/plain.log"), ['"a\\x22b\\x5Cc\\xE9" logout', '"-" timeout']);
    // json: quote and backslash escaped, other bytes as they are; the idle session has no login: if= skips it
    assert.deepEqual(read("json.log"), ['{"login":"a\\"b\\\\c\xe9","tls":"","end":"logout"}']);
    // buffered: nothing at first, then flushed by flush=
    await eventually(() => read("buffered.log").length === 2, 3000, "the buffered lines after flush=");
    // /dev/full: one alert line (at most one a second), and the sessions went on
    const alerts = proxy
      .errorLog()
      .split("\n")
      .filter((l) => l.includes('write() to "/dev/full" failed (28: No space left on device)'));
    assert.ok(alerts.length >= 1 && alerts.length <= 2, proxy.errorLog());
    assert.match(alerts[0]!, /\[alert\]/);

    // the log directory disappears: USR1 cannot reopen it; nginx's emerg line, and the proxy goes on
    rmSync(logs, { recursive: true, force: true });
    proxy.signal("SIGUSR1");
    const openFailed = `open() "${logs}/plain.log" failed (2: No such file or directory)`;
    await eventually(() => proxy.errorLog().includes(openFailed), 5000, "the open() line");
    assert.ok(
      proxy
        .errorLog()
        .split("\n")
        .some((l) => l.includes("[emerg]") && l.endsWith(openFailed)),
      proxy.errorLog(),
    );
    await login(port!, "after");
    await eventually(() => read("json.log").length === 2, 5000, "the session after the failed reopen is logged to the other logs");
    // the directory is back: the next USR1 reopens the file
    mkdirSync(logs);
    proxy.signal("SIGUSR1");
    await eventually(() => existsSync(join(logs, "plain.log")), 5000, "the reopened file");
    await login(port!, "again");
    await eventually(() => read("logs/plain.log").length === 1, 5000, "a line in the new file");
    assert.deepEqual(read("logs/plain.log"), ['"again" logout']);
  } finally {
    await proxy.stop();
    await auth.close();
    await backend.close();
    rmSync(logs, { recursive: true, force: true });
  }
});

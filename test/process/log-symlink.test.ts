/**
 * Logs and the pid file are never followed through a symlink a worker
 * could have planted (issue 10, item 4). The setup nginx users had before
 * CVE-2016-1247: the log directory belongs to the workers' user. Acting as
 * that user (nobody), the test rotates error.log and puts a symlink to a
 * root-only file in its place; on USR1 the root master must neither write
 * into nor chown that file, must log the failed open, and must go on
 * serving. nginx 1.22.1 would follow the link (open, then chown by name).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client, Instance, freePort, waitFor } from "./harness.js";

const NOBODY = 65534;

/** Runs a command as nobody (what a worker taken over could do). */
function asNobody(...argv: string[]): void {
  const r = spawnSync(argv[0]!, argv.slice(1), { uid: NOBODY, gid: NOBODY });
  assert.equal(r.status, 0, `${argv.join(" ")} as nobody: ${r.stderr?.toString()}`);
}

/** A root-only file outside the instance, and a check that it is untouched. */
function victim(): { path: string; untouched: () => void; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "postern-victim-"));
  chmodSync(dir, 0o755);
  const path = join(dir, "secret");
  writeFileSync(path, "root only\n", { mode: 0o600 });
  return {
    path,
    untouched: () => {
      const st = statSync(path);
      assert.equal(st.uid, 0, "the target still belongs to root");
      assert.equal(st.mode & 0o777, 0o600);
      assert.equal(readFileSync(path, "utf8"), "root only\n", "nothing was written into the target");
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

function conf(port: number, pid = "nginx.pid"): string {
  return [
    "load_module /usr/lib/nginx/modules/ngx_mail_module.so;",
    `daemon off; master_process on; worker_processes 1; pid ${pid};`,
    "error_log logs/error.log info;",
    "events { worker_connections 64; }",
    `mail { auth_http 127.0.0.1:9/auth; server { listen 127.0.0.1:${port}; protocol imap; error_log logs/server.log info; } }`,
    "",
  ].join("\n");
}

/** DIR/logs, owned by the workers' user. */
function workerOwnedLogs(inst: Instance): string {
  const logs = join(inst.dir, "logs");
  mkdirSync(logs, { mode: 0o755 });
  chownSync(logs, NOBODY, NOBODY);
  return logs;
}

test("USR1 after a worker swapped error.log for a symlink to a root file: the file is not touched, the failure is logged, service goes on", async () => {
  assert.equal(process.getuid?.(), 0, "this test runs as root");
  const inst = new Instance();
  const target = victim();
  try {
    const port = await freePort();
    const logs = workerOwnedLogs(inst);
    inst.write(conf(port));
    const master = await inst.up();
    await waitFor("the worker", () =>
      /start worker process \d+/.test(existsSync(join(logs, "error.log")) ? readFileSync(join(logs, "error.log"), "utf8") : ""),
    );
    // a normal USR1 first: the master gives the logs (the server's own too) to the workers' user
    process.kill(master, "SIGUSR1");
    await waitFor("the log given to nobody", () => statSync(join(logs, "error.log")).uid === NOBODY);
    // the attack, as nobody: rotate, then a symlink in place of the log
    asNobody("mv", join(logs, "error.log"), join(logs, "error.log.1"));
    asNobody("ln", "-s", target.path, join(logs, "error.log"));
    process.kill(master, "SIGUSR1");
    const rotated = (): string => readFileSync(join(logs, "error.log.1"), "utf8");
    await waitFor("the second USR1 handled", () => (rotated().match(/received, reopening logs/g) ?? []).length >= 2);
    await new Promise((r) => setTimeout(r, 300));
    target.untouched();
    await waitFor("the refused reopen in the master's log", () =>
      new RegExp(`${master}#${master}: open\\(\\) "${logs}/error\\.log" failed \\(40: Too many levels of symbolic links\\)`).test(rotated()),
    );
    assert.match(rotated(), new RegExp(`\\[emerg\\] ${master}#${master}: open\\(\\) "${logs}/error\\.log" failed \\(40: Too many levels of symbolic links\\)`));
    target.untouched();
    // still serving, still logging into the file it had
    const c = await Client.connect(port);
    assert.equal(await c.line(), "* OK IMAP4 ready");
    c.close();
    process.kill(master, "SIGUSR1");
    await waitFor("the master still logs", () => (rotated().match(/received, reopening logs/g) ?? []).length >= 3);
    target.untouched();
    // the servers' own log too was created by the master and given to the workers' user
    assert.equal(statSync(join(logs, "server.log")).uid, NOBODY);
  } finally {
    await inst.cleanup();
    target.remove();
  }
});

test("a pid file path that is a symlink in a directory the workers' user can write: start refused, the target untouched", async () => {
  assert.equal(process.getuid?.(), 0, "this test runs as root");
  const inst = new Instance();
  const target = victim();
  try {
    const port = await freePort();
    const logs = workerOwnedLogs(inst);
    inst.write(conf(port, "logs/nginx.pid"));
    asNobody("ln", "-s", target.path, join(logs, "nginx.pid"));
    inst.start();
    const code = await Promise.race([inst.exit, new Promise<string>((r) => setTimeout(() => r("still running after 8 s"), 8000))]);
    assert.equal(code, 1);
    assert.match(
      readFileSync(join(logs, "error.log"), "utf8"),
      new RegExp(`\\[emerg\\] \\d+#\\d+: open\\(\\) "${logs}/nginx\\.pid" failed \\(40: Too many levels of symbolic links\\)`),
    );
    target.untouched();
  } finally {
    await inst.cleanup();
    target.remove();
  }
});

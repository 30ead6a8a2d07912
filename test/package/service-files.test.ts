/**
 * contrib/systemd/postern.service and contrib/logrotate/postern, run for
 * real. systemd is not running here, so the unit is read as systemd reads
 * it (systemd-analyze verify checks it with systemd's own parser) and its
 * ExecStartPre, ExecStart, ExecReload and ExecStop lines are run by hand as
 * systemd would run them: no shell, one after the other, and for
 * Type=forking the pid file must name the daemon once ExecStart has
 * exited. The logrotate snippet is run by the real logrotate, with its own
 * state file. Only paths change: /etc/postern/, /run/postern.pid,
 * /var/log/postern/ and the installed command move into a temp directory,
 * so neither test needs root (as root, the workers run as nobody, as
 * they would under systemd).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repoRoot } from "../support/postern.js";
import { freePort } from "../support/ports.js";
import { Client, POSTERN, waitFor, workerPids } from "../process/harness.js";
import { type ExecLine, type UnitSection, only, parseExec, parseUnit } from "./unit-file.js";

const LOGROTATE = "/usr/sbin/logrotate";

/** A process's parent, process group and session, from /proc/PID/stat. */
function procStat(pid: number): { ppid: number; pgrp: number; session: number } {
  const text = readFileSync(`/proc/${pid}/stat`, "latin1");
  const [, ppid, pgrp, session] = text
    .slice(text.lastIndexOf(")") + 2)
    .split(" ")
    .map(Number);
  return { ppid: ppid!, pgrp: pgrp!, session: session! };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The unit's and the snippet's paths, moved into one temp directory. */
class Layout {
  readonly dir = mkdtempSync(join(tmpdir(), "postern-service-"));
  readonly etc = join(this.dir, "etc", "postern");
  readonly pidFile = join(this.dir, "run", "postern.pid");
  readonly logDir = join(this.dir, "log", "postern");
  readonly errorLog = join(this.logDir, "error.log");
  #journal = 0;

  constructor() {
    for (const d of [this.etc, join(this.dir, "run"), this.logDir]) mkdirSync(d, { recursive: true });
    // as /etc, /run and /var/log: the workers (nobody, when run as root) reopen their logs here
    for (const d of [this.dir, join(this.dir, "etc"), this.etc, join(this.dir, "run"), join(this.dir, "log"), this.logDir]) chmodSync(d, 0o755);
  }

  /** One path of the shipped files, as it is here. */
  path(p: string): string {
    return p
      .replace(/^\/etc\/postern\//, `${this.etc}/`)
      .replace(/^\/run\/postern\.pid$/, this.pidFile)
      .replace(/^\/var\/log\/postern\//, `${this.logDir}/`);
  }

  /** An operator's /etc/postern/postern.conf: pid where the unit looks, no daemon or master_process line. */
  writeConf(port: number, capability: string): void {
    writeFileSync(
      join(this.etc, "postern.conf"),
      [
        "load_module /usr/lib/nginx/modules/ngx_mail_module.so;",
        `pid ${this.pidFile};`,
        `error_log ${this.errorLog} info;`,
        "worker_processes 2;",
        "events { worker_connections 64; }",
        `mail { imap_capabilities IMAP4rev1 ${capability}; server { listen 127.0.0.1:${port}; protocol imap; auth_http 127.0.0.1:9/auth; } }`,
        "",
      ].join("\n"),
    );
  }

  /** The Exec line's command: the installed `postern` becomes this build, run by this Node. */
  argv(exec: ExecLine): string[] {
    const [cmd, ...args] = exec.argv;
    const head = cmd === "/usr/local/bin/postern" ? [process.execPath, POSTERN] : [cmd!];
    return [...head, ...args.map((a) => this.path(a))];
  }

  /**
   * Runs one Exec line as systemd would (no shell; stdout and stderr to
   * the journal, here a file) and resolves when that process exits, not
   * when every holder of its output has closed it: a daemon keeps it.
   */
  run(exec: ExecLine): Promise<{ code: number | null; pid: number; output: string }> {
    const journal = join(this.dir, `journal-${++this.#journal}`);
    const fd = openSync(journal, "w");
    const [cmd, ...args] = this.argv(exec);
    const child = spawn(cmd!, args, { stdio: ["ignore", fd, fd] });
    closeSync(fd);
    return new Promise((resolve, reject) => {
      child.on("error", reject);
      child.on("exit", (code) => resolve({ code, pid: child.pid!, output: readFileSync(journal, "utf8") }));
    });
  }

  log(path = this.errorLog): string {
    return existsSync(path) ? readFileSync(path, "utf8") : "";
  }

  pid(): number {
    return Number(readFileSync(this.pidFile, "utf8").trim());
  }

  /** Whatever a failed test left running, then the directory. */
  cleanup(): void {
    if (existsSync(this.pidFile)) {
      const pid = this.pid();
      if (pid > 0 && alive(pid)) process.kill(pid, "SIGKILL");
    }
    for (const w of workerPids(this.log()).concat(workerPids(this.log(`${this.errorLog}.1`)))) if (alive(w)) process.kill(w, "SIGKILL");
    if (!process.env.POSTERN_KEEP_TMP) rmSync(this.dir, { recursive: true, force: true });
  }
}

function readUnit(): { service: UnitSection; text: string } {
  const text = readFileSync(join(repoRoot(), "contrib", "systemd", "postern.service"), "utf8");
  return { service: parseUnit(text).get("Service")!, text };
}

/** The postrotate script of the logrotate snippet, with its paths moved. */
function postrotate(snippet: string, layout: Layout): string {
  const m = /^\s*postrotate\n([\s\S]*?)^\s*endscript/m.exec(snippet);
  assert.ok(m, "the snippet has a postrotate script");
  return m[1]!.replaceAll("/run/postern.pid", layout.pidFile);
}

/**
 * After USR1: the master says so in the old file, and so does each worker
 * (as nginx, they log it before reopening; a worker that was still
 * starting when the file was renamed opened the new one and says it
 * there); then a worker's line about a new client goes to the new file and
 * not to the old one.
 */
async function writesToNewLog(layout: Layout, pid: number, port: number): Promise<void> {
  const old = `${layout.errorLog}.1`;
  await waitFor("the master's reopen", () => layout.log(old).includes(`[notice] ${pid}#${pid}: signal 10 (SIGUSR1) received, reopening logs\n`));
  const workers = workerPids(layout.log(old)).slice(-2);
  await waitFor("the workers' reopen", () => workers.every((w) => `${layout.log(old)}${layout.log()}`.includes(`[notice] ${w}#${w}: reopening logs\n`)));
  const c = await Client.connect(port);
  assert.equal(await c.line(), "* OK IMAP4 ready");
  const line = `client 127.0.0.1:${c.socket.localPort} connected to 127.0.0.1:${port}`;
  c.close();
  await waitFor("the new client in the new log", () => layout.log().includes(line));
  assert.ok(!layout.log(old).includes(line), "the renamed log gets no more lines");
}

/** Starts the service with ExecStartPre then ExecStart; returns the master's pid. */
async function startService(layout: Layout, service: UnitSection): Promise<{ pid: number; launcher: number }> {
  const pre = await layout.run(parseExec(only(service, "ExecStartPre")));
  assert.equal(pre.code, 0, pre.output);
  assert.equal(pre.output, "", "-q: a good configuration prints nothing");
  const start = await layout.run(parseExec(only(service, "ExecStart")));
  assert.equal(start.code, 0, start.output);
  // Type=forking: systemd reads PIDFile= as soon as ExecStart has exited
  const pid = layout.pid();
  assert.ok(pid > 0 && pid !== start.pid, `the pid file names the daemon, not the command systemd ran (${pid})`);
  assert.ok(alive(pid), "the daemon runs after ExecStart has exited");
  return { pid, launcher: start.pid };
}

test("systemd unit: systemd accepts it; ExecStartPre checks, ExecStart forks a daemon and writes the pid file, ExecReload reloads, USR1 reopens the renamed log, ExecStop stops", async () => {
  const { service, text } = readUnit();
  assert.equal(only(service, "Type"), "forking");
  assert.equal(only(service, "PIDFile"), "/run/postern.pid");
  assert.equal(only(service, "KillMode"), "mixed");
  assert.deepEqual(parseExec(only(service, "ExecStop")), {
    prefixes: "-",
    argv: ["/sbin/start-stop-daemon", "--quiet", "--stop", "--retry", "QUIT/5", "--pidfile", "/run/postern.pid"],
  });
  const layout = new Layout();
  try {
    // systemd's own reading of the unit, with the command where it is here
    const verified = join(layout.dir, "postern.service");
    const installed = text
      .replaceAll("/usr/local/bin/postern", `${process.execPath} ${POSTERN}`)
      .replaceAll("/etc/postern/", `${layout.etc}/`)
      .replaceAll("/run/postern.pid", layout.pidFile);
    writeFileSync(verified, installed);
    const verify = await layout.run({ prefixes: "", argv: ["/usr/bin/systemd-analyze", "verify", verified] });
    assert.equal(verify.output, "", "systemd-analyze verify has no remark");
    assert.equal(verify.code, 0);

    const port = await freePort();
    layout.writeConf(port, "XBEFORE");
    const { pid, launcher } = await startService(layout, service);
    const stat = procStat(pid);
    assert.notEqual(stat.ppid, launcher, "the daemon outlives the process that started it");
    assert.equal(stat.session, pid, "the daemon leads its own session, detached from the terminal");
    assert.equal(readFileSync(layout.pidFile, "utf8"), `${pid}\n`);
    const workers = await waitFor("two workers", () => (workerPids(layout.log()).length === 2 ? workerPids(layout.log()) : undefined));
    const first = await Client.connect(port);
    assert.equal(await first.line(), "* OK IMAP4 ready");
    assert.match(await first.capability(), / XBEFORE\b/);
    first.close();

    // ExecReload: HUP through the pid file; same master, new configuration
    layout.writeConf(port, "XAFTER");
    const reload = await layout.run(parseExec(only(service, "ExecReload")));
    assert.equal(reload.code, 0, reload.output);
    await waitFor("the reload", () => layout.log().includes(`[notice] ${pid}#${pid}: signal 1 (SIGHUP) received, reconfiguring`));
    // old workers may still take a connection or two while they finish
    for (const end = Date.now() + 8000; ;) {
      const c = await Client.connect(port);
      await c.line();
      const caps = await c.capability();
      c.close();
      if (/ XAFTER\b/.test(caps)) break;
      assert.ok(Date.now() < end, `still the old configuration: ${caps}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(layout.pid(), pid, "a reload keeps the master");
    await waitFor("the old workers to exit", () => workers.every((w) => !alive(w)));

    // USR1 as logrotate sends it: the log is renamed, a new one appears
    renameSync(layout.errorLog, `${layout.errorLog}.1`);
    const snippet = readFileSync(join(repoRoot(), "contrib", "logrotate", "postern"), "utf8");
    const sent = await layout.run({ prefixes: "", argv: ["/bin/sh", "-c", postrotate(snippet, layout)] });
    assert.equal(sent.code, 0, sent.output);
    await writesToNewLog(layout, pid, port);

    // ExecStop: QUIT, and start-stop-daemon waits for the master to go
    const stop = await layout.run(parseExec(only(service, "ExecStop")));
    assert.equal(stop.code, 0, stop.output);
    assert.ok(!alive(pid), "the master has exited when ExecStop returns");
    assert.match(layout.log(), /signal 3 \(SIGQUIT\) received, shutting down/);
    assert.ok(!existsSync(layout.pidFile), "the pid file is removed");
    await waitFor("the workers to exit", () => workerPids(layout.log(`${layout.errorLog}.1`)).every((w) => !alive(w)));
  } finally {
    layout.cleanup();
  }
});

test("logrotate snippet: the real logrotate rotates the error log and USR1 makes Postern write to the new one", async () => {
  assert.ok(existsSync(LOGROTATE), "logrotate is installed (scripts/install-test-deps.sh)");
  const { service } = readUnit();
  const layout = new Layout();
  try {
    const port = await freePort();
    layout.writeConf(port, "XROTATE");
    const { pid } = await startService(layout, service);
    await waitFor("two workers", () => workerPids(layout.log()).length === 2);
    const before = layout.log();
    const inode = statSync(layout.errorLog).ino;

    let snippet = readFileSync(join(repoRoot(), "contrib", "logrotate", "postern"), "utf8");
    assert.match(snippet, /^\/var\/log\/postern\/\*\.log \{$/m);
    snippet = snippet.replace(/^\/var\/log\/postern\//m, `${layout.logDir}/`).replaceAll("/run/postern.pid", layout.pidFile);
    // `create` with another owner needs root; as another user, the file keeps the user's own
    if (process.getuid?.() !== 0) snippet = snippet.replace(/^(\s*create \d+) \S+ \S+$/m, "$1");
    const conf = join(layout.dir, "logrotate.conf");
    writeFileSync(conf, snippet, { mode: 0o644 });
    const state = join(layout.dir, "logrotate.state");
    // -f: a first run would only note the file's date in the state file
    const rotated = await layout.run({ prefixes: "", argv: [LOGROTATE, "--state", state, "--force", conf] });
    assert.equal(rotated.code, 0, rotated.output);
    assert.equal(rotated.output, "");
    assert.match(readFileSync(state, "utf8"), new RegExp(`"${layout.errorLog}"`));

    // the old file, not compressed yet (delaycompress), holds what was written before
    assert.equal(statSync(`${layout.errorLog}.1`).ino, inode);
    assert.ok(layout.log(`${layout.errorLog}.1`).startsWith(before));
    assert.notEqual(statSync(layout.errorLog).ino, inode);
    assert.equal(statSync(layout.errorLog).mode & 0o777, 0o640, "the new file as `create` made it");
    await writesToNewLog(layout, pid, port);

    const stop = await layout.run(parseExec(only(service, "ExecStop")));
    assert.equal(stop.code, 0, stop.output);
    assert.ok(!alive(pid));
  } finally {
    layout.cleanup();
  }
});

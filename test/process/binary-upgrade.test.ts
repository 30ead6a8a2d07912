/**
 * Binary upgrade on USR2, as nginx does it: the pid files and the master's
 * log lines through USR2 → WINCH → QUIT and through the rollback (HUP to the
 * old master, QUIT to the new one), compared with nginx 1.22.1; then the
 * upgrade under load: zero refused connections, zero failed sessions.
 *
 * Both servers run with `daemon on`: nginx refuses USR2 while the process
 * that started it is still its parent (a foreground child of a test), and
 * WINCH stops workers only when daemonized. Rules:
 * docs/behaviour/cli.md#cli-9-binary-upgrade.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, chmodSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NGINX_BIN, nginxAvailable, startNginx } from "../support/nginx.js";
import { startPostern } from "../support/postern.js";
import { startFakeAuth, okTo } from "../support/fake-auth.js";
import { startFakeImap } from "../support/fake-backend.js";
import { Client, POSTERN, START_WAIT_MS, freePort, waitFor } from "./harness.js";

type Kind = "nginx" | "postern";

function conf(port: number, authPort = 9): string {
  return [
    "load_module /usr/lib/nginx/modules/ngx_mail_module.so;",
    "daemon on;",
    "worker_processes 1;",
    "pid nginx.pid;",
    "error_log error.log notice;",
    "events { worker_connections 256; }",
    `mail { server { listen 127.0.0.1:${port}; protocol imap; auth_http 127.0.0.1:${authPort}/auth; } }`,
    "",
  ].join("\n");
}

/** A daemon (nginx or Postern) in its own directory, signalled through its pid files. */
class Daemon {
  readonly dir = mkdtempSync(join(tmpdir(), "postern-usr2-"));
  readonly masters = new Set<number>();

  constructor(
    readonly kind: Kind,
    readonly text: string,
  ) {
    chmodSync(this.dir, 0o755);
    writeFileSync(join(this.dir, "nginx.conf"), text);
  }

  async start(): Promise<number> {
    const cmd = this.kind === "nginx" ? [NGINX_BIN] : [process.execPath, POSTERN];
    const c = spawn(cmd[0]!, [...cmd.slice(1), "-p", this.dir + "/", "-c", "nginx.conf", "-e", "error.log"], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    c.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((r) => c.on("exit", (x) => r(x)));
    assert.equal(code, 0, `${this.kind} launcher: ${stderr}`);
    const pid = await waitFor("pid file", () => this.pid("nginx.pid"), START_WAIT_MS);
    this.masters.add(pid);
    // nginx writes its pid file before its master loop runs: a USR2 that early is taken but
    // never acted on (seen with nginx 1.22.1 in a CI run), so signal a master that serves
    await waitFor("master's worker", () => this.said(pid, "start worker process \\d+$"));
    return pid;
  }

  /** The pid in `name` (nginx.pid or nginx.pid.oldbin), or undefined. */
  pid(name: string): number | undefined {
    // read at once, never checked first: a master renames or removes it at any moment (USR2, QUIT)
    let text: string;
    try {
      text = readFileSync(join(this.dir, name), "utf8");
    } catch {
      return undefined;
    }
    const m = /^(\d+)\n$/.exec(text);
    return m ? Number(m[1]) : undefined;
  }

  log(): string {
    const p = join(this.dir, "error.log");
    return existsSync(p) ? readFileSync(p, "utf8") : "";
  }

  /** True when `pid` says `message` (a regular expression source) in the log. */
  said(pid: number, message: string): boolean {
    return new RegExp(`\\] ${pid}#\\d+: ${message}`, "m").test(this.log());
  }

  /** Waits for the new master started by USR2 to serve; returns its pid. */
  async newMaster(old: number): Promise<number> {
    const pid = await waitFor(
      "new master's pid file",
      () => {
        const p = this.pid("nginx.pid");
        return p !== undefined && p !== old && this.pid("nginx.pid.oldbin") === old ? p : undefined;
      },
      15000,
    );
    this.masters.add(pid);
    await waitFor("new master's worker", () => this.said(pid, "start worker process \\d+$"), 15000);
    return pid;
  }

  /** Which master each pid file names. */
  files(roles: Record<number, string>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const name of ["nginx.pid", "nginx.pid.oldbin"]) {
      const p = this.pid(name);
      if (existsSync(join(this.dir, name))) out[name] = p === undefined ? "garbage" : (roles[p] ?? "other");
    }
    return out;
  }

  /**
   * The masters' notice and crit lines, per role, with what differs by
   * design taken out: pids, the sender pid nginx appends, nginx's event
   * method, SIGCHLD/SIGIO lines, the version and OS notices, paths.
   */
  lines(roles: Record<number, string>): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const line of this.log().split("\n")) {
      const m = /^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d \[(\w+)\] (\d+)#\d+: (.*)$/.exec(line);
      if (!m) continue;
      const role = roles[Number(m[2])];
      if (role === undefined) continue;
      const msg = m[3]!
        .replace(/ received from \d+/, " received")
        .replace(/(new binary process|worker process) \d+/, "$1 N")
        .replace(/inherited sockets from ".*"/, 'inherited sockets from "..."')
        .split(this.dir)
        .join("DIR");
      if (/^(using the "\w+" event method|signal (17|29) |nginx\/|postern\/|OS: |getrlimit)/.test(msg)) continue;
      (out[role] ??= []).push(`[${m[1]}] ${msg}`);
    }
    return out;
  }

  signal(pid: number, sig: NodeJS.Signals): void {
    process.kill(pid, sig);
  }

  /** QUIT to every master still running, then KILL (a zombie counts as gone). */
  async cleanup(): Promise<void> {
    const workers = [...this.log().matchAll(/start worker process (\d+)/g)].map((m) => Number(m[1]));
    for (const p of this.masters)
      if (alive(p))
        try {
          process.kill(p, "SIGQUIT");
        } catch {
          /* gone */
        }
    const end = Date.now() + 3000;
    while ([...this.masters].some(alive) && Date.now() < end) await sleep(50);
    for (const p of [...this.masters, ...workers, ...runningIn(this.dir)])
      if (alive(p))
        try {
          process.kill(p, "SIGKILL");
        } catch {
          /* gone */
        }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Every process whose command line names `dir` (a master this test started but did not see, after a failure). */
function runningIn(dir: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, "latin1").includes(dir)) out.push(Number(name));
    } catch {
      // ended meanwhile
    }
  }
  return out;
}

/** Running (not a zombie: in a container nobody may reap a reparented master). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** The parent pid field of /proc/PID/stat. */
function parentOf(pid: number): number | undefined {
  const m = /^\d+ \(.*\) \S+ (\d+)/.exec(readFileSync(`/proc/${pid}/stat`, "utf8"));
  return m ? Number(m[1]) : undefined;
}

/** USR2 → second USR2 (both masters) → WINCH → QUIT old → USR2 with a broken configuration → QUIT new. */
async function upgradePath(kind: Kind): Promise<unknown> {
  const port = await freePort();
  const d = new Daemon(kind, conf(port));
  try {
    const old = await d.start();
    d.signal(old, "SIGUSR2");
    const fresh = await d.newMaster(old);
    const roles: Record<number, string> = { [old]: "old", [fresh]: "new" };
    const files = [d.files(roles)];
    // a second USR2 while the upgrade runs: refused by both masters
    d.signal(old, "SIGUSR2");
    d.signal(fresh, "SIGUSR2");
    await waitFor("two refusals", () => (d.log().match(/changing binary signal is ignored/g) ?? []).length === 2);
    d.signal(old, "SIGWINCH");
    await waitFor("old worker gone", () => d.said(old, "worker process \\d+ exited"));
    files.push(d.files(roles));
    (await Client.connect(port)).close(); // the new workers serve
    d.signal(old, "SIGQUIT");
    await waitFor("old master gone", () => !alive(old));
    // a multi-threaded process shows as a zombie before its last thread ends and its children are re-parented
    await waitFor("new master re-parented", () => parentOf(fresh) !== old);
    files.push(d.files(roles));
    // the new master's parent is gone: USR2 is taken; the new binary fails on a broken configuration
    appendFileSync(join(d.dir, "nginx.conf"), "bogus_directive;\n");
    d.signal(fresh, "SIGUSR2");
    await waitFor("failed new binary", () => d.said(fresh, "new binary process \\d+ exited with code 1"));
    const failed = Number(/start new binary process (\d+)/.exec(d.log().split(`${fresh}#${fresh}: changing binary`)[1]!)![1]);
    roles[failed] = "failed";
    files.push(d.files(roles));
    writeFileSync(join(d.dir, "nginx.conf"), conf(port));
    const c = await Client.connect(port);
    assert.equal(await c.line(), "* OK IMAP4 ready", "still served by the new master");
    c.close();
    d.signal(fresh, "SIGQUIT");
    await waitFor("new master gone", () => !alive(fresh));
    files.push(d.files(roles));
    return { files, lines: d.lines(roles) };
  } catch (err) {
    throw new Error(`${kind}: ${String(err)}\n${d.log()}`, { cause: err });
  } finally {
    await d.cleanup();
  }
}

/** USR2 → WINCH → HUP to the old master → QUIT to the new one: the old master serves again under its pid file. */
async function rollbackPath(kind: Kind): Promise<unknown> {
  const port = await freePort();
  const d = new Daemon(kind, conf(port));
  try {
    const old = await d.start();
    d.signal(old, "SIGUSR2");
    const fresh = await d.newMaster(old);
    const roles: Record<number, string> = { [old]: "old", [fresh]: "new" };
    d.signal(old, "SIGWINCH");
    await waitFor("old worker gone", () => d.said(old, "worker process \\d+ exited"));
    d.signal(old, "SIGHUP");
    await waitFor("old workers back", () => (d.log().match(new RegExp(`${old}#\\d+: start worker process \\d+`, "g")) ?? []).length === 2);
    const files = [d.files(roles)];
    d.signal(fresh, "SIGQUIT");
    await waitFor("new master gone", () => !alive(fresh));
    await waitFor("pid file back", () => d.pid("nginx.pid") === old);
    files.push(d.files(roles));
    const c = await Client.connect(port);
    assert.equal(await c.line(), "* OK IMAP4 ready", "served by the old master again");
    c.close();
    d.signal(old, "SIGQUIT");
    await waitFor("old master gone", () => !alive(old));
    files.push(d.files(roles));
    return { files, lines: d.lines(roles) };
  } catch (err) {
    throw new Error(`${kind}: ${String(err)}\n${d.log()}`, { cause: err });
  } finally {
    await d.cleanup();
  }
}

test("USR2, WINCH, QUIT: pid files (.oldbin), refusals and log lines as nginx's", { timeout: 60000 }, async () => {
  assert.ok(nginxAvailable(), "nginx is the oracle");
  const nginx = await upgradePath("nginx");
  const postern = await upgradePath("postern");
  assert.deepEqual(postern, nginx);
  // the record is not empty: the steps really happened
  assert.deepEqual((nginx as { files: unknown[] }).files, [
    { "nginx.pid": "new", "nginx.pid.oldbin": "old" },
    { "nginx.pid": "new", "nginx.pid.oldbin": "old" },
    { "nginx.pid": "new" },
    { "nginx.pid": "new" },
    {},
  ]);
});

test("rollback: HUP brings the old workers back, QUIT to the new master restores the pid file, as nginx", { timeout: 60000 }, async () => {
  assert.ok(nginxAvailable(), "nginx is the oracle");
  const nginx = await rollbackPath("nginx");
  const postern = await rollbackPath("postern");
  assert.deepEqual(postern, nginx);
  assert.deepEqual((nginx as { files: unknown[] }).files, [{ "nginx.pid": "new", "nginx.pid.oldbin": "old" }, { "nginx.pid": "old" }, {}]);
});

/** USR2 and WINCH to a foreground process (its parent, the test, still runs): the lines logged, and whether it still serves. */
async function foreground(kind: Kind, masterProcess: boolean): Promise<unknown> {
  const port = await freePort();
  const block = `server { listen 127.0.0.1:${port}; protocol imap; auth_http 127.0.0.1:9/auth; }`;
  const p = await (kind === "nginx" ? startNginx : startPostern)(block, { masterProcess });
  try {
    const mine = (): string[] =>
      p
        .errorLog()
        .split("\n")
        .filter((l) => new RegExp(`\\] ${p.pid}#`).test(l) && /signal (12|28)|changing binary/.test(l))
        .map((l) =>
          l
            .replace(/^.*?\[/, "[")
            .replace(/ \d+#\d+: /, " ")
            .replace(/ received from \d+/, " received"),
        );
    // one at a time: the order two pending signals are taken in is the kernel's
    p.signal("SIGUSR2");
    // 15 s: one CI run under heavy load saw no line within 8 s (see the process state in the failure)
    await waitFor("USR2 logged", () => mine().some((l) => /SIGUSR2/.test(l)), 15_000);
    p.signal("SIGWINCH");
    await waitFor("WINCH logged", () => mine().some((l) => /SIGWINCH/.test(l)), 15_000);
    await sleep(300);
    const c = await Client.connect(port);
    const greeting = await c.line();
    c.close();
    return { lines: mine(), greeting, oldbin: existsSync(`${p.prefix}nginx.pid.oldbin`) };
  } catch (err) {
    const state = await Promise.race([p.exited.then((e) => `exited: code ${e.code}, signal ${e.signal}`), sleep(50).then(() => "still running")]);
    throw new Error(
      `${kind} (master_process ${masterProcess ? "on" : "off"}, ${state}): ${String(err)}\n${p
        .errorLog()
        .split("\n")
        .filter((l) => !/\[debug\]/.test(l))
        .join("\n")}`,
      { cause: err },
    );
  } finally {
    await p.stop();
  }
}

test("USR2 and WINCH to a foreground master or single process: refused and logged as nginx does, serving goes on", { timeout: 60000 }, async () => {
  assert.ok(nginxAvailable(), "nginx is the oracle");
  for (const masterProcess of [true, false]) {
    const nginx = await foreground("nginx", masterProcess);
    const postern = await foreground("postern", masterProcess);
    assert.deepEqual(postern, nginx, `master_process ${masterProcess ? "on" : "off"}`);
    assert.deepEqual((nginx as { lines: string[] }).lines.length, 3);
  }
});

test("upgrade under load: clients run full sessions through USR2, WINCH and QUIT; none refused, none failed", { timeout: 60000 }, async () => {
  const backend = await startFakeImap();
  const auth = await startFakeAuth(okTo(backend.port));
  const port = await freePort();
  const d = new Daemon("postern", conf(port, auth.port));
  try {
    const old = await d.start();
    const failures: string[] = [];
    let sessions = 0;
    let running = true;
    // one full session: greeting, LOGIN through auth_http to the backend, a relayed NOOP, LOGOUT
    const session = async (n: number): Promise<void> => {
      const c = await Client.connect(port);
      try {
        assert.equal(await c.line(), "* OK IMAP4 ready");
        assert.match((await c.tagged("a", `LOGIN user${n} secret`)).reply, /^a OK/);
        assert.match((await c.tagged("b", "NOOP")).reply, /^b OK/);
        assert.match((await c.tagged("c", "LOGOUT")).reply, /^c OK/);
      } finally {
        c.close();
      }
    };
    const loop = async (id: number): Promise<void> => {
      for (let i = 0; running; i++) {
        try {
          await session(id * 100000 + i);
          sessions++;
        } catch (err) {
          failures.push(String(err));
        }
      }
    };
    // a session opened before the upgrade and still relayed after WINCH
    const held = await Client.connect(port);
    assert.equal(await held.line(), "* OK IMAP4 ready");
    assert.match((await held.tagged("h1", "LOGIN held secret")).reply, /^h1 OK/);
    const loops = [0, 1, 2, 3].map(loop);
    await waitFor("load running", () => sessions >= 20, 15000);

    d.signal(old, "SIGUSR2");
    const fresh = await d.newMaster(old);
    const before = sessions;
    await waitFor("sessions on both binaries", () => sessions >= before + 20, 15000);
    d.signal(old, "SIGWINCH");
    await waitFor("old worker shutting down", () => /gracefully shutting down/.test(d.log()));
    assert.match((await held.tagged("h2", "NOOP")).reply, /^h2 OK/, "the held session still works on the old worker");
    assert.match((await held.tagged("h3", "LOGOUT")).reply, /^h3 OK/);
    held.close();
    await waitFor("old worker gone", () => d.said(old, "worker process \\d+ exited"));
    d.signal(old, "SIGQUIT");
    await waitFor("old master gone", () => !alive(old));
    const after = sessions;
    await waitFor("sessions on the new binary alone", () => sessions >= after + 20, 15000);
    running = false;
    await Promise.all(loops);

    assert.deepEqual(failures, []);
    assert.ok(sessions > 60, `${sessions} sessions`);
    assert.equal(d.pid("nginx.pid"), fresh);
    assert.equal(d.pid("nginx.pid.oldbin"), undefined);
    assert.match(d.log(), new RegExp(`${fresh}#${fresh}: using inherited sockets from "127\\.0\\.0\\.1:${port};"`));
  } finally {
    await d.cleanup();
    await auth.close();
    await backend.close();
  }
});

/**
 * The README's first run, as a newcomer does it: a fresh clone of this
 * checkout's commit, `npm start` in the background, then exactly the
 * commands of the README block marked for this test, each run with `sh -c`
 * from the clone. The welcome message must come back over IMAPS and POP3S,
 * the message sent over SMTP submission must then be in the mailbox, and
 * `postern passwd` must still point the demo user at another backend.
 *
 * The clone gets this checkout's node_modules as hard links (cp -al), not
 * `npm install`: the test runs offline and fast. `npm start` binds the
 * README's fixed ports (1993, 1995, 1587, ..., 9180, 10143, 10110, 10025),
 * so the test fails at once, naming them, if something else holds one.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { listeningPorts } from "../support/ports.js";
import { startDemoBackend } from "../../src/demo/backend.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const MARKER = "<!-- test/first-run/readme-commands.test.ts runs this block";
/** Every port npm start listens on (conf/postern.conf, scripts/start.js). */
const PORTS = [1143, 1993, 1110, 1995, 1587, 1465, 9180, 10143, 10110, 10025];

/** The command lines of the README's marked block. */
export function readmeCommands(readme: string): string[] {
  const at = readme.indexOf(MARKER);
  assert.ok(at >= 0, "README.md has no block marked for this test");
  const block = /```sh\n([\s\S]*?)```/.exec(readme.slice(at));
  assert.ok(block, "the marked README block is not a ```sh block");
  return block[1]!.split("\n").filter((l) => l.trim() !== "" && !l.trim().startsWith("#"));
}

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function sh(command: string, cwd: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile("sh", ["-c", command], { cwd, timeout: 20_000, encoding: "latin1" }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === "number" ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

/** Waits until every port accepts, or npm start ends, or the deadline passes. */
async function waitListening(child: ChildProcess, log: () => string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) assert.fail(`npm start ended early:\n${log()}`);
    // read from /proc: probing with connections would log sessions in Postern
    const listening = listeningPorts();
    const up = PORTS.map((p) => listening.has(p));
    if (up.every(Boolean)) return;
    if (Date.now() > deadline) assert.fail(`npm start did not listen on ${PORTS.filter((_, i) => !up[i]).join(", ")} within ${ms} ms:\n${log()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Stops npm start and everything it started (its own process group). */
async function stopGroup(child: ChildProcess): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  try {
    process.kill(-child.pid, "SIGTERM");
  } catch {
    /* already gone */
  }
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      /* already gone */
    }
  }, 5_000);
  await exited;
  clearTimeout(timer);
}

test(
  "README first run: from a fresh clone, npm start, then the README's commands read the welcome message over IMAPS and POP3S, send over submission and read it back",
  { timeout: 90_000 },
  async (t) => {
    const started = Date.now();
    const lap = (what: string): void => t.diagnostic(`${what}: ${Date.now() - started} ms`);
    const busy = PORTS.filter((p) => listeningPorts().has(p));
    assert.deepEqual(busy, [], `ports npm start needs are in use: ${busy.join(", ")}`);
    const tmp = mkdtempSync(join(tmpdir(), "postern-first-run-"));
    const clone = join(tmp, "postern");
    let child: ChildProcess | undefined;
    let log = "";
    try {
      // the commit under test, whatever the checkout's branch
      const head = execFileSync("git", ["-C", ROOT, "rev-parse", "HEAD"], { encoding: "latin1" }).trim();
      execFileSync("git", ["clone", "-q", "--no-checkout", ROOT, clone]);
      execFileSync("git", ["-C", clone, "checkout", "-q", head]);
      execFileSync("cp", ["-al", join(ROOT, "node_modules"), join(clone, "node_modules")]);
      const commands = readmeCommands(readFileSync(join(clone, "README.md"), "utf8"));
      assert.equal(commands.length, 4, `the README block should hold 4 commands, has:\n${commands.join("\n")}`);

      child = spawn("npm", ["start"], { cwd: clone, detached: true, stdio: ["ignore", "pipe", "pipe"] });
      child.stdout!.setEncoding("latin1").on("data", (d: string) => (log += d));
      child.stderr!.setEncoding("latin1").on("data", (d: string) => (log += d));
      lap("cloned");
      await waitListening(child, () => log, 60_000);
      lap("npm start listening");
      assert.match(log, /postern demo mail backend: IMAP 127\.0\.0\.1:10143, POP3 127\.0\.0\.1:10110, SMTP 127\.0\.0\.1:10025: .*a demo/);

      const [readWelcome, popWelcome, send, readSent] = commands as [string, string, string, string];
      const imap = await sh(readWelcome, clone);
      assert.equal(imap.code, 0, `${readWelcome}\n${imap.stderr}\n${log}`);
      assert.match(imap.stdout, /^Subject: Welcome to Postern\r$/m);
      assert.match(imap.stdout, /^Welcome to Postern!\r$/m);

      const pop = await sh(popWelcome, clone);
      assert.equal(pop.code, 0, `${popWelcome}\n${pop.stderr}`);
      assert.match(pop.stdout, /^Subject: Welcome to Postern\r$/m);

      assert.match(send, /Subject: Hello from curl/);
      const sent = await sh(send, clone);
      assert.equal(sent.code, 0, `${send}\n${sent.stderr}\n${log}`);

      lap("read and sent");
      const back = await sh(readSent, clone);
      assert.equal(back.code, 0, `${readSent}\n${back.stderr}`);
      assert.match(back.stdout, /^Subject: Hello from curl\r$/m);
      assert.match(back.stdout, /^This went through Postern\.\r$/m);
      assert.match(back.stdout, /^Received: from .* \(Postern demo mail backend\);/m);

      // each went through the auth service to the demo backend, and the demo says it is one
      assert.match(log, /login "demo@localhost" from 127\.0\.0\.1 \(imap, plain\): accepted, backend 127\.0\.0\.1:10143/);
      assert.match(log, /login "demo@localhost" from 127\.0\.0\.1 \(pop3, plain\): accepted, backend 127\.0\.0\.1:10110/);
      assert.match(log, /login "demo@localhost" from 127\.0\.0\.1 \(smtp, plain\): accepted, backend 127\.0\.0\.1:10025/);
      assert.match(log, /postern demo mail backend: SMTP: delivered a message of [0-9]+ bytes from <demo@localhost> to demo@localhost \(UID 2\)/);

      // `postern passwd` still points the demo user elsewhere: a second demo
      // backend whose second message differs; the auth service rereads the file
      const other = await startDemoBackend(
        { imap: { host: "127.0.0.1", port: 0 }, pop3: { host: "127.0.0.1", port: 0 }, smtp: { host: "127.0.0.1", port: 0 }, user: "demo@localhost" },
        () => {},
      );
      try {
        other.mailbox.deliver(Buffer.from("Subject: From the other backend\r\n\r\nMoved.\r\n"));
        execFileSync(
          process.execPath,
          [
            "bin/postern.js",
            "passwd",
            "--scrypt-n",
            "1024",
            "conf/users",
            "demo@localhost",
            `imap=127.0.0.1:${other.ports.imap}`,
            `pop3=127.0.0.1:${other.ports.pop3}`,
            `smtp=127.0.0.1:${other.ports.smtp}`,
          ],
          { cwd: clone, input: "demo\n" },
        );
        const moved = await sh(readSent, clone);
        assert.equal(moved.code, 0, `${readSent}\n${moved.stderr}\n${log}`);
        assert.match(moved.stdout, /^Subject: From the other backend\r$/m);
        lap("passwd moved the demo user");
      } finally {
        await other.close();
      }
    } finally {
      if (child) await stopGroup(child);
      if (!process.env.POSTERN_KEEP_TMP) rmSync(tmp, { recursive: true, force: true });
    }
  },
);

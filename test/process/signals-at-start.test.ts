/**
 * A signal sent the moment the pid file appears is handled, never fatal.
 * nginx installs its signal handlers before it creates the pid file, so a
 * service manager or script that signals as soon as the file exists finds
 * them in place; the default action of USR2 (or HUP, USR1, QUIT) would end
 * the process. A CI run caught a single process killed by the USR2 a test
 * sent right after the file was written.
 *
 * To stop Postern exactly there, its pid file is a FIFO: opening it for
 * writing blocks until the test opens it for reading. While it is blocked
 * (seen in /proc/PID/syscall), the test sends USR2, then reads the pid.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { closeSync, constants, existsSync, openSync, readFileSync, readSync, rmSync } from "node:fs";
import { Client, config, freePort, Instance, waitFor } from "./harness.js";

/** The openat system call's number, where this test knows it. */
const OPENAT: Partial<Record<string, string>> = { x64: "257", arm64: "56" };

/** O_ACCMODE, and the flags of an open that creates or truncates a file for writing (the same on x64 and arm64). */
const { O_ACCMODE = 3, O_WRONLY, O_CREAT, O_TRUNC } = constants as typeof constants & { O_ACCMODE?: number };

/**
 * True while the process's main thread is inside openat with the pid
 * file's flags (write, create, truncate): blocked on the FIFO. Start-up's
 * other opens read (modules) or append (logs), and none of them blocks.
 */
function openingPidFile(pid: number): boolean {
  let call: string[];
  try {
    call = readFileSync(`/proc/${pid}/syscall`, "utf8").trim().split(" ");
  } catch {
    return false;
  }
  // number, dirfd, path, flags, mode
  const flags = Number(call[3]);
  return call[0] === OPENAT[process.arch] && (flags & (O_ACCMODE | O_CREAT | O_TRUNC)) === (O_WRONLY | O_CREAT | O_TRUNC);
}

/**
 * Reads the FIFO to its end without ever blocking this process. Opened
 * non-blocking, a read gives nothing (EAGAIN) while a writer holds the FIFO
 * and has not written. It also gives an end (0) while no writer holds it:
 * the signal interrupts the writer's open, which lets go of the FIFO for a
 * moment and is restarted. So an end before any byte counts only once the
 * process is gone.
 */
async function readFifo(path: string, alive: () => boolean, ms = 15_000): Promise<string> {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const end = Date.now() + ms;
  let text = "";
  const buf = Buffer.alloc(64);
  try {
    for (;;) {
      let n = 0;
      try {
        n = readSync(fd, buf);
        text += buf.toString("latin1", 0, n);
        if (n === 0 && (text !== "" || !alive())) return text;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
      }
      if (Date.now() > end) throw new Error(`nothing more in ${path} after ${ms} ms (read so far: ${JSON.stringify(text)})`);
      if (n === 0) await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    closeSync(fd);
  }
}

for (const master of [false, true]) {
  const mode = master ? "master process" : "single process";
  test(
    `${mode}: USR2 sent while the pid file is being written is logged and ignored, the pid file is written, serving goes on`,
    { skip: OPENAT[process.arch] ? false : `no openat number for ${process.arch}`, timeout: 60_000 },
    async () => {
      const port = await freePort();
      const p = new Instance();
      p.write(config({ ports: [port], workers: 1, master }));
      execFileSync("mkfifo", [p.pidPath]);
      try {
        p.start();
        const pid = p.child!.pid!;
        await waitFor("postern blocked opening its pid file", () => openingPidFile(pid), 30_000);
        p.child!.kill("SIGUSR2");
        // opening the FIFO's other end lets the write go on; the content is the pid, as in a regular file
        const written = await readFifo(p.pidPath, () => p.child!.exitCode === null && p.child!.signalCode === null);
        if (written !== `${pid}\n`) await Promise.race([p.exit, new Promise((r) => setTimeout(r, 1000))]);
        assert.equal(written, `${pid}\n`, `the pid file; the process: exit ${p.child!.exitCode}, signal ${p.child!.signalCode}\n${p.log()}`);
        await waitFor("USR2 logged", () => /signal 12 \(SIGUSR2\) received, ignoring/.test(p.log()), 15_000);
        assert.equal(p.child!.exitCode, null, "the process still runs");
        assert.equal(p.child!.signalCode, null);
        const c = await Client.connect(port);
        assert.match(await c.line(), /^\* OK /);
        c.close();
        p.child!.kill("SIGQUIT");
        assert.equal(await p.exit, 0);
        assert.equal(existsSync(p.pidPath), false, "the pid file is removed at exit");
      } finally {
        // a FIFO left behind would block the harness's read of the pid file
        if (p.child?.exitCode === null && p.child.signalCode === null) p.child.kill("SIGKILL");
        rmSync(p.pidPath, { force: true });
        await p.cleanup();
      }
    },
  );
}

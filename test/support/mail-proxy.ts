/** Start/stop a mail proxy process (nginx or Postern) from a config in a fresh temp prefix. */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { listeningPorts } from "./ports.js";

/** Options for startNginx()/startPostern(). */
export interface MailProxyOptions {
  /** `master_process on|off` (default on, as in nginx-tests). */
  masterProcess?: boolean;
  /** `worker_processes N` (default 1). */
  workerProcesses?: number;
  /** Ports to wait for (default: every `listen [127.0.0.1:]PORT` in the mail block). */
  ports?: number[];
  /** Directives inside `events { }` (default none), e.g. `worker_connections 16;`. */
  events?: string;
  /** Extra main-context directives placed before `events {}`. */
  mainExtra?: string;
  /** Files (name relative to the prefix -> content) written before the start, e.g. included configs. */
  files?: Record<string, string>;
  /** Time allowed for the pid file and the ports to appear (default 30000 ms). */
  startTimeoutMs?: number;
}

/** A running proxy process. */
export interface MailProxyProcess {
  kind: "nginx" | "postern";
  /** The temp prefix dir, with a trailing `/`. */
  prefix: string;
  /** Absolute path of nginx.conf. */
  configPath: string;
  /** PID of the process we spawned (the master with master_process on). */
  pid: number;
  /** Current content of DIR/error.log (kept after stop()). */
  errorLog(): string;
  /** What the process wrote to stderr (and stdout) so far. */
  stderr(): string;
  /** Sends a signal to the spawned process. */
  signal(sig: NodeJS.Signals): void;
  /** Resolves with the exit code/signal when the process exits. */
  exited: Promise<ProcessExit>;
  /** QUIT, then TERM after `graceMs` (default 5000), then KILL; removes the prefix unless POSTERN_KEEP_TMP is set. */
  stop(graceMs?: number): Promise<ProcessExit>;
}

/** How a process ended. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** The module line nginx needs for `mail {}` (Postern accepts the same line). */
export const MAIL_MODULE_LINE = "load_module /usr/lib/nginx/modules/ngx_mail_module.so;";

/** Builds the full nginx.conf text; `mailBlock` is either the inside of `mail { }` or a whole `mail { ... }` block. */
export function buildConfig(mailBlock: string, prefix: string, options: MailProxyOptions = {}): string {
  const block = /^\s*mail\s*\{/.test(mailBlock) ? mailBlock.trim() : `mail {\n${mailBlock}\n}`;
  return [
    MAIL_MODULE_LINE,
    "",
    "daemon off;",
    `master_process ${options.masterProcess === false ? "off" : "on"};`,
    `worker_processes ${options.workerProcesses ?? 1};`,
    `pid ${prefix}nginx.pid;`,
    `error_log ${prefix}error.log debug;`,
    options.mainExtra ?? "",
    options.events ? `events {\n${options.events}\n}` : "events {}",
    "",
    block,
    "",
  ].join("\n");
}

/** Ports of `listen PORT` / `listen 127.0.0.1:PORT` lines in a config text. */
export function listenPorts(config: string): number[] {
  const ports = new Set<number>();
  for (const m of config.matchAll(/\blisten\s+(?:127\.0\.0\.1:)?(\d+)\b/g)) ports.add(Number(m[1]));
  return [...ports];
}

const live = new Set<ChildProcess>();
// A crashed test must not leave proxies running.
process.on("exit", () => {
  for (const c of live) c.kill("SIGKILL");
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Writes the config into a new temp prefix and runs `command... -p DIR/ -c nginx.conf -e DIR/error.log` until ready. */
export async function startMailProxy(
  kind: MailProxyProcess["kind"],
  command: string[],
  mailBlock: string,
  options: MailProxyOptions = {},
): Promise<MailProxyProcess> {
  const prefix = mkdtempSync(path.join(os.tmpdir(), `postern-${kind}-`)) + "/";
  const config = buildConfig(mailBlock, prefix, options);
  const configPath = `${prefix}nginx.conf`;
  writeFileSync(configPath, config);
  for (const [name, content] of Object.entries(options.files ?? {})) writeFileSync(path.join(prefix, name), content);
  const errorLogPath = `${prefix}error.log`;

  const [bin, ...pre] = command;
  const child = spawn(bin!, [...pre, "-p", prefix, "-c", "nginx.conf", "-e", errorLogPath], {
    cwd: prefix,
    stdio: ["ignore", "pipe", "pipe"],
  });
  live.add(child);
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString("utf8");
  });
  child.stdout.on("data", (d: Buffer) => {
    stderr += d.toString("utf8");
  });
  let exit: ProcessExit | undefined;
  const exited = new Promise<ProcessExit>((resolve) => {
    child.on("exit", (code, signal) => {
      exit = { code, signal };
      live.delete(child);
      resolve(exit);
    });
    child.on("error", (err) => {
      stderr += `spawn error: ${err.message}\n`;
      exit = { code: -1, signal: null };
      live.delete(child);
      resolve(exit);
    });
  });
  let logSnapshot: string | undefined;
  const errorLog = (): string => logSnapshot ?? (existsSync(errorLogPath) ? readFileSync(errorLogPath, "utf8") : "");

  const ports = options.ports ?? listenPorts(config);
  // 30 s: a CI machine running three test files at once can starve a start-up for seconds
  const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
  const cleanup = (): void => {
    if (!process.env.POSTERN_KEEP_TMP) rmSync(prefix, { recursive: true, force: true });
  };
  for (;;) {
    if (exit) {
      const log = errorLog();
      cleanup();
      throw new Error(`${kind} exited during start-up (code ${exit.code}, signal ${exit.signal})\nstderr:\n${stderr}\nerror.log:\n${log}`);
    }
    const pidOk = existsSync(`${prefix}nginx.pid`) && /^\d+\n$/.test(readFileSync(`${prefix}nginx.pid`, "utf8"));
    const listening = listeningPorts();
    if (pidOk && ports.every((p) => listening.has(p))) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      const log = errorLog();
      await exited;
      cleanup();
      throw new Error(
        `${kind} not ready after start timeout (pid file ${pidOk ? "ok" : "missing"}, ports ${ports.join(",")})\nstderr:\n${stderr}\nerror.log:\n${log}`,
      );
    }
    await sleep(20);
  }

  return {
    kind,
    prefix,
    configPath,
    pid: child.pid!,
    errorLog,
    stderr: () => stderr,
    signal(sig: NodeJS.Signals): void {
      child.kill(sig);
    },
    exited,
    async stop(graceMs = 5000): Promise<ProcessExit> {
      if (!exit) {
        child.kill("SIGQUIT");
        // The timer is cleared so a finished stop() leaves nothing pending in the test process.
        const race = async (ms: number): Promise<ProcessExit | "timeout"> => {
          let timer: NodeJS.Timeout | undefined;
          const timeout = new Promise<"timeout">((resolve) => {
            timer = setTimeout(() => resolve("timeout"), ms);
          });
          try {
            return await Promise.race([exited, timeout]);
          } finally {
            clearTimeout(timer);
          }
        };
        if ((await race(graceMs)) === "timeout") {
          child.kill("SIGTERM");
          if ((await race(3000)) === "timeout") child.kill("SIGKILL");
        }
      }
      const result = await exited;
      logSnapshot = errorLog();
      if (!process.env.POSTERN_KEEP_TMP) rmSync(prefix, { recursive: true, force: true });
      return result;
    },
  };
}

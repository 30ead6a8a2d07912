/** Runs the installed nginx and Postern side by side on the same files. */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** bin/postern.js, from dist/test/cli/. */
export const POSTERN = fileURLToPath(new URL("../../../bin/postern.js", import.meta.url));
export const NGINX = "/usr/sbin/nginx";
export const MAIL_MODULE = "load_module /usr/lib/nginx/modules/ngx_mail_module.so;\n";

/** What a run printed. */
export interface RunResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program with a bounded time. */
export function run(program: string, args: readonly string[]): RunResult {
  const r = spawnSync(program, args, { encoding: "utf8", timeout: 15000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs Postern. */
export function postern(args: readonly string[]): RunResult {
  return run(process.execPath, [POSTERN, ...args]);
}

/** A temporary directory removed by `cleanup()`. */
export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "postern-cli-"));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Writes files (name -> content) into dir. */
export function writeFiles(dir: string, files: Readonly<Record<string, string>>): void {
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
}

/** `-t` (or other switches) for both programs on one config in dir; separate `-e` logs. */
export function both(dir: string, switches: readonly string[], extra: readonly string[] = []): { nginx: RunResult; postern: RunResult } {
  return {
    nginx: run(NGINX, [...switches, "-p", dir + "/", "-c", "nginx.conf", "-e", join(dir, "nginx-err.log"), ...extra]),
    postern: postern([...switches, "-p", dir + "/", "-c", "nginx.conf", "-e", join(dir, "postern-err.log"), ...extra]),
  };
}

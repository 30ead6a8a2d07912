/** Runs Postern exactly like nginx: same config text, same command-line switches. */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startMailProxy, type MailProxyOptions, type MailProxyProcess } from "./mail-proxy.js";

/** The repository root: the nearest ancestor of this file with the `postern` package.json (works from src and dist). */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, "package.json");
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, "utf8")) as { name?: string }).name === "postern") return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error("postern repository root not found");
    dir = up;
  }
}

/** The command that runs Postern: `node <repo>/bin/postern.js`. */
export function posternCommand(): string[] {
  return [process.execPath, path.join(repoRoot(), "bin", "postern.js")];
}

/** Starts Postern with `mailBlock` in a new temp prefix and waits until it listens; no extra setup. */
export function startPostern(mailBlock: string, options: MailProxyOptions = {}): Promise<MailProxyProcess> {
  return startMailProxy("postern", posternCommand(), mailBlock, options);
}

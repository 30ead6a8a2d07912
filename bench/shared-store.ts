/**
 * The shared-store rows of the benchmark (`--shared-store`, issue 16): the
 * cost of sharing state through Redis, per handshake and per login, as
 * ratios against the node-local zones in the same run. Both Postern kinds
 * have the same three zones (the TLS session cache, the auth cache and a
 * limit_conn zone whose limit never bites); `postern-sync` adds `sync` to
 * each and a `shared_store` pointing at a redis-server on the generator's
 * core (its CPU is not the proxy's, as a Redis on another machine would not
 * be). Figures: operations per second of Postern CPU (the steadier one on a
 * shared machine), and the raw rate.
 *
 * Written before the `sync` zones existed: when `postern -t` refuses them,
 * the rows are skipped with a message saying why.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";

export type SharedKind = "postern-local" | "postern-sync";
export const SHARED_KINDS: readonly SharedKind[] = ["postern-local", "postern-sync"];

/** The workloads (by name in run.ts's table) the rows are measured on. */
export const SHARED_WORKLOADS: readonly string[] = ["resume TLSv1.2 session id", "login plain", "login over TLS"];

export const SHARED_HEADER =
  "| workload (Postern only) | node-local zones | sync zones (Redis) | sync / local | local /cpu-s | sync /cpu-s | sync / local per CPU |\n|---|---|---|---|---|---|---|";

/**
 * The directives that differ between the two kinds: the session cache
 * (replacing the table's `shared:BENCH:20m`) and the extra zones.
 */
export function sharedDirectives(kind: SharedKind, dir: string, redisPort: number): { sessionCache: string; extra: string } {
  const sync = kind === "postern-sync" ? " sync" : "";
  const store = kind === "postern-sync" ? `  shared_store redis 127.0.0.1:${redisPort} secret_file=${dir}/store.secret;\n` : "";
  return {
    sessionCache: `shared:BENCH:20m${sync}`,
    extra: `${store}  auth_http_cache zone=BAUTH:10m ok=60s${sync};
  limit_conn_zone $binary_remote_addr zone=BLIM:10m${sync};
  limit_conn BLIM 65535;
`,
  };
}

/** A redis-server for the sync kind, pinned to the generator's core; stop() kills it. */
export async function startBenchRedis(dir: string, port: number): Promise<{ stop(): void; process: ChildProcess }> {
  writeBenchSecret(dir);
  const child = spawn(
    "taskset",
    ["-c", "1", "/usr/bin/redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir],
    { stdio: "ignore" },
  );
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const s = createConnection(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (up) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return { process: child, stop: () => void child.kill("SIGKILL") };
}

/** The secret_file the sync kind names (the check below reads it too). */
function writeBenchSecret(dir: string): void {
  writeFileSync(join(dir, "store.secret"), "bench-shared-store-secret-".repeat(3));
}

/** Why the rows cannot run (redis-server missing, `-t` refuses the sync zones), or undefined. */
export function sharedStoreUnavailable(root: string, dir: string, configText: string): string | undefined {
  if (!existsSync("/usr/bin/redis-server")) return "redis-server is not installed";
  writeBenchSecret(dir);
  const conf = join(dir, "postern-sync-check.conf");
  writeFileSync(conf, configText);
  try {
    execFileSync(process.execPath, [join(root, "bin", "postern.js"), "-t", "-p", `${dir}/`, "-c", conf], { stdio: "pipe" });
    return undefined;
  } catch (err) {
    const stderr = String((err as { stderr?: Buffer }).stderr ?? "").trim();
    return `postern -t refuses the sync zones: ${stderr.split("\n")[0] ?? ""}`;
  }
}

/** One row from the medians of both kinds. */
export function sharedRow(name: string, local: { rate: number; perCpu: number }, sync: { rate: number; perCpu: number }, errors: number): string {
  const f = (x: number, d = 1): string => (Number.isFinite(x) ? x.toFixed(d) : "-");
  return `| ${name} | ${f(local.rate)} | ${f(sync.rate)} | ${f(sync.rate / local.rate, 2)} | ${f(local.perCpu, 0)} | ${f(sync.perCpu, 0)} | ${f(sync.perCpu / local.perCpu, 2)} |${errors !== 0 ? ` errors ${errors}` : ""}`;
}

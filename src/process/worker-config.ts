/**
 * What a worker needs to rebuild the master's configuration: where it is
 * (in its environment) and the validated inputs (the first IPC message).
 */
import type { ConfSource } from "../conf/engine.js";

/** The environment variable carrying WorkerConfig as JSON. */
export const WORKER_ENV = "POSTERN_WORKER";

/** Where the configuration is and which `-e` log applies. */
export interface WorkerConfig {
  readonly source: ConfSource;
  readonly errorLog: string;
  readonly generation: number;
}

/** Messages from master to worker; `config` comes first (the inputs the master validated). */
export type ToWorker =
  | { readonly t: "config"; readonly snapshot: import("../core/conf-inputs.js").ConfSnapshot }
  | { readonly t: "expect"; readonly count: number }
  | { readonly t: "listen"; readonly endpoint: import("../mail/runtime.js").ListenEndpoint };

/** Messages from worker to master. */
export type FromWorker = { readonly t: "listening" } | { readonly t: "failed"; readonly message: string };

/**
 * A worker's own message, checked: anything else on the channel (the TLS
 * session cache's messages, or garbage from a broken worker) gives undefined,
 * so the master never trusts the shape of what a worker sends.
 */
export function workerMessage(m: unknown): FromWorker | undefined {
  if (typeof m !== "object" || m === null) return undefined;
  const x = m as { t?: unknown; message?: unknown };
  if (x.t === "listening") return { t: "listening" };
  if (x.t === "failed") return { t: "failed", message: typeof x.message === "string" ? x.message : "worker failed" };
  return undefined;
}

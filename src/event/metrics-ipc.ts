/**
 * Metrics across worker processes: workers push deltas, the master sums.
 *
 *  - a worker sends what changed at most once a second, when the master
 *    asks (a scrape), and when it exits gracefully;
 *  - the master keeps the sums (metrics-store.ts), so the totals of a
 *    worker that exited or was killed stay: counters never go backwards
 *    while the master lives (a killed worker loses at most its last
 *    second's changes);
 *  - a scrape asks every live worker for its latest changes and waits at
 *    most `COLLECT_WAIT_MS`: a worker that is killed or stuck meanwhile
 *    costs the page its last changes, never a hang.
 *
 * Every message from a worker is checked field by field (metric index,
 * label count and alphabet, finite non-negative numbers): a broken worker's
 * message is dropped whole, never half applied.
 */
import type { IpcEndpoint } from "./tls-session-ipc.js";
import { type DeltaEntry, LABEL_VALUE, METRICS, metrics } from "./metrics.js";
import { MemoryMetricsStore, type MetricsStore } from "./metrics-store.js";

export const METRICS_MESSAGE = "postern:metrics";

/** Master -> worker: send your changes now. Worker -> master: changes, answering `seq` if asked. */
export type MetricsMessage =
  { type: typeof METRICS_MESSAGE; op: "flush"; seq: number } | { type: typeof METRICS_MESSAGE; op: "delta"; seq: number; entries: DeltaEntry[] };

const MAX_ENTRIES = 10000;
/** How long a scrape waits for the workers' latest changes. */
export const COLLECT_WAIT_MS = 500;
/** A worker's changes reach the master within this time even without a scrape. */
const PUSH_INTERVAL_MS = 1000;

function validEntry(e: unknown): e is DeltaEntry {
  if (!Array.isArray(e) || e.length < 3 || e.length > 4) return false;
  const [metric, labels, value, buckets] = e as unknown[];
  if (typeof metric !== "number" || !Number.isInteger(metric)) return false;
  const d = METRICS[metric];
  if (!d || !Array.isArray(labels) || labels.length !== d.labels.length) return false;
  if (!labels.every((l) => typeof l === "string" && LABEL_VALUE.test(l))) return false;
  if (typeof value !== "number" || !Number.isFinite(value)) return false;
  if (d.kind !== "gauge" && value < 0) return false;
  if (d.kind !== "histogram") return buckets === undefined;
  return (
    Array.isArray(buckets) && buckets.length === (d.buckets?.length ?? 0) + 1 && buckets.every((b) => typeof b === "number" && Number.isInteger(b) && b >= 0)
  );
}

/** The message, if it is a well-formed metrics message; else undefined. */
export function metricsMessage(m: unknown): MetricsMessage | undefined {
  if (typeof m !== "object" || m === null) return undefined;
  const x = m as { type?: unknown; op?: unknown; seq?: unknown; entries?: unknown };
  if (x.type !== METRICS_MESSAGE || typeof x.seq !== "number" || !Number.isInteger(x.seq)) return undefined;
  if (x.op === "flush") return { type: METRICS_MESSAGE, op: "flush", seq: x.seq };
  if (x.op !== "delta" || !Array.isArray(x.entries) || x.entries.length > MAX_ENTRIES) return undefined;
  if (!x.entries.every(validEntry)) return undefined;
  return { type: METRICS_MESSAGE, op: "delta", seq: x.seq, entries: x.entries };
}

// ---- worker side ----------------------------------------------------------

type WorkerChannel = IpcEndpoint & {
  send?(m: unknown, handle?: undefined, options?: undefined, cb?: (err: Error | null) => void): boolean;
  connected?: boolean;
};
let workerChannel: WorkerChannel | undefined;
let pushTimer: NodeJS.Timeout | undefined;

function push(seq: number, done?: () => void): void {
  if (pushTimer) clearTimeout(pushTimer);
  pushTimer = undefined;
  const entries = metrics.takeDelta() ?? [];
  const channel = workerChannel;
  if (!channel?.send || channel.connected === false || (entries.length === 0 && seq === 0)) {
    done?.();
    return;
  }
  channel.send({ type: METRICS_MESSAGE, op: "delta", seq, entries } satisfies MetricsMessage, undefined, undefined, () => done?.());
}

/** Worker: record metrics and report them to the master over `channel`. */
export function connectMetricsWorker(channel: WorkerChannel): void {
  workerChannel = channel;
  metrics.enabled = true;
  metrics.onChange = () => {
    pushTimer ??= setTimeout(() => push(0), PUSH_INTERVAL_MS).unref();
  };
  channel.on("message", (raw) => {
    const m = metricsMessage(raw);
    if (m?.op === "flush") push(m.seq);
  });
}

/** Worker, before exiting: the last changes go to the master, then `done` runs (at once without metrics). */
export function flushMetricsWorker(done: () => void): void {
  if (!workerChannel) {
    done();
    return;
  }
  push(0, done);
}

// ---- master side ----------------------------------------------------------

/** The master's view: the store, the live workers, and the scrape's collection round. */
export class MetricsHub {
  readonly store: MetricsStore;
  readonly #workers = new Map<IpcEndpoint & { send?(m: unknown): boolean; connected?: boolean }, string>();
  #seq = 0;
  readonly #waiting = new Map<number, { left: Set<unknown>; done: () => void }>();

  constructor(store: MetricsStore = new MemoryMetricsStore()) {
    this.store = store;
  }

  /** Takes a worker's reports from now on; the returned function retires it (call on its exit). */
  attach(worker: IpcEndpoint & { send?(m: unknown): boolean; connected?: boolean }, source: string): () => void {
    this.#workers.set(worker, source);
    const listener = (raw: unknown): void => {
      const m = metricsMessage(raw);
      if (m?.op !== "delta") return;
      this.store.apply(source, m.entries);
      const round = this.#waiting.get(m.seq);
      if (round && round.left.delete(worker) && round.left.size === 0) round.done();
    };
    worker.on("message", listener);
    return () => {
      worker.off?.("message", listener);
      this.#workers.delete(worker);
      this.store.retire(source);
      for (const round of this.#waiting.values()) if (round.left.delete(worker) && round.left.size === 0) round.done();
    };
  }

  /** Asks every live worker for its changes, waits at most `waitMs`, then renders the page. */
  async collect(waitMs = COLLECT_WAIT_MS): Promise<string> {
    const seq = ++this.#seq;
    const left = new Set<unknown>();
    for (const w of this.#workers.keys()) {
      if (w.connected === false || !w.send) continue;
      try {
        w.send({ type: METRICS_MESSAGE, op: "flush", seq } satisfies MetricsMessage);
        left.add(w);
      } catch {
        // the channel closed meanwhile: its worker is leaving
      }
    }
    if (left.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, waitMs);
        this.#waiting.set(seq, {
          left,
          done: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
      this.#waiting.delete(seq);
    }
    return this.store.render();
  }
}

/** In a process without workers (master_process off): records straight into a local hub (the caller sets `metrics.enabled`). */
export function localMetricsHub(): MetricsHub {
  const hub = new MetricsHub();
  metrics.onChange = () => {
    setImmediate(() => {
      const d = metrics.takeDelta();
      if (d) hub.store.apply("self", d);
    });
  };
  return hub;
}

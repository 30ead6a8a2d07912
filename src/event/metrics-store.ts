/**
 * Where the metrics of all processes are summed, and the text page made
 * from them (Prometheus text format 0.0.4).
 *
 * The store is an interface so that a shared backend (issue 16: Redis) can
 * take the place of the master's memory. The memory store keeps, per
 * series, the sum over every source that ever reported: counters and
 * histograms never go backwards while it lives, whatever happens to the
 * workers. Gauges are kept per source and dropped when a source retires
 * (a worker that exited or was killed holds no sessions any more).
 */
import { type DeltaEntry, METRICS, type MetricDef } from "./metrics.js";

/** What the metrics endpoint needs from wherever the numbers are kept. */
export interface MetricsStore {
  /** Adds one source's changes (a worker's flush, or the master's own counters). */
  apply(source: string, delta: readonly DeltaEntry[]): void;
  /** The source is gone: its gauges no longer count; its counters stay. */
  retire(source: string): void;
  /** The whole page, as of now. */
  render(): string;
}

interface Total {
  readonly metric: number;
  readonly labels: readonly string[];
  value: number;
  buckets?: number[];
}

function key(metric: number, labels: readonly string[]): string {
  return `${metric}\u0001${labels.join("\u0001")}`;
}

function add(into: Map<string, Total>, e: DeltaEntry): void {
  const [metric, labels, value, buckets] = e;
  const k = key(metric, labels);
  let t = into.get(k);
  if (!t) {
    t = { metric, labels, value: 0 };
    if (buckets) t.buckets = new Array<number>(buckets.length).fill(0);
    into.set(k, t);
  }
  t.value += value;
  if (buckets && t.buckets) for (let i = 0; i < buckets.length; i++) t.buckets[i]! += buckets[i]!;
}

/** A number as Prometheus prints it. */
function num(v: number): string {
  if (v === Infinity) return "+Inf";
  return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(15)));
}

function labelText(d: MetricDef, values: readonly string[], extra?: string): string {
  const parts = d.labels.map((l, i) => `${l}="${values[i] ?? ""}"`);
  if (extra !== undefined) parts.push(extra);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

/** The master's store: everything in its memory. */
export class MemoryMetricsStore implements MetricsStore {
  readonly #totals = new Map<string, Total>();
  readonly #gauges = new Map<string, Map<string, Total>>();

  apply(source: string, delta: readonly DeltaEntry[]): void {
    for (const e of delta) {
      if (METRICS[e[0]]?.kind === "gauge") {
        let mine = this.#gauges.get(source);
        if (!mine) this.#gauges.set(source, (mine = new Map<string, Total>()));
        add(mine, e);
      } else {
        add(this.#totals, e);
      }
    }
  }

  retire(source: string): void {
    this.#gauges.delete(source);
  }

  render(): string {
    const byMetric = new Map<number, Total[]>();
    const gaugeSums = new Map<string, Total>();
    for (const g of this.#gauges.values()) for (const t of g.values()) add(gaugeSums, [t.metric, [...t.labels], t.value]);
    for (const t of [...this.#totals.values(), ...gaugeSums.values()]) {
      const list = byMetric.get(t.metric) ?? [];
      list.push(t);
      byMetric.set(t.metric, list);
    }
    let out = "";
    METRICS.forEach((d, i) => {
      out += `# HELP ${d.name} ${d.help}\n# TYPE ${d.name} ${d.kind}\n`;
      const series = (byMetric.get(i) ?? []).sort((a, b) => a.labels.join(",").localeCompare(b.labels.join(",")));
      // a metric without labels always has its one series, 0 before anything happened
      if (series.length === 0 && d.labels.length === 0)
        series.push({ metric: i, labels: [], value: 0, ...(d.buckets ? { buckets: new Array<number>(d.buckets.length + 1).fill(0) } : {}) });
      for (const s of series) out += d.kind === "histogram" ? histogramLines(d, s) : `${d.name}${labelText(d, s.labels)} ${num(s.value)}\n`;
    });
    return out;
  }
}

function histogramLines(d: MetricDef, s: Total): string {
  const base = d.name;
  const bounds = [...(d.buckets ?? []), Infinity];
  let out = "";
  let cumulative = 0;
  bounds.forEach((b, i) => {
    cumulative += s.buckets?.[i] ?? 0;
    out += `${base}_bucket${labelText(d, s.labels, `le="${num(b)}"`)} ${cumulative}\n`;
  });
  out += `${base}_sum${labelText(d, s.labels)} ${num(s.value)}\n`;
  out += `${base}_count${labelText(d, s.labels)} ${cumulative}\n`;
  return out;
}

/**
 * The Prometheus metrics every process records (docs/observability.md#metrics).
 *
 * One fixed table of metric definitions, shared by the recorders (workers,
 * or the single process) and the store that sums them (metrics-store.ts).
 * A recorder keeps only what changed since its last flush (a delta), so a
 * worker's report to the master is small and a counter the master already
 * summed is never sent twice. When no `metrics_listen` is configured the
 * recorder is disabled and every call returns after one boolean test.
 */

export type MetricKind = "counter" | "gauge" | "histogram";

/** One metric: its Prometheus name (base units, `_total` for counters), help text and label names. */
export interface MetricDef {
  readonly name: string;
  readonly help: string;
  readonly kind: MetricKind;
  readonly labels: readonly string[];
  /** Upper bounds of a histogram's buckets, in seconds (+Inf is implied). */
  readonly buckets?: readonly number[];
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

function def(name: string, kind: MetricKind, labels: readonly string[], help: string, buckets?: readonly number[]): MetricDef {
  return buckets ? { name, kind, labels, help, buckets } : { name, kind, labels, help };
}

export const SESSIONS = def(
  "postern_sessions_total",
  "counter",
  ["protocol", "listener", "outcome"],
  "Client sessions ended, by protocol, listener and outcome.",
);
export const SESSIONS_CURRENT = def("postern_sessions_current", "gauge", ["stage"], "Client sessions open now, by stage (pre_auth, auth, proxied).");
export const TLS_HANDSHAKES = def(
  "postern_tls_handshakes_total",
  "counter",
  ["version", "result"],
  "TLS handshakes with clients, by protocol version and result.",
);
export const TLS_RESUMPTIONS = def(
  "postern_tls_resumptions_total",
  "counter",
  ["kind"],
  "Client TLS handshakes that resumed a session, by kind (psk: TLS 1.3, session: TLS 1.2).",
);
export const STARTTLS = def("postern_starttls_upgrades_total", "counter", ["protocol", "result"], "STARTTLS/STLS upgrades, by protocol and result.");
export const AUTH_HTTP = def("postern_auth_http_requests_total", "counter", ["result"], "auth_http round trips, by result (ok, refused, error).");
export const AUTH_HTTP_SECONDS = def("postern_auth_http_duration_seconds", "histogram", [], "auth_http round-trip time.", LATENCY_BUCKETS);
export const BACKEND_CONNECTS = def("postern_backend_connects_total", "counter", ["result"], "Connections to backends, by result (ok, error).");
export const BACKEND_CONNECT_SECONDS = def("postern_backend_connect_duration_seconds", "histogram", [], "Time to connect to a backend.", LATENCY_BUCKETS);
export const BACKEND_LOGINS = def("postern_backend_logins_total", "counter", ["result"], "Backend logins after a connect, by result (ok, error).");
export const BACKEND_LOGIN_SECONDS = def(
  "postern_backend_login_duration_seconds",
  "histogram",
  [],
  "Time from backend connect to the end of its login.",
  LATENCY_BUCKETS,
);
export const RELAYED_BYTES = def("postern_relayed_bytes_total", "counter", ["direction"], "Bytes relayed after login (client_to_backend, backend_to_client).");
export const LIMITS_HIT = def("postern_limits_hit_total", "counter", ["limit"], "Sessions or attempts refused or delayed by a limit, by limit.");
export const WORKER_RESTARTS = def("postern_worker_restarts_total", "counter", [], "Worker processes that exited unexpectedly and were started again.");
export const RELOADS = def("postern_reloads_total", "counter", ["result"], "Configuration reloads (HUP), by result (ok, failed).");
export const STORE_UP = def("postern_shared_store_up", "gauge", [], "1 while the shared store (shared_store) answers, else 0.");
export const STORE_STATE_CHANGES = def("postern_shared_store_state_changes_total", "counter", ["state"], "The shared store went down or came up again.");
export const STORE_FALLBACKS = def(
  "postern_shared_store_fallbacks_total",
  "counter",
  ["use"],
  "Uses of the shared store that fell back to node-local state (down, error or timeout), by use.",
);

/** Every metric, in the order the page lists them. */
export const METRICS: readonly MetricDef[] = [
  SESSIONS,
  SESSIONS_CURRENT,
  TLS_HANDSHAKES,
  TLS_RESUMPTIONS,
  STARTTLS,
  AUTH_HTTP,
  AUTH_HTTP_SECONDS,
  BACKEND_CONNECTS,
  BACKEND_CONNECT_SECONDS,
  BACKEND_LOGINS,
  BACKEND_LOGIN_SECONDS,
  RELAYED_BYTES,
  LIMITS_HIT,
  WORKER_RESTARTS,
  RELOADS,
  STORE_UP,
  STORE_STATE_CHANGES,
  STORE_FALLBACKS,
];

/** A label value as it may travel and be printed: bounded, printable, no quote or backslash. */
export const LABEL_VALUE = /^[A-Za-z0-9_.:/\-[\]]{0,128}$/;

/** One changed series: metric index, label values, then the value (counter/gauge) or per-bucket counts + sum. */
export type DeltaEntry = [metric: number, labels: string[], value: number, buckets?: number[]];

interface Series {
  readonly metric: number;
  readonly labels: string[];
  value: number;
  buckets?: number[];
  /** In `#changed` (this period's delta). */
  changed: boolean;
}

/** A level of the label tree: label value -> the next level, or the series at the last label. */
type LabelTree = Map<string, LabelTree | Series>;

const METRIC_INDEX = new Map<MetricDef, number>(METRICS.map((d, i) => [d, i]));

/** More series than any configuration makes (labels come from code and configuration): past it the tree starts afresh. */
const MAX_SERIES = 10000;

/**
 * Records changes in one process; `takeDelta` hands them over and starts afresh.
 * A series is found through a tree keyed by its label values and kept
 * across deltas: a record costs a few map lookups, no key string, no new
 * object (this runs several times per session).
 */
export class MetricsRecorder {
  /** False until a metrics listener is configured: every record call is then a no-op. */
  enabled = false;
  #trees: LabelTree[] = METRICS.map((): LabelTree => new Map());
  #seriesCount = 0;
  #changed: Series[] = [];
  /** Called once per burst of changes (the worker schedules its flush there). */
  onChange: (() => void) | undefined;

  #series(d: MetricDef, labels: readonly string[]): Series {
    const metric = METRIC_INDEX.get(d)!;
    let level = this.#trees[metric]!;
    const last = labels.length - 1;
    for (let i = 0; i < last; i++) {
      let next = level.get(labels[i]!) as LabelTree | undefined;
      if (!next) {
        next = new Map();
        level.set(labels[i]!, next);
      }
      level = next;
    }
    const leaf = last < 0 ? "" : labels[last]!;
    let s = level.get(leaf) as Series | undefined;
    if (!s) {
      if (++this.#seriesCount > MAX_SERIES) {
        // a series still in #changed is delivered all the same: it only leaves the tree
        this.#trees = METRICS.map((): LabelTree => new Map());
        this.#seriesCount = 1;
        return this.#series(d, labels);
      }
      s = { metric, labels: labels.map(labelValue), value: 0, changed: false };
      if (d.buckets) s.buckets = new Array<number>(d.buckets.length + 1).fill(0);
      level.set(leaf, s);
    }
    if (!s.changed) {
      if (this.#changed.length === 0) this.onChange?.();
      s.changed = true;
      this.#changed.push(s);
    }
    return s;
  }

  /** Adds to a counter (or moves a gauge by `by`). */
  add(d: MetricDef, labels: readonly string[], by = 1): void {
    if (!this.enabled || by === 0) return;
    this.#series(d, labels).value += by;
  }

  /** One histogram observation, in seconds. */
  observe(d: MetricDef, labels: readonly string[], seconds: number): void {
    if (!this.enabled) return;
    const s = this.#series(d, labels);
    const bounds = d.buckets ?? [];
    let i = 0;
    while (i < bounds.length && seconds > bounds[i]!) i++;
    s.buckets![i]!++;
    s.value += seconds;
  }

  /** The changes since the last call, or undefined when nothing changed. */
  takeDelta(): DeltaEntry[] | undefined {
    if (this.#changed.length === 0) return undefined;
    const out: DeltaEntry[] = [];
    for (const s of this.#changed) {
      if (s.buckets) {
        out.push([s.metric, s.labels, s.value, s.buckets]);
        s.buckets = new Array<number>(s.buckets.length).fill(0);
      } else {
        out.push([s.metric, s.labels, s.value]);
      }
      s.value = 0;
      s.changed = false;
    }
    this.#changed = [];
    return out;
  }
}

/** A value outside the label alphabet is replaced, never sent as is. */
function labelValue(v: string): string {
  return LABEL_VALUE.test(v) ? v : "other";
}

/** This process's recorder. */
export const metrics = new MetricsRecorder();

/**
 * A limit refused or delayed something (limit_conn, authentication
 * throttling): `limit` names it, e.g. `limit_conn` or `auth_throttle`.
 */
export function countLimitHit(limit: string): void {
  metrics.add(LIMITS_HIT, [limit]);
}

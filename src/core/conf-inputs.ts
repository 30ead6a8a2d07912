/**
 * Everything a configuration is built from besides its text on the command
 * line: the files it reads (main file, includes, certificates, keys,
 * password and ticket key files), include glob expansions, /etc/passwd and
 * /etc/group, and host names resolved while parsing.
 *
 * The master records these inputs while it validates a configuration; a
 * worker (started or respawned) replays the master's record instead of
 * reading the disk again, so it runs exactly what the master validated
 * (nginx's workers inherit the master's parsed cycle; Node cannot fork, so
 * the inputs travel over the IPC channel instead).
 *
 * Parsing is synchronous, so one recording or replay is active at a time.
 */
import { readFileSync } from "node:fs";

/** One input: its value (JSON), or the error reading it gave. */
export type ConfInput =
  | { readonly key: string; readonly value: unknown }
  | { readonly key: string; readonly error: { readonly message: string; readonly code?: string; readonly errno?: number } };

/** The inputs of one validated configuration, in the order they were read. */
export interface ConfSnapshot {
  readonly inputs: readonly ConfInput[];
}

type Mode = { readonly kind: "record"; readonly inputs: ConfInput[] } | { readonly kind: "replay"; readonly queues: Map<string, ConfInput[]> };
let mode: Mode | undefined;

/**
 * The input named `key`: computed (and recorded when recording) or taken
 * from the snapshot being replayed. `compute` returns a JSON value or throws.
 */
export function confInput<T>(key: string, compute: () => T): T {
  const m = mode;
  if (m?.kind === "replay") {
    const entry = m.queues.get(key)?.shift();
    // parsing the same text reads the same inputs in the same order; anything
    // else means the worker is not running what the master validated
    if (entry === undefined) throw new Error(`configuration input "${key}" is not in what the master validated`);
    if ("error" in entry) throw Object.assign(new Error(entry.error.message), { code: entry.error.code, errno: entry.error.errno });
    return entry.value as T;
  }
  try {
    const value = compute();
    m?.inputs.push({ key, value });
    return value;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    m?.inputs.push({
      key,
      error: { message: e?.message ?? String(err), ...(e?.code ? { code: e.code } : {}), ...(typeof e?.errno === "number" ? { errno: e.errno } : {}) },
    });
    throw err;
  }
}

/** A file read at configuration time (its bytes travel as base64). */
export function readConfFile(path: string): Buffer {
  return Buffer.from(
    confInput(`file:${path}`, () => readFileSync(path).toString("base64")),
    "base64",
  );
}

/** Runs `parse` while recording its inputs. */
export function recordInputs<T>(parse: () => T): { result: T; snapshot: ConfSnapshot } {
  const previous = mode;
  const inputs: ConfInput[] = [];
  mode = { kind: "record", inputs };
  try {
    return { result: parse(), snapshot: { inputs } };
  } finally {
    mode = previous;
  }
}

/** Runs `parse` with its inputs taken from `snapshot` only (the disk is not read). */
export function replayInputs<T>(snapshot: ConfSnapshot, parse: () => T): T {
  const previous = mode;
  const queues = new Map<string, ConfInput[]>();
  for (const input of snapshot.inputs) {
    const q = queues.get(input.key) ?? [];
    q.push(input);
    queues.set(input.key, q);
  }
  mode = { kind: "replay", queues };
  try {
    return parse();
  } finally {
    mode = previous;
  }
}

/** A snapshot received over IPC, checked for shape (the master is trusted, its channel may still be garbled). */
export function snapshotFrom(raw: unknown): ConfSnapshot | undefined {
  const inputs = (raw as { inputs?: unknown } | null)?.inputs;
  if (!Array.isArray(inputs)) return undefined;
  for (const i of inputs) {
    if (typeof i !== "object" || i === null || typeof (i as { key?: unknown }).key !== "string") return undefined;
    if (!("value" in i) && typeof (i as { error?: { message?: unknown } }).error?.message !== "string") return undefined;
  }
  return { inputs: inputs as ConfInput[] };
}

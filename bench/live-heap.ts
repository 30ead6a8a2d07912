/**
 * Live JavaScript heap of a running Postern process, measured from outside
 * through a V8 heap snapshot (NOT part of the test suite; used by soak.ts).
 *
 * Postern's node runs with `--heapsnapshot-signal=SIGUSR2`; forked workers
 * inherit process.execArgv, so every worker writes a snapshot on SIGUSR2.
 * Writing a snapshot starts with a full garbage collection, so the sum of
 * the snapshot's node sizes is what is really reachable: unlike RSS, it does
 * not include the heap space V8 keeps after a peak. Workers do not handle
 * SIGUSR2 otherwise, and a master whose node takes SIGUSR2 for snapshots
 * leaves it to node (no binary upgrade: src/process/binary-upgrade.ts,
 * usr2TakenByNode) and writes its snapshot too.
 */
import { readdirSync, readFileSync, readlinkSync, rmSync, statSync } from "node:fs";
import path from "node:path";

/** The signal the snapshot is taken on. */
export const HEAP_SIGNAL = "SIGUSR2";

/** Node options that make a process (and its forked workers) write a snapshot into `dir` on HEAP_SIGNAL. */
export function heapSnapshotNodeArgs(dir: string): string[] {
  return [`--heapsnapshot-signal=${HEAP_SIGNAL}`, `--diagnostic-dir=${dir}`];
}

/** Live heap of one process after a full GC. */
export interface LiveHeap {
  /** Sum of the self sizes of every object in the snapshot, in bytes. */
  bytes: number;
  /**
   * The part of `bytes` that is V8's code (snapshot type `code`: bytecode,
   * machine code and its deopt/relocation data, feedback vectors, function
   * metadata): it grows as the JIT compiles and optimizes the hot paths.
   */
  code: number;
  /** Number of objects. */
  objects: number;
  /** Bytes and count per kind (`type` or `type:constructor name`), to compare two snapshots. */
  byKind: Map<string, { bytes: number; count: number }>;
}

interface SnapshotJson {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** Sums a heap snapshot's `self_size` over all nodes (node count = nodes.length / node_fields.length). */
export function liveHeapOfSnapshot(text: string): LiveHeap {
  const s = JSON.parse(text) as SnapshotJson;
  const fields = s.snapshot.meta.node_fields;
  const width = fields.length;
  const sizeAt = fields.indexOf("self_size");
  const typeAt = fields.indexOf("type");
  const nameAt = fields.indexOf("name");
  if (sizeAt < 0 || typeAt < 0 || nameAt < 0) throw new Error(`unexpected heap snapshot node fields: ${fields.join(",")}`);
  const types = s.snapshot.meta.node_types[0];
  const byKind = new Map<string, { bytes: number; count: number }>();
  let bytes = 0;
  let code = 0;
  for (let i = 0; i < s.nodes.length; i += width) {
    const size = s.nodes[i + sizeAt]!;
    bytes += size;
    const type = types[s.nodes[i + typeAt]!] ?? "?";
    if (type === "code") code += size;
    // objects and closures by constructor/function name; strings, code, arrays and the rest by type only
    const kind = type === "object" || type === "closure" ? `${type}:${s.strings[s.nodes[i + nameAt]!]}` : type;
    const k = byKind.get(kind);
    if (k) {
      k.bytes += size;
      k.count++;
    } else byKind.set(kind, { bytes: size, count: 1 });
  }
  return { bytes, code, objects: s.nodes.length / width, byKind };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** True while `pid` has `file` open (the snapshot is written synchronously and closed at the end). */
function holdsOpen(pid: number, file: string): boolean {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false; // the process is gone
  }
  return fds.some((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`) === file;
    } catch {
      return false;
    }
  });
}

/**
 * Signals `pid`, waits for its snapshot in `dir` to be written completely,
 * measures it and deletes it (snapshots are tens of MB) unless `keep` is
 * set (to compare two of them in DevTools).
 */
export async function measureLiveHeap(pid: number, dir: string, options: { timeoutMs?: number; keep?: boolean } = {}): Promise<LiveHeap & { file: string }> {
  const mine = (): string[] => readdirSync(dir).filter((f) => f.endsWith(".heapsnapshot") && f.includes(`.${pid}.`));
  const before = new Set(mine());
  const deadline = Date.now() + (options.timeoutMs ?? 60000);
  process.kill(pid, HEAP_SIGNAL);
  let file: string | undefined;
  while (!file) {
    if (Date.now() > deadline) throw new Error(`no heap snapshot from pid ${pid} in ${dir}`);
    await sleep(50);
    const fresh = mine().find((f) => !before.has(f));
    if (fresh) file = path.join(dir, fresh);
  }
  // complete when the process has closed it and its size no longer changes
  let size = -1;
  for (;;) {
    if (Date.now() > deadline) throw new Error(`heap snapshot ${file} not completed in time`);
    await sleep(100);
    const now = statSync(file).size;
    if (!holdsOpen(pid, file) && now === size) break;
    size = now;
  }
  const heap = liveHeapOfSnapshot(readFileSync(file, "utf8"));
  if (!options.keep) rmSync(file, { force: true });
  return { ...heap, file };
}

/** The kinds whose bytes grew most from `a` to `b`, largest first. */
export function heapGrowth(a: LiveHeap, b: LiveHeap, top: number): Array<{ kind: string; bytes: number; count: number }> {
  const rows: Array<{ kind: string; bytes: number; count: number }> = [];
  for (const [kind, v] of b.byKind) {
    const o = a.byKind.get(kind) ?? { bytes: 0, count: 0 };
    rows.push({ kind, bytes: v.bytes - o.bytes, count: v.count - o.count });
  }
  for (const [kind, o] of a.byKind) if (!b.byKind.has(kind)) rows.push({ kind, bytes: -o.bytes, count: -o.count });
  return rows.sort((x, y) => y.bytes - x.bytes).slice(0, top);
}

/**
 * Shared pieces of the fuzz tests: a time budget for fc.assert, byte
 * mutations of recorded good transcripts (more effective than pure noise),
 * and arbitrary splits of a byte stream into reads.
 */
import fc from "fast-check";

/** Seconds each fuzz property may run (POSTERN_FUZZ_SECONDS overrides, e.g. for a long campaign). */
export function fuzzSeconds(defaultSeconds: number): number {
  const env = Number(process.env.POSTERN_FUZZ_SECONDS);
  return Number.isFinite(env) && env > 0 ? env : defaultSeconds;
}

/**
 * fc.assert parameters: as many runs as fit in `seconds` (interrupting is not
 * a failure), a seed from POSTERN_FUZZ_SEED when given so a failure replays.
 */
export function budget(seconds: number): fc.Parameters<unknown> {
  const seed = Number(process.env.POSTERN_FUZZ_SEED);
  return {
    numRuns: 1_000_000,
    interruptAfterTimeLimit: fuzzSeconds(seconds) * 1000,
    markInterruptAsFailure: false,
    ...(Number.isInteger(seed) ? { seed } : {}),
  };
}

/** Bytes that matter to mail parsers: line ends, spaces, quotes, literal braces, NUL, high bytes. */
const SPECIAL = [0x0d, 0x0a, 0x20, 0x22, 0x5c, 0x7b, 0x7d, 0x2b, 0x00, 0xff, 0x3d, 0x3a, 0x09, 0x80];

type Mutation = (b: Buffer) => Buffer;

/** One random edit of a byte string. */
function mutation(): fc.Arbitrary<Mutation> {
  const pos = fc.nat();
  const byte = fc.oneof(fc.constantFrom(...SPECIAL), fc.integer({ min: 0, max: 255 }));
  return fc.oneof(
    // flip/replace one byte
    fc.tuple(pos, byte).map(([p, v]) => (b: Buffer) => {
      if (b.length === 0) return Buffer.from([v]);
      const c = Buffer.from(b);
      c[p % c.length] = v;
      return c;
    }),
    // insert a few bytes
    fc.tuple(pos, fc.array(byte, { minLength: 1, maxLength: 8 })).map(([p, vs]) => (b: Buffer) => {
      const at = b.length === 0 ? 0 : p % (b.length + 1);
      return Buffer.concat([b.subarray(0, at), Buffer.from(vs), b.subarray(at)]);
    }),
    // delete a range
    fc.tuple(pos, fc.integer({ min: 1, max: 16 })).map(([p, n]) => (b: Buffer) => {
      if (b.length === 0) return b;
      const at = p % b.length;
      return Buffer.concat([b.subarray(0, at), b.subarray(at + n)]);
    }),
    // duplicate a range (repeated commands, doubled CRLFs)
    fc.tuple(pos, fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 4 })).map(([p, n, times]) => (b: Buffer) => {
      if (b.length === 0) return b;
      const at = p % b.length;
      const piece = b.subarray(at, at + n);
      return Buffer.concat([b.subarray(0, at), ...Array.from({ length: times }, () => piece), b.subarray(at)]);
    }),
    // truncate
    pos.map((p) => (b: Buffer) => (b.length === 0 ? b : b.subarray(0, p % b.length))),
    // a long run of one byte (overlong tokens, literal lengths)
    fc.tuple(pos, byte, fc.integer({ min: 1, max: 600 })).map(([p, v, n]) => (b: Buffer) => {
      const at = b.length === 0 ? 0 : p % (b.length + 1);
      return Buffer.concat([b.subarray(0, at), Buffer.alloc(n, v), b.subarray(at)]);
    }),
  );
}

/** A transcript from `corpus` (several lines joined) with 0..6 random edits, or pure noise one time in eight. */
export function mutatedStream(corpus: readonly string[]): fc.Arbitrary<Buffer> {
  const base = fc.array(fc.constantFrom(...corpus), { minLength: 1, maxLength: 8 }).map((lines) => Buffer.from(lines.join(""), "latin1"));
  const mutated = fc.tuple(base, fc.array(mutation(), { maxLength: 6 })).map(([b, ms]) => ms.reduce<Buffer>((acc, m) => m(acc), b));
  const noise = fc.uint8Array({ maxLength: 512 }).map((u) => Buffer.from(u));
  return fc.oneof({ arbitrary: mutated, weight: 7 }, { arbitrary: noise, weight: 1 });
}

/** A stream and an arbitrary split of it into consecutive non-empty reads. */
export function splitStream(stream: fc.Arbitrary<Buffer>): fc.Arbitrary<{ whole: Buffer; chunks: Buffer[] }> {
  return stream.chain((whole) =>
    fc.array(fc.integer({ min: 0, max: Math.max(0, whole.length) }), { maxLength: 16 }).map((cuts) => {
      const points = [...new Set([0, ...cuts, whole.length])].sort((a, b) => a - b);
      const chunks: Buffer[] = [];
      for (let i = 1; i < points.length; i++) chunks.push(whole.subarray(points[i - 1], points[i]));
      return { whole, chunks: chunks.length > 0 ? chunks : [whole] };
    }),
  );
}

/** Applies the same mutations outside fast-check (for the live campaign): `rand` in [0,1). */
export function mutateBytes(b: Buffer, rand: () => number): Buffer {
  const pick = (n: number): number => Math.floor(rand() * n);
  const byte = (): number => (rand() < 0.5 ? SPECIAL[pick(SPECIAL.length)]! : pick(256));
  let out = Buffer.from(b);
  const edits = 1 + pick(4);
  for (let e = 0; e < edits; e++) {
    const at = out.length === 0 ? 0 : pick(out.length + 1);
    switch (pick(5)) {
      case 0:
        if (out.length > 0) out[Math.min(at, out.length - 1)] = byte();
        break;
      case 1:
        out = Buffer.concat([out.subarray(0, at), Buffer.from([byte(), byte()]), out.subarray(at)]);
        break;
      case 2:
        out = Buffer.concat([out.subarray(0, at), out.subarray(at + 1 + pick(8))]);
        break;
      case 3:
        out = Buffer.concat([out.subarray(0, at), Buffer.alloc(1 + pick(300), byte()), out.subarray(at)]);
        break;
      default:
        out = Buffer.concat([out.subarray(0, at), out.subarray(Math.max(0, at - 20), at), out.subarray(at)]);
    }
  }
  return out;
}

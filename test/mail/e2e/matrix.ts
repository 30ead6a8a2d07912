/**
 * The scenario table shared by protocol-matrix-*.test.ts: a row is one
 * scenario, written once, with each protocol's lines and expected replies
 * (matrix-protocols.ts has each protocol's set-up); `runMatrix` runs every
 * row for each protocol that has data for it, against nginx 1.22.1 and
 * Postern with the same config.
 */
import { after, before, describe, test } from "node:test";
import { Pair } from "./pair.js";
import { MATRIX_PROTOCOLS, type MatrixProtocol, type Protocol } from "./matrix-protocols.js";
import { b64, type Talk } from "./talk.js";

/** A row of the table: its scenario, run for each protocol that has data for it. */
export interface Row {
  title: (p: MatrixProtocol) => string;
  protocols: Protocol[];
  run: (pair: Pair, p: MatrixProtocol) => Promise<void>;
}

/** A row whose per-protocol data is typed by its scenario. */
export function row<D>(
  title: (p: MatrixProtocol) => string,
  data: Partial<Record<Protocol, D>>,
  scenario: (pair: Pair, p: MatrixProtocol, d: D) => Promise<void>,
): Row {
  return {
    title,
    protocols: Object.keys(data) as Protocol[],
    run: (pair, p) => scenario(pair, p, data[p.protocol]!),
  };
}

/** Sends each line and reads one reply line. */
export async function dialogue(t: Talk, lines: string[], timeoutMs?: number): Promise<void> {
  for (const line of lines) await t.cmd(`${line}\r\n`, timeoutMs);
}

/** The transcript of a session of single-line commands: greeting, then each command and its reply. */
export function exchange(greeting: string, lines: string[], replies: string[]): string[] {
  return [greeting, ...lines.flatMap((l, i) => [`C: ${l}\r\n`, `S: ${replies[i]}\r\n`])];
}

export const plain = (user: string, pass: string): string => b64(`\0${user}\0${pass}`);

/** Runs the rows for each protocol that has data for them: one nginx/Postern pair per protocol, started and stopped around its rows. */
export function runMatrix(rows: readonly Row[]): void {
  for (const protocol of MATRIX_PROTOCOLS) {
    const mine = rows.filter((x) => x.protocols.includes(protocol.protocol));
    if (mine.length === 0) continue;
    describe(protocol.label, () => {
      let pair: Pair;
      // at most two proxies run at a time
      before(async () => {
        pair = await Pair.start(protocol.setup);
      });
      after(async () => {
        await pair?.stop();
      });
      for (const r of mine) test(r.title(protocol), () => r.run(pair, protocol));
    });
  }
}

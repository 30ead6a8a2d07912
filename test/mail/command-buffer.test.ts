import { test } from "node:test";
import assert from "node:assert/strict";
import { CommandBuffer, type CommandReader } from "../../src/mail/command-buffer.js";

/** A reader taking LF-terminated lines, recording what it saw. */
class Lines implements CommandReader {
  readonly commands: string[] = [];
  readonly inputs: string[] = [];
  busy = false;
  closed = false;
  tooLongCalls = 0;
  canRewind = true;
  /** Called inside consume for the command that matches (as a front end calls startTls). */
  onCommand: ((line: string) => void) | undefined;
  ready(): boolean {
    return !this.busy && !this.closed;
  }
  consume(input: Buffer): number {
    this.inputs.push(input.toString("latin1"));
    const lf = input.indexOf(0x0a);
    if (lf < 0) return 0;
    const line = input.subarray(0, lf + 1).toString("latin1");
    this.commands.push(line);
    this.onCommand?.(line);
    return lf + 1;
  }
  rewindable(): boolean {
    return this.canRewind;
  }
  tooLong(): void {
    this.tooLongCalls++;
    this.closed = true;
  }
}

function buffer(size: number): { buf: CommandBuffer; flow: string[] } {
  const flow: string[] = [];
  const buf = new CommandBuffer(size, { pause: () => flow.push("pause"), resume: () => flow.push("resume") });
  return { buf, flow };
}

test("holds nothing before the first byte; pipelined commands go to the reader one per consume", () => {
  const { buf } = buffer(16);
  assert.equal(buf.hasPending(), false);
  assert.equal(buf.contents().length, 0, "no buffer before the first byte");
  const r = new Lines();
  buf.pump(r);
  assert.deepEqual(r.inputs, [], "nothing to consume");
  buf.push(Buffer.from("a\nbb\nc"));
  buf.pump(r);
  assert.deepEqual(r.commands, ["a\n", "bb\n"]);
  assert.deepEqual(r.inputs, ["a\nbb\nc", "bb\nc", "c"], "each call sees the unconsumed rest");
  assert.equal(buf.pending().toString(), "c");
  buf.push(Buffer.from("\n"));
  buf.pump(r);
  assert.deepEqual(r.commands, ["a\n", "bb\n", "c\n"]);
  assert.equal(buf.hasPending(), false);
});

test("a busy reader takes nothing; the bytes wait and are read once it is ready", () => {
  const { buf } = buffer(16);
  const r = new Lines();
  r.busy = true;
  buf.push(Buffer.from("x\ny\n"));
  buf.pump(r);
  assert.deepEqual(r.commands, []);
  assert.equal(buf.pending().toString(), "x\ny\n");
  r.busy = false;
  buf.pump(r);
  assert.deepEqual(r.commands, ["x\n", "y\n"]);
});

test("a full buffer without a complete command is too long; contents() is the whole buffer, unparsed() the rest", () => {
  const { buf } = buffer(8);
  const r = new Lines();
  buf.push(Buffer.from("ok\nlonger-than-the-rest"));
  buf.pump(r);
  assert.deepEqual(r.commands, ["ok\n"]);
  assert.equal(r.tooLongCalls, 1);
  assert.equal(buf.contents().toString(), "ok\nlonge");
  assert.equal(buf.unparsed().toString(), "longe");
});

test("the buffer is rewound only when fully consumed and the reader allows it", () => {
  const run = (canRewind: boolean): Lines => {
    const { buf } = buffer(8);
    const r = new Lines();
    r.canRewind = canRewind;
    buf.push(Buffer.from("abcdef\n"));
    buf.pump(r);
    buf.push(Buffer.from("ghijkl\n"));
    buf.pump(r);
    return r;
  };
  const rewound = run(true);
  assert.deepEqual(rewound.commands, ["abcdef\n", "ghijkl\n"], "rewound: the second line fits again");
  assert.equal(rewound.tooLongCalls, 0);
  // a SASL exchange: nginx keeps the buffer, so the exchange must fit in one
  const kept = run(false);
  assert.deepEqual(kept.commands, ["abcdef\n"]);
  assert.equal(kept.tooLongCalls, 1, "full, not rewindable, input waiting: too long");
});

test("bytes beyond the buffer wait in a backlog; past a buffer's worth the socket is paused, then resumed", () => {
  const { buf, flow } = buffer(4);
  const r = new Lines();
  r.busy = true;
  buf.push(Buffer.from("a\nb\n"));
  assert.equal(flow.length, 0, "a buffer's worth may wait");
  buf.push(Buffer.from("c"));
  assert.deepEqual(flow, ["pause"], "more than a buffer's worth waits");
  r.busy = false;
  buf.pump(r);
  assert.deepEqual(r.commands, ["a\n", "b\n"]);
  assert.ok(flow.includes("resume"));
  assert.equal(buf.pending().toString(), "c");
});

test("dropAfterCommand: everything after the command being consumed is discarded (STARTTLS)", () => {
  const { buf } = buffer(16);
  const r = new Lines();
  r.onCommand = (line) => {
    if (line === "tls\n") {
      buf.dropAfterCommand();
      r.busy = true;
    }
  };
  buf.push(Buffer.from("tls\nplain\n"));
  buf.pump(r);
  assert.deepEqual(r.commands, ["tls\n"]);
  assert.equal(buf.hasPending(), false);
  r.busy = false;
  buf.push(Buffer.from("after\n"));
  buf.pump(r);
  assert.deepEqual(r.commands, ["tls\n", "after\n"]);
});

test("discard forgets the buffer and the backlog (hand-off)", () => {
  const { buf } = buffer(4);
  buf.push(Buffer.from("abc"));
  buf.push(Buffer.from("defgh"));
  buf.pump(new Lines());
  buf.discard();
  assert.equal(buf.hasPending(), false);
  assert.equal(buf.pending().length, 0);
  assert.equal(buf.contents().length, 0);
});

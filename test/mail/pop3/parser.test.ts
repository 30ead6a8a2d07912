import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { POP3_VERBS, type Pop3LineMode, type Pop3Parsed, Pop3Parser, parsePop3Line } from "../../../src/mail/pop3/parser.js";

const b = (s: string) => Buffer.from(s, "latin1");

/** The parse of one complete line, arguments as text. */
function cmd(line: string, mode: Pop3LineMode = "command"): { kind: string; verb?: string; args?: string[] } {
  const r = parsePop3Line(b(line), mode);
  if (r.kind === "invalid") return { kind: "invalid" };
  const args = r.args.map((a) => a.toString("latin1"));
  return r.kind === "command" ? { kind: r.kind, verb: r.verb, args } : { kind: r.kind, args };
}

test("the eight commands are four letters, case-insensitive", () => {
  for (const v of POP3_VERBS) {
    assert.deepEqual(cmd(v), { kind: "command", verb: v, args: [] });
    assert.deepEqual(cmd(v.toLowerCase()), { kind: "command", verb: v, args: [] });
  }
  assert.deepEqual(cmd("uSeR bob"), { kind: "command", verb: "USER", args: ["bob"] });
});

test("anything else is a syntax error", () => {
  for (const line of ["STAT", "LIST 1", "RETR 1", "UIDL", "TOP 1 2", "RSET", "DELE 1", "QUI", "QUITT", " QUIT", "", "\r", "USER\tbob", "NO0P", "QU T"]) {
    assert.equal(cmd(line).kind, "invalid", JSON.stringify(line));
  }
});

test("a CR is allowed only right before LF", () => {
  assert.deepEqual(cmd("NOOP\r"), { kind: "command", verb: "NOOP", args: [] });
  assert.deepEqual(cmd("NOOP"), { kind: "command", verb: "NOOP", args: [] }, "bare LF");
  assert.equal(cmd("NOOP\rx").kind, "invalid");
  assert.equal(cmd("NOOP\r\r").kind, "invalid");
  assert.equal(cmd("USER a\rb\r").kind, "invalid");
  assert.equal(cmd("AUTH PLAIN\r \r").kind, "invalid");
});

test("arguments: split at spaces, at most three", () => {
  assert.deepEqual(cmd("APOP  user   digest  \r"), { kind: "command", verb: "APOP", args: ["user", "digest"] });
  assert.deepEqual(cmd("NOOP x y z\r"), { kind: "command", verb: "NOOP", args: ["x", "y", "z"] });
  assert.deepEqual(cmd("NOOP x y z \r"), { kind: "command", verb: "NOOP", args: ["x", "y", "z"] });
  assert.equal(cmd("NOOP x y z w\r").kind, "invalid");
  assert.deepEqual(cmd("AUTH a\tb\r"), { kind: "command", verb: "AUTH", args: ["a\tb"] }, "TAB is not a separator");
  assert.deepEqual(cmd("CAPA \r"), { kind: "command", verb: "CAPA", args: [] });
});

test("USER and PASS take everything after the spaces as one argument", () => {
  assert.deepEqual(cmd("PASS  secret with space\r"), { kind: "command", verb: "PASS", args: ["secret with space"] });
  assert.deepEqual(cmd("USER a b c d e \r"), { kind: "command", verb: "USER", args: ["a b c d e "] });
  assert.deepEqual(cmd("USER \r"), { kind: "command", verb: "USER", args: [] });
  assert.deepEqual(cmd("pass x"), { kind: "command", verb: "PASS", args: ["x"] });
});

test("a SASL answer starts at its first byte and splits like arguments", () => {
  assert.deepEqual(cmd("dGVzdA==\r", "saslResponse"), { kind: "saslResponse", args: ["dGVzdA=="] });
  assert.deepEqual(cmd("\r", "saslResponse"), { kind: "saslResponse", args: [""] });
  assert.deepEqual(cmd("", "saslResponse"), { kind: "saslResponse", args: [""] });
  assert.deepEqual(cmd(" x\r", "saslResponse"), { kind: "saslResponse", args: ["", "x"] });
  assert.deepEqual(cmd("a b c \r", "saslResponse"), { kind: "saslResponse", args: ["a", "b", "c"] });
  assert.equal(cmd("a b c d\r", "saslResponse").kind, "invalid");
  assert.equal(cmd("a\rb\r", "saslResponse").kind, "invalid");
  assert.deepEqual(cmd("USER x\r", "saslResponse"), { kind: "saslResponse", args: ["USER", "x"] }, "no command words here");
});

test("the incremental parser waits for LF and reports the consumed length", () => {
  const p = new Pop3Parser();
  assert.deepEqual(p.next(b("NO"), "command"), { kind: "incomplete" });
  assert.deepEqual(p.next(b("NOOP\r"), "command"), { kind: "incomplete" });
  const r = p.next(b("NOOP\r\nQUIT\r\n"), "command");
  assert.equal(r.kind, "command");
  assert.equal(r.kind === "command" && r.length, 6);
  assert.deepEqual(p.next(b("STAT 1 2 3 4 5"), "command"), { kind: "incomplete" }, "invalid lines wait for LF too");
  assert.deepEqual(p.next(b("STAT 1 2 3 4 5\n"), "command"), { kind: "invalid", length: 15 });
});

test("arguments are copies, not views of the input buffer", () => {
  const input = b("USER bob\r\n");
  const r = new Pop3Parser().next(input, "command");
  input.fill(0x41);
  assert.equal(r.kind === "command" && r.args[0]!.toString(), "bob");
});

/** Feeds `chunks` as the core does (growing unconsumed input) and lists the results. */
function drive(chunks: readonly Buffer[]): string[] {
  const parser = new Pop3Parser();
  const out: string[] = [];
  let pending = Buffer.alloc(0);
  for (const chunk of chunks) {
    pending = Buffer.concat([pending, chunk]);
    for (;;) {
      // alternate modes by result count, as a SASL exchange would
      const mode: Pop3LineMode = out.length % 3 === 2 ? "saslResponse" : "command";
      const r: Pop3Parsed = parser.next(pending, mode);
      if (r.kind === "incomplete") break;
      out.push(JSON.stringify({ ...r, args: "args" in r ? r.args.map((a) => a.toString("hex")) : undefined }));
      pending = pending.subarray(r.length);
    }
  }
  return out;
}

test("property: any bytes, split anywhere, parse the same and never throw", () => {
  const alphabet = fc.constantFrom(..."USERPASQITCAHNOLuserpas \r\n\t*=0123".split("").map((c) => c.charCodeAt(0)), 0, 255);
  fc.assert(
    fc.property(fc.array(alphabet, { maxLength: 300 }), fc.array(fc.nat(300), { maxLength: 8 }), (bytes, cuts) => {
      const whole = Buffer.from(bytes);
      const points = [...new Set(cuts.map((c) => c % (whole.length + 1)))].sort((x, y) => x - y);
      const chunks: Buffer[] = [];
      let at = 0;
      for (const p of points) {
        chunks.push(whole.subarray(at, p));
        at = p;
      }
      chunks.push(whole.subarray(at));
      assert.deepEqual(drive(chunks), drive([whole]));
    }),
    { numRuns: 500 },
  );
});

/**
 * The ID argument (RFC 2971) as the IMAP parser reads it with `imap_id on`
 * (src/mail/imap/id-syntax.ts): fields, escapes, literals, limits, and the
 * same result whether the bytes come at once or one by one.
 * Rules: docs/behaviour/imap.md#imap-14-id-before-login.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { type ImapParse, ImapParser } from "../../../src/mail/imap/parser.js";

const b = (s: string) => Buffer.from(s, "latin1");

/** Feeds `text` in chunks of `step` bytes as the session core does (unconsumed bytes are fed again); collects the results. */
function run(text: string, step = Infinity, bufferSize = 4096): { results: ImapParse[]; literals: number } {
  const parser = new ImapParser(bufferSize, true);
  const input = b(text);
  const results: ImapParse[] = [];
  let literals = 0;
  let start = 0;
  let available = Math.min(input.length, step);
  for (;;) {
    const r = parser.feed(input.subarray(start, available), start);
    if (r.kind === "literal") {
      literals++;
      continue;
    }
    if (r.kind === "incomplete") {
      if (available >= input.length) {
        results.push(r);
        return { results, literals };
      }
      available = Math.min(input.length, available + step);
      continue;
    }
    results.push(r);
    start += r.length;
    if (start >= input.length) return { results, literals };
    available = Math.max(available, start);
  }
}

function fields(text: string): Array<[string, string | undefined]> {
  const r = run(text).results[0]!;
  assert.equal(r.kind, "command", `${JSON.stringify(text.slice(0, 80))}: ${JSON.stringify(r).slice(0, 200)}`);
  if (r.kind !== "command") throw new Error("unreachable");
  assert.equal(r.name, "id");
  return (r.id ?? []).map((f) => [f.name, f.value]);
}

function refused(text: string): void {
  const r = run(text).results[0]!;
  assert.equal(r.kind, "invalid", `${JSON.stringify(text.slice(0, 80))} should be refused, got ${JSON.stringify(r).slice(0, 200)}`);
}

test("NIL, the empty list, pairs with NIL values, escapes, case of ID and NIL", () => {
  assert.deepEqual(fields("a ID NIL\r\n"), []);
  assert.deepEqual(fields("a id nil\n"), []);
  assert.deepEqual(fields("a ID ()\r\n"), []);
  assert.deepEqual(fields('a ID ("name" "x y" "os" NIL "q" "a\\"b\\\\c")\r\n'), [
    ["name", "x y"],
    ["os", undefined],
    ["q", 'a"b\\c'],
  ]);
});

test("literals: synchronising ones ask for the continuation, {N+} does not, {0} is empty", () => {
  const sync = run('a ID ("name" {3}\r\nabc "v" {0}\r\n)\r\n');
  assert.equal(sync.literals, 2);
  assert.equal(sync.results[0]!.kind, "command");
  assert.deepEqual(fields("a ID ({4+}\r\nname {3+}\r\nabc)\r\n"), [["name", "abc"]]);
  assert.equal(run("a ID ({4+}\r\nname {3+}\r\nabc)\r\n").literals, 0);
});

test("refused: syntax, repeated fields, NIL field, bad escapes, control and 8-bit bytes, limits", () => {
  const pairs = (n: number) => Array.from({ length: n }, (_, i) => `"f${i}" "v"`).join(" ");
  for (const text of [
    "a ID\r\n",
    "a ID \r\n",
    "a ID  NIL\r\n",
    "a ID NILL\r\n",
    "a ID ( )\r\n",
    'a ID ("a" "b" )\r\n',
    'a ID ("a"  "b")\r\n',
    'a ID ("a")\r\n',
    'a ID ("a" "b")x\r\n',
    'a ID ("a" "b") \r\n',
    'a ID ("a" "b" "A" "c")\r\n',
    'a ID (NIL "b")\r\n',
    'a ID ("" "b")\r\n',
    'a ID ("a" b)\r\n',
    'a ID ("a" "\\n")\r\n',
    'a ID ("a" "x\ty\x01")\r\n',
    'a ID ("a" "\xe9")\r\n',
    `a ID (${pairs(31)})\r\n`,
    `a ID ("${"f".repeat(31)}" "v")\r\n`,
    `a ID ("a" "${"v".repeat(1025)}")\r\n`,
    "a ID ({31}\r\n",
    'a ID ("a" {1025}\r\n',
    'a ID ("a" {}\r\n',
    'a ID ("a" {3x}\r\n',
  ]) {
    refused(text);
  }
  assert.equal(fields(`a ID (${pairs(30)})\r\n`).length, 30);
  assert.deepEqual(fields(`a ID ("${"f".repeat(30)}" "${"v".repeat(1024)}" "t" "x\ty")\r\n`).length, 2);
});

test("a literal holding CR, LF or NUL is skipped whole: the error comes after it, and its bytes are no command", () => {
  const r = run('a ID ("name" {7}\r\nx\r\nb NOO)\r\nc NOOP\r\n');
  assert.equal(r.literals, 1);
  assert.equal(r.results[0]!.kind, "invalid");
  assert.equal(r.results[0]!.kind === "invalid" && r.results[0]!.tag, "a");
  assert.equal(r.results[1]!.kind === "command" && r.results[1]!.name, "noop");
  assert.equal(run('a ID ("name" {2+}\r\n\x00x)\r\n').results[0]!.kind, "invalid");
});

test("a literal that cannot fit in imap_client_buffer is refused before the continuation", () => {
  const r = run('a ID ("name" {100}\r\n', Infinity, 64);
  assert.equal(r.literals, 0);
  assert.equal(r.results[0]!.kind, "invalid");
});

test("without imap_id, ID is an unknown command (as in nginx)", () => {
  const r = new ImapParser(4096).feed(b("a ID NIL\r\n"));
  assert.equal(r.kind, "invalid");
});

test("property: any split of the input parses as the whole", () => {
  const text = 'a ID ("name" "x \\"y\\"" "version" {3}\r\n1.0 "os" NIL)\r\nb NOOP\r\n';
  const whole = JSON.stringify(run(text).results);
  fc.assert(
    fc.property(fc.integer({ min: 1, max: text.length }), (step) => {
      assert.equal(JSON.stringify(run(text, step).results), whole);
    }),
  );
});

test("property: any bytes after ID either parse within RFC 2971's limits or are refused, never more", () => {
  const piece = fc.constantFrom("(", ")", " ", '"', "\\", "NIL", "{3}\r\n", "{2+}\r\n", "\r", "\n", "\x00", "\xff", "name", "x-a", "v");
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 40 }), (pieces) => {
      const { results } = run(`a ID ${pieces.join("")}\r\n`);
      for (const r of results) {
        if (r.kind !== "command" || r.name !== "id") continue;
        const seen = new Set<string>();
        assert.ok(r.id!.length <= 30);
        for (const f of r.id!) {
          assert.ok(f.name.length > 0 && f.name.length <= 30 && !seen.has(f.name.toLowerCase()));
          seen.add(f.name.toLowerCase());
          for (const text of [f.name, f.value ?? ""]) assert.match(text, /^[\x20-\x7e\t]*$/);
        }
      }
    }),
    { numRuns: 2000 },
  );
});

import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { type ImapParse, ImapParser } from "../../../src/mail/imap/parser.js";

const b = (s: string) => Buffer.from(s, "latin1");

/** Parses one whole input; a sync literal's `+ OK` step is recorded as "literal". */
function parseAll(text: string | Buffer, parser = new ImapParser(), offset = 0): { results: ImapParse[]; literals: number } {
  const input = typeof text === "string" ? b(text) : text;
  const results: ImapParse[] = [];
  let literals = 0;
  let start = 0;
  for (;;) {
    const r = parser.feed(input.subarray(start), offset + start);
    if (r.kind === "literal") {
      literals++;
      continue;
    }
    results.push(r);
    if (r.kind === "incomplete") return { results, literals };
    start += r.length;
    if (start >= input.length) return { results, literals };
  }
}

function one(text: string): ImapParse {
  return parseAll(text).results[0]!;
}

function command(text: string): { tag: string; name: string; args: string[] } {
  const r = one(text);
  assert.equal(r.kind, "command", `${JSON.stringify(text)} should parse, got ${JSON.stringify(r)}`);
  if (r.kind !== "command") throw new Error("unreachable");
  return { tag: r.tag, name: r.name, args: r.args.map((a) => a.toString("latin1")) };
}

function invalid(text: string): { tag: string | undefined; quit: boolean; length: number } {
  const r = one(text);
  assert.equal(r.kind, "invalid", `${JSON.stringify(text)} should be invalid, got ${JSON.stringify(r)}`);
  if (r.kind !== "invalid") throw new Error("unreachable");
  return { tag: r.tag, quit: r.quit, length: r.length };
}

test("tags: 1 to 32 characters of A-Z a-z 0-9 - . _, then one or more spaces", () => {
  assert.deepEqual(command("a1 NOOP\r\n"), { tag: "a1", name: "noop", args: [] });
  assert.deepEqual(command("A-z.9_ NOOP\r\n").tag, "A-z.9_");
  assert.equal(command("a    NOOP\r\n").name, "noop");
  assert.equal(command(`${"t".repeat(32)} NOOP\r\n`).tag, "t".repeat(32));
  assert.deepEqual(invalid(`${"t".repeat(33)} NOOP\r\n`).tag, undefined, "a 33rd character");
  assert.equal(invalid("a+b NOOP\r\n").tag, undefined);
  assert.equal(invalid("a*b NOOP\r\n").tag, undefined);
  assert.equal(invalid("a\tNOOP\r\n").tag, undefined, "TAB is not a separator");
  assert.equal(invalid("abc\r\n").tag, undefined, "CR inside the tag");
  assert.equal(invalid("abc\n").tag, undefined, "LF inside the tag");
  assert.equal(invalid("\r\n").tag, undefined, "an empty line");
  // nginx's quirk: a line starting with a space has an empty tag
  assert.deepEqual(command(" NOOP\r\n"), { tag: "", name: "noop", args: [] });
});

test("command words: letters only, case-insensitive, six known words", () => {
  for (const [word, name] of [
    ["noop", "noop"],
    ["LOGIN", "login"],
    ["LogOut", "logout"],
    ["starttls", "starttls"],
    ["CAPABILITY", "capability"],
    ["authenticate", "authenticate"],
  ]) {
    assert.equal(command(`a ${word}\r\n`).name, name);
  }
  assert.equal(invalid("a ID\r\n").tag, "a", "unknown words keep the tag");
  assert.equal(invalid("a SELECT INBOX\r\n").tag, "a");
  assert.equal(invalid("a NOOP1\r\n").tag, "a");
  assert.equal(invalid("a NO-OP\r\n").tag, "a");
  assert.equal(invalid("a \r\n").tag, "a", "no command");
  assert.equal(command("a NOOP\n").name, "noop", "bare LF ends a line");
  assert.equal(invalid("a NOOP\rX\r\n").tag, "a", "CR not followed by LF");
});

test("arguments: atoms, at most three, spaces between", () => {
  assert.deepEqual(command("a LOGIN user pass\r\n").args, ["user", "pass"]);
  assert.deepEqual(command("a LOGIN   user    pass   \r\n").args, ["user", "pass"], "runs of spaces and a trailing space");
  assert.deepEqual(command("a NOOP x y z\r\n").args, ["x", "y", "z"]);
  assert.equal(invalid("a NOOP x y z w\r\n").tag, "a", "a fourth argument");
  assert.deepEqual(command('a LOGIN us"er pa"ss\r\n').args, ['us"er', 'pa"ss'], "a quote inside an atom is ordinary");
  assert.deepEqual(command("a LOGIN u\\ser p\r\n").args, ["u\\ser", "p"], "a backslash in an atom is ordinary");
});

test("quoted strings: spaces, backslash escapes, no space needed after the closing quote", () => {
  assert.deepEqual(command('a LOGIN "us er" "p w"\r\n').args, ["us er", "p w"]);
  assert.deepEqual(command('a LOGIN "a\\"b" "c\\\\d"\r\n').args, ['a"b', "c\\d"]);
  assert.deepEqual(command('a LOGIN "\\x\\y" ""\r\n').args, ["xy", ""], "\\x -> x, empty quoted string");
  assert.deepEqual(command('a LOGIN "user"pass\r\n').args, ["user", "pass"]);
  assert.equal(invalid('a LOGIN "us\\\r\n').tag, "a", "a backslash before CR");
  assert.equal(invalid('a LOGIN "us\\\n').tag, "a", "a backslash before LF");
});

test("an unclosed quote ends at CRLF and stays open for the next command (nginx's quirk)", () => {
  const parser = new ImapParser();
  const { results } = parseAll('a LOGIN "user\r\nb LOGIN user pass\r\nc LOGIN "x" y\r\nd LOGIN u p\r\n', parser);
  const args = results.map((r) => (r.kind === "command" ? r.args.map((a) => a.toString()) : r.kind));
  assert.deepEqual(args, [["user"], ["user pass"], ["x", "y"], ["u", "p"]]);
});

test("an error clears an open quote", () => {
  const { results } = parseAll('a LOGIN "user\r\n!\r\nb LOGIN user pass\r\n');
  assert.deepEqual(
    results.map((r) => r.kind),
    ["command", "invalid", "command"],
  );
  const last = results[2]!;
  assert.ok(last.kind === "command");
  assert.deepEqual(
    last.args.map((a) => a.toString()),
    ["user", "pass"],
  );
});

test("synchronizing literals ask for continuation; non-synchronizing ones do not", () => {
  const p = new ImapParser();
  const input = b("a LOGIN {4}\r\nuser {4+}\r\npass\r\n");
  assert.deepEqual(p.feed(input.subarray(0, 13)), { kind: "literal" });
  assert.deepEqual(p.feed(input.subarray(0, 13)), { kind: "incomplete" });
  const r = p.feed(input);
  assert.ok(r.kind === "command");
  assert.deepEqual(
    r.args.map((a) => a.toString()),
    ["user", "pass"],
  );
  assert.equal(r.length, input.length);
  const { results, literals } = parseAll("a LOGIN {4}\r\nuser {4}\r\npass\r\n");
  assert.equal(literals, 2);
  assert.ok(results[0]!.kind === "command");
});

test("literal data is taken raw, CR and LF included, and multiple CRs may precede the LF", () => {
  assert.deepEqual(command('a LOGIN {5+}\r\nu "\r\n {2+}\r\r\nxy\r\n').args, ['u "\r\n', "xy"]);
});

test("Postern: {0} is an empty literal (RFC 3501); nginx took one byte of what follows", () => {
  assert.deepEqual(command("a LOGIN {0+}\r\n pass\r\n").args, ["", "pass"]);
  assert.deepEqual(command("a LOGIN user {0+}\r\n\r\n").args, ["user", ""]);
  const { results, literals } = parseAll("a LOGIN user {0}\r\n\r\n");
  assert.equal(literals, 1, "a synchronizing {0} still gets + OK");
  const first = results[0];
  assert.ok(first?.kind === "command");
  assert.deepEqual(first.args.map(String), ["user", ""]);
});

test("Postern: a literal needs digits: {} and {+} are syntax errors (nginx read them as {0})", () => {
  assert.equal(invalid("a LOGIN {}\r\nE pass\r\n").tag, "a");
  assert.equal(invalid("a LOGIN {+}\r\nX pass\r\n").tag, "a");
});

test("latest nginx: after literal data only SP or CRLF may follow", () => {
  assert.equal(invalid("a LOGIN {4+}\r\nuserX pass\r\n").tag, "a", "1.22.1 swallowed the X");
  assert.equal(invalid("a LOGIN {4+}\r\nuser{4+}\r\npass\r\n").tag, "a", "1.22.1 accepted a second literal right away");
  assert.deepEqual(command("a LOGIN {4+}\r\nuser\n").args, ["user"]);
});

test("bad literal headers are invalid", () => {
  assert.equal(invalid("a LOGIN {4x}\r\n").tag, "a");
  assert.equal(invalid("a LOGIN {4+x\r\n").tag, "a");
  assert.equal(invalid("a LOGIN {4}x\r\n").tag, "a");
  assert.equal(invalid("a LOGIN {-1}\r\n").tag, "a");
  assert.equal(invalid("a NOOP a b c {1+}\r\n").tag, "a", "a literal as the fourth argument");
});

test("Postern: a literal whose data cannot fit in the buffer is a syntax error (nginx's length wrapped at 2^64)", () => {
  assert.equal(invalid("a LOGIN {18446744073709551620}\r\n").tag, "a");
  assert.equal(invalid("a LOGIN {99999999999999999999+}\r\n").tag, "a");
  assert.equal(invalid("a LOGIN {1844674407370955161+}\r\nabc\r\n").tag, "a", "nginx: never completes");
  assert.equal(invalid("a LOGIN {18446744073709551619+}\r\nabc x\r\n").tag, "a", "nginx: wraps to 3");
  assert.equal(invalid("a LOGIN {18446744073709551616+}\r\nY x\r\n").tag, "a", "nginx: wraps to {0}");
  // the buffer's last byte is for the LF after the data
  const size = 32;
  const head = (n: number): Buffer => b(`a LOGIN {${n}}\r\n`); // two digits: the data starts at byte 14
  assert.equal(new ImapParser(size).feed(head(size - 14 - 1)).kind, "literal");
  assert.equal(new ImapParser(size).feed(head(size - 14)).kind, "invalid");
});

test("an invalid line ending in +} closes the connection", () => {
  assert.equal(invalid("a FOO {3+}\r\n").quit, true);
  assert.equal(invalid("a FOO {3+}\n").quit, true);
  assert.equal(invalid("a NOOP 1 2 3 {3+}\r\n").quit, true);
  assert.equal(invalid("a FOO {3}\r\n").quit, false);
  assert.equal(invalid("a FOO\r\n").quit, false);
  // only past the first 4 bytes of nginx's buffer: "+}\r\n" alone is short enough
  assert.equal(invalid("+}\r\n").quit, false);
  assert.equal(invalid("x+}\r\n").quit, false);
  assert.equal(invalid("xx+}\r\n").quit, true);
  // ... counted from the buffer start, so a pipelined "+}\r\n" after another command does close
  const { results } = parseAll("a NOOP\r\n+}\r\n");
  assert.deepEqual(
    results.map((r) => (r.kind === "invalid" ? r.quit : r.kind)),
    ["command", true],
  );
});

test("an invalid command is answered only at its LF", () => {
  const p = new ImapParser();
  assert.equal(p.feed(b("a FOO bar")).kind, "incomplete");
  assert.equal(p.partialTag, "a");
  const r = p.feed(b("a FOO bar baz\r\nb NOOP\r\n"));
  assert.deepEqual(r, { kind: "invalid", length: 15, tag: "a", quit: false });
});

test("after awaitResponse the next line is a bare SASL response", () => {
  const p = new ImapParser();
  p.awaitResponse();
  const r = p.feed(b("dGVzdA== more\r\n"));
  assert.ok(r.kind === "response");
  assert.deepEqual(
    r.args.map((a) => a.toString()),
    ["dGVzdA==", "more"],
  );
  assert.equal(p.awaitingResponse, false);
  p.awaitResponse();
  const empty = p.feed(b("\r\n"));
  assert.ok(empty.kind === "response");
  assert.deepEqual(
    empty.args.map((a) => a.toString()),
    [""],
  );
  p.awaitResponse();
  const quoted = p.feed(b('"abc"\r\n'));
  assert.ok(quoted.kind === "response");
  assert.deepEqual(
    quoted.args.map((a) => a.toString()),
    ['"abc"'],
    "a leading quote is ordinary in a response",
  );
  p.awaitResponse();
  assert.equal(p.feed(b("a b c d\r\n")).kind, "invalid", "four words");
});

/** A readable summary of everything a parse produced, for comparisons. */
function summary(input: Buffer, chunks: number[]): string {
  const parser = new ImapParser();
  const out: string[] = [];
  let start = 0;
  let end = 0;
  const cuts = [...chunks.filter((c) => c > 0 && c < input.length).sort((x, y) => x - y), input.length];
  for (const cut of cuts) {
    end = Math.max(end, cut);
    for (;;) {
      if (start >= end) break;
      const r = parser.feed(input.subarray(start, end), start);
      if (r.kind === "incomplete") break;
      if (r.kind === "literal") {
        out.push("+");
        continue;
      }
      out.push(
        JSON.stringify(
          r.kind === "command"
            ? [r.kind, r.length, r.tag, r.name, r.args.map((a) => a.toString("latin1"))]
            : r.kind === "invalid"
              ? [r.kind, r.length, r.tag, r.quit]
              : [r.kind, r.length],
        ),
      );
      start += r.length;
    }
  }
  return out.join("\n");
}

const imapish = fc
  .array(fc.constantFrom("a", "1", " ", "\r", "\n", "\r\n", '"', "\\", "{", "}", "+", "0", "3", "{2}\r\n", "{1+}\r\n", "NOOP", "LOGIN", "x", "\u00ff", "\t"), {
    maxLength: 60,
  })
  .map((parts) => b(parts.join("")));

test("property: arbitrary bytes never throw, and any split parses as the whole", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        imapish,
        fc.uint8Array({ maxLength: 80 }).map((u) => Buffer.from(u)),
      ),
      fc.array(fc.nat(100), { maxLength: 6 }),
      (input, cuts) => {
        assert.equal(summary(input, cuts), summary(input, []));
      },
    ),
    { numRuns: 2000 },
  );
});

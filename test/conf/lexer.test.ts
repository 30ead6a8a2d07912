import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ConfError } from "../../src/core/errors.js";
import { ConfLexer, type Statement } from "../../src/conf/lexer.js";

function all(text: string): Statement[] {
  const lx = new ConfLexer(text, "/t.conf");
  const out: Statement[] = [];
  for (;;) {
    const st = lx.next();
    out.push(st);
    if (st.kind === "end") return out;
  }
}

function words(text: string): string[][] {
  return all(text).flatMap((s) => (s.kind === "directive" ? [s.words] : []));
}

function errorOf(text: string): string {
  try {
    all(text);
  } catch (e) {
    assert.ok(e instanceof ConfError);
    return e.text;
  }
  assert.fail("no error");
}

test("words, quotes and escapes are read as nginx reads them", () => {
  assert.deepEqual(words("a b c;"), [["a", "b", "c"]]);
  assert.deepEqual(words(`x "a b" 'c d' "";`), [["x", "a b", "c d", ""]]);
  assert.deepEqual(words(String.raw`x "q\"q" 'q\'q' a\\b \t\r\n \x;`), [["x", 'q"q', "q'q", "a\\b", "\t\r\n", "\\x"]]);
  assert.deepEqual(words("x a\\;b;"), [["x", "a\\;b"]], "an escaped ; does not end the directive and keeps its backslash");
  assert.deepEqual(words("x a#b; # comment ;\ny;"), [["x", "a#b"], ["y"]], "# starts a comment only where a word could start");
  assert.deepEqual(words("x a}b;"), [["x", "a}b"]], "} inside a word is part of it");
  assert.deepEqual(words("x ${a};"), [["x", "${a}"]], "${ does not open a block");
});

test("blocks and their ends are reported with the line of { or }", () => {
  const st = all("mail {\n  server {\n  }\n}\n");
  assert.deepEqual(
    st.map((s) => [s.kind, s.location.line]),
    [["directive", 1], ["directive", 2], ["blockEnd", 3], ["blockEnd", 4], ["end", 5]],
  );
  const first = st[0]!;
  assert.ok(first.kind === "directive" && first.opensBlock);
});

test("syntax errors carry nginx's text and the line where they were found", () => {
  assert.equal(errorOf("a;\n;"), 'unexpected ";" in /t.conf:2');
  assert.equal(errorOf("{"), 'unexpected "{" in /t.conf:1');
  assert.equal(errorOf("a b }"), 'unexpected "}" in /t.conf:1');
  assert.equal(errorOf('a "b"c;'), 'unexpected "c" in /t.conf:1');
  assert.equal(errorOf("a b\n"), 'unexpected end of file, expecting ";" or "}" in /t.conf:2');
  assert.equal(errorOf('a "b\n\n'), 'unexpected end of file, expecting ";" or "}" in /t.conf:3');
});

test("-g parameters report 'in command line'", () => {
  const lx = new ConfLexer("daemon off", "", { commandLine: true });
  assert.throws(() => lx.next(), (e: unknown) => e instanceof ConfError && e.text === 'unexpected end of parameter, expecting ";" in command line');
});

test("arbitrary input never throws anything but a located ConfError", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      try {
        all(Buffer.from(bytes).toString("latin1"));
      } catch (e) {
        assert.ok(e instanceof ConfError && e.location !== undefined);
      }
    }),
    { numRuns: 2000 },
  );
});

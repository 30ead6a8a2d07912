import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { SmtpParser, type SmtpParseMode, type SmtpParseResult } from "../../../src/mail/smtp/parser.js";

const b = (s: string) => Buffer.from(s, "latin1");

/** A plain view of a result, for deep equality. */
function view(r: SmtpParseResult): unknown {
  switch (r.kind) {
    case "incomplete":
      return { kind: r.kind };
    case "invalid":
      return { kind: r.kind, consumed: r.consumed };
    case "command":
      return { kind: r.kind, verb: r.verb, args: r.args.map((a) => a.toString("latin1")), line: r.line.toString("latin1"), consumed: r.consumed };
    case "response":
      return { kind: r.kind, args: r.args.map((a) => a.toString("latin1")), consumed: r.consumed };
  }
}

function parse(text: string, mode: SmtpParseMode = "command"): unknown {
  const p = new SmtpParser();
  p.setMode(mode);
  return view(p.parse(b(text)));
}

test("the command words nginx knows, case-insensitive", () => {
  for (const verb of ["HELO", "EHLO", "QUIT", "AUTH", "NOOP", "MAIL", "RSET", "RCPT", "VRFY", "EXPN", "HELP", "STARTTLS"]) {
    assert.deepEqual(parse(`${verb}\r\n`), { kind: "command", verb, args: [], line: verb, consumed: verb.length + 2 });
    const lower = verb.toLowerCase();
    assert.deepEqual(parse(`${lower}\r\n`), { kind: "command", verb, args: [], line: lower, consumed: verb.length + 2 });
  }
  assert.deepEqual(parse("StartTls\n"), { kind: "command", verb: "STARTTLS", args: [], line: "StartTls", consumed: 9 });
});

test("anything else is a syntax error, skipped through its LF", () => {
  for (const line of [
    "DATA\r\n",
    "BDAT 10\r\n",
    "XCLIENT NAME=x\r\n",
    "HELOO x\r\n",
    "HEL x\r\n",
    "STARTTL\r\n",
    "\r\n",
    "\n",
    " HELO x\r\n",
    "HE1O x\r\n",
    "HELO\tx\r\n",
    "NOOP\rX\r\n",
  ]) {
    assert.deepEqual(parse(line), { kind: "invalid", consumed: line.length }, JSON.stringify(line));
  }
  assert.deepEqual(parse("DATA\r\nNOOP\r\n"), { kind: "invalid", consumed: 6 }, "only the bad line is skipped");
  assert.deepEqual(parse("DATA and more"), { kind: "incomplete" }, "invalid, but only answered at its LF");
});

test("arguments: separated by spaces, TAB is not a separator, trailing spaces fine", () => {
  assert.deepEqual(parse("HELO  a.example   \r\n"), { kind: "command", verb: "HELO", args: ["a.example"], line: "HELO  a.example", consumed: 20 });
  assert.deepEqual(parse("HELO a\tb\n"), { kind: "command", verb: "HELO", args: ["a\tb"], line: "HELO a\tb", consumed: 9 });
  assert.deepEqual(parse("NOOP \r\n"), { kind: "command", verb: "NOOP", args: [], line: "NOOP", consumed: 7 });
  assert.deepEqual(parse("HELO a\rb\r\n"), { kind: "invalid", consumed: 10 }, "CR not followed by LF");
});

test("the raw MAIL/RCPT line: command word to last argument, case kept", () => {
  assert.deepEqual(parse("mail FROM:<a@example.com>  SIZE=10  \r\n"), {
    kind: "command",
    verb: "MAIL",
    args: ["FROM:<a@example.com>", "SIZE=10"],
    line: "mail FROM:<a@example.com>  SIZE=10",
    consumed: 38,
  });
  assert.deepEqual(parse("RCPT TO:<b@example.com>\n"), {
    kind: "command",
    verb: "RCPT",
    args: ["TO:<b@example.com>"],
    line: "RCPT TO:<b@example.com>",
    consumed: 24,
  });
});

test("up to 11 arguments; starting a 12th is a syntax error", () => {
  const eleven = Array.from({ length: 11 }, (_, i) => `a${i}`);
  const r = parse(`MAIL ${eleven.join(" ")}\r\n`) as { args: string[] };
  assert.deepEqual(r.args, eleven);
  assert.deepEqual(parse(`MAIL ${eleven.join(" ")} a11\r\n`), { kind: "invalid", consumed: `MAIL ${eleven.join(" ")} a11\r\n`.length });
  assert.equal((parse(`MAIL ${eleven.join(" ")}    \r\n`) as { kind: string }).kind, "command", "trailing spaces after the 11th are fine");
});

test("response mode: the whole line is arguments, a leading space gives an empty first one", () => {
  assert.deepEqual(parse("dGVzdA==\r\n", "response"), { kind: "response", args: ["dGVzdA=="], consumed: 10 });
  assert.deepEqual(parse("\r\n", "response"), { kind: "response", args: [""], consumed: 2 });
  assert.deepEqual(parse(" dGVzdA==\r\n", "response"), { kind: "response", args: ["", "dGVzdA=="], consumed: 11 });
  assert.deepEqual(parse("QUIT\r\n", "response"), { kind: "response", args: ["QUIT"], consumed: 6 }, "no command words in a SASL exchange");
  assert.deepEqual(parse("a\rb\n", "response"), { kind: "invalid", consumed: 4 });
});

test("after AUTH the parser reads a response line; after a syntax error, a command", () => {
  const p = new SmtpParser();
  assert.equal((p.parse(b("AUTH LOGIN\r\n")) as { verb: string }).verb, "AUTH");
  assert.equal(p.mode, "response");
  assert.deepEqual(view(p.parse(b("dXNlcg==\r\n"))), { kind: "response", args: ["dXNlcg=="], consumed: 10 });
  assert.equal(p.mode, "response", "still in the SASL exchange");
  assert.equal(p.parse(b("x\ry\n")).kind, "invalid");
  assert.equal(p.mode, "command");
  assert.equal((p.parse(b("NOOP\r\n")) as { verb: string }).verb, "NOOP");
  assert.equal(p.mode, "command");
});

test("incomplete lines resume where they stopped", () => {
  const p = new SmtpParser();
  assert.deepEqual(view(p.parse(b("HE"))), { kind: "incomplete" });
  assert.deepEqual(view(p.parse(b("HELO x"))), { kind: "incomplete" });
  assert.deepEqual(view(p.parse(b("HELO x\r"))), { kind: "incomplete" });
  assert.deepEqual(view(p.parse(b("HELO x\r\nNOOP"))), { kind: "command", verb: "HELO", args: ["x"], line: "HELO x", consumed: 8 });
  assert.deepEqual(view(p.parse(b("NOOP"))), { kind: "incomplete" });
  assert.deepEqual(view(p.parse(b("NOOP\n"))), { kind: "command", verb: "NOOP", args: [], line: "NOOP", consumed: 5 });
});

/** Feeds `input` in the given pieces, as the session's buffer grows, collecting results. */
function parseAll(input: Buffer, cuts: number[], mode: SmtpParseMode): unknown[] {
  const p = new SmtpParser();
  p.setMode(mode);
  const results: unknown[] = [];
  let start = 0;
  const ends = [...new Set(cuts.filter((c) => c > 0 && c < input.length)), input.length].sort((x, y) => x - y);
  for (const end of ends) {
    for (;;) {
      const r = p.parse(input.subarray(start, end));
      if (r.kind === "incomplete") break;
      results.push(view(r));
      start += r.consumed;
    }
  }
  return results;
}

test("property: any bytes, split anywhere, never throw and parse as the whole", () => {
  const bytes = fc
    .oneof(
      fc.uint8Array({ maxLength: 200 }),
      fc
        .array(
          fc.constantFrom("HELO ", "EHLO", "AUTH ", "PLAIN", "LOGIN ", "MAIL FROM:<a> ", "RCPT", " ", "\r", "\n", "\r\n", "x", "dGVzdA==", "DATA", "\t", "\0"),
          { maxLength: 40 },
        )
        .map((parts) => Buffer.from(parts.join(""), "latin1")),
    )
    .map((u) => Buffer.from(u));
  fc.assert(
    fc.property(bytes, fc.array(fc.nat(250), { maxLength: 8 }), fc.constantFrom<SmtpParseMode>("command", "response"), (input, cuts, mode) => {
      const whole = parseAll(input, [], mode);
      const split = parseAll(input, cuts, mode);
      assert.deepEqual(split, whole);
      const consumed = whole.reduce<number>((n, r) => n + (r as { consumed: number }).consumed, 0);
      assert.ok(consumed <= input.length);
      // every complete line (through an LF) is consumed
      assert.equal(input.subarray(consumed).includes(0x0a), false);
    }),
    { numRuns: 500 },
  );
});

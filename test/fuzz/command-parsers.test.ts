/**
 * Fuzzing the IMAP, POP3 and SMTP command parsers with mutated real
 * transcripts cut into arbitrary reads, driven the way the front ends drive
 * them (a growing buffer of unconsumed bytes). Properties: no exception; every
 * result consumes between 1 byte and what is buffered; a complete line is
 * never left unanswered (POP3, SMTP); and the split does not matter: any cut
 * into reads gives exactly the results of one read.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ImapParser, type ImapParse } from "../../src/mail/imap/parser.js";
import { Pop3Parser, type Pop3LineMode } from "../../src/mail/pop3/parser.js";
import { SmtpParser } from "../../src/mail/smtp/parser.js";
import { budget, mutatedStream, splitStream } from "./fuzz-support.js";

const IMAP_CORPUS = [
  "a1 CAPABILITY\r\n",
  "a2 LOGIN user secret\r\n",
  'a3 LOGIN "us er" "pa\\"ss"\r\n',
  "a4 LOGIN {4}\r\nuser {6}\r\nsecret\r\n",
  "a5 LOGIN {4+}\r\nuser {6+}\r\nsecret\r\n",
  "a6 AUTHENTICATE PLAIN\r\n",
  "AHVzZXIAc2VjcmV0\r\n",
  "a7 AUTHENTICATE PLAIN AHVzZXIAc2VjcmV0\r\n",
  "a8 AUTHENTICATE LOGIN\r\n",
  "dXNlcg==\r\n",
  "a9 STARTTLS\r\n",
  "b1 NOOP\r\n",
  "b2 LOGOUT\r\n",
  'b3 ID ("name" "x")\r\n',
  "b4 LOGIN {0}\r\n\r\n",
  "* BAD\r\n",
  "\r\n",
  "b5 AUTHENTICATE CRAM-MD5\r\n",
  "dXNlciA0ZTk4ZmZmYjBiZjQ3ZGY4ZGE5Yzg4ZWU4ZmE3ZTVhZQ==\r\n",
];
const POP3_CORPUS = [
  "CAPA\r\n",
  "USER user\r\n",
  "PASS sec ret\r\n",
  "APOP user 0123456789abcdef0123456789abcdef\r\n",
  "AUTH PLAIN\r\n",
  "AHVzZXIAc2VjcmV0\r\n",
  "AUTH LOGIN dXNlcg==\r\n",
  "c2VjcmV0\r\n",
  "AUTH CRAM-MD5\r\n",
  "STLS\r\n",
  "NOOP\r\n",
  "QUIT\r\n",
  "AUTH\r\n",
  "*\r\n",
  "\r\n",
  "RETR 1\n",
];
const SMTP_CORPUS = [
  "EHLO client.example\r\n",
  "HELO x\r\n",
  "AUTH PLAIN AHVzZXIAc2VjcmV0\r\n",
  "AUTH LOGIN\r\n",
  "dXNlcg==\r\n",
  "c2VjcmV0\r\n",
  "AUTH CRAM-MD5\r\n",
  "MAIL FROM:<a@example.com> SIZE=100\r\n",
  "RCPT TO:<b@example.com>\r\n",
  "DATA\r\n",
  "RSET\r\n",
  "NOOP\r\n",
  "VRFY x\r\n",
  "STARTTLS\r\n",
  "QUIT\r\n",
  "*\r\n",
  "\r\n",
  "EHLO a b c d e f g h i j k l m n\r\n",
];

/** A result as comparable text (arguments in hex so every byte counts). */
function show(kind: string, parts: Array<string | Buffer | number | boolean | undefined>): string {
  return [kind, ...parts.map((p) => (Buffer.isBuffer(p) ? `<${p.toString("hex")}>` : String(p)))].join(" ");
}

/** Checks a consumed length against the buffer. */
function checkLength(length: number, buffered: number): void {
  assert.ok(Number.isInteger(length) && length >= 1 && length <= buffered, `consumed ${length} of ${buffered} buffered bytes`);
}

function imapShow(r: Exclude<ImapParse, { kind: "incomplete" } | { kind: "literal" }>): string {
  switch (r.kind) {
    case "command":
      return show("command", [r.length, r.tag, r.name, ...r.args]);
    case "response":
      return show("response", [r.length, ...r.args]);
    case "invalid":
      return show("invalid", [r.length, r.tag, r.quit]);
  }
}

/** Drives an ImapParser as the IMAP front end does; returns the results and the unconsumed tail length. */
function runImap(chunks: readonly Buffer[]): string[] {
  const parser = new ImapParser();
  let buffer = Buffer.alloc(0);
  const out: string[] = [];
  for (const chunk of chunks) {
    buffer = Buffer.concat([buffer, chunk]);
    let literals = 0;
    for (;;) {
      const r = parser.feed(buffer);
      if (r.kind === "incomplete") break;
      if (r.kind === "literal") {
        // each literal announcement moves the scan forward by at least one byte
        assert.ok(++literals <= buffer.length, "literal announced without progress");
        out.push("literal");
        continue;
      }
      literals = 0;
      checkLength(r.length, buffer.length);
      const argBytes = (r.kind === "invalid" ? [] : r.args).reduce((n, a) => n + a.length, 0);
      assert.ok(argBytes <= r.length, "arguments longer than the command");
      out.push(imapShow(r));
      // AUTHENTICATE without an initial response waits for a SASL line, as the handler arranges.
      if (r.kind === "command" && r.name === "authenticate" && r.args.length === 1) parser.awaitResponse();
      buffer = buffer.subarray(r.length);
    }
  }
  out.push(`rest ${buffer.length}`);
  return out;
}

function runPop3(chunks: readonly Buffer[]): string[] {
  const parser = new Pop3Parser();
  let buffer = Buffer.alloc(0);
  let mode: Pop3LineMode = "command";
  const out: string[] = [];
  for (const chunk of chunks) {
    buffer = Buffer.concat([buffer, chunk]);
    for (;;) {
      const r = parser.next(buffer, mode);
      if (r.kind === "incomplete") {
        assert.equal(buffer.indexOf(0x0a), -1, "a complete line was left unparsed");
        break;
      }
      checkLength(r.length, buffer.length);
      assert.equal(buffer[r.length - 1], 0x0a, "a POP3 result must end at a LF");
      if (r.kind === "command") {
        assert.ok(r.args.length <= 3 || r.verb === "USER" || r.verb === "PASS");
        out.push(show("command", [r.length, r.verb, ...r.args]));
        mode = r.verb === "AUTH" && r.args.length === 1 ? "saslResponse" : "command";
      } else if (r.kind === "saslResponse") {
        out.push(show("sasl", [r.length, ...r.args]));
        mode = "command";
      } else {
        out.push(show("invalid", [r.length]));
        mode = "command";
      }
      buffer = buffer.subarray(r.length);
    }
  }
  out.push(`rest ${buffer.length}`);
  return out;
}

function runSmtp(chunks: readonly Buffer[]): string[] {
  const parser = new SmtpParser();
  let buffer = Buffer.alloc(0);
  const out: string[] = [];
  for (const chunk of chunks) {
    buffer = Buffer.concat([buffer, chunk]);
    for (;;) {
      const r = parser.parse(buffer);
      if (r.kind === "incomplete") {
        assert.equal(buffer.indexOf(0x0a), -1, "a complete line was left unparsed");
        break;
      }
      checkLength(r.consumed, buffer.length);
      assert.equal(buffer[r.consumed - 1], 0x0a, "an SMTP result must end at a LF");
      if (r.kind === "command") {
        assert.ok(r.args.length <= 11, `${r.args.length} arguments`);
        assert.ok(r.line.length < r.consumed);
        out.push(show("command", [r.consumed, r.verb, r.line, ...r.args]));
      } else if (r.kind === "response") {
        out.push(show("response", [r.consumed, ...r.args]));
        // The SASL exchange ends after one answer here; the session sets the mode the same way.
        parser.setMode("command");
      } else {
        out.push(show("invalid", [r.consumed]));
      }
      buffer = buffer.subarray(r.consumed);
    }
  }
  out.push(`rest ${buffer.length}`);
  return out;
}

for (const [name, corpus, run] of [
  ["IMAP", IMAP_CORPUS, runImap],
  ["POP3", POP3_CORPUS, runPop3],
  ["SMTP", SMTP_CORPUS, runSmtp],
] as const) {
  test(`${name} parser: mutated transcripts in arbitrary reads parse as the whole, without exceptions`, () => {
    let runs = 0;
    fc.assert(
      fc.property(splitStream(mutatedStream(corpus)), ({ whole, chunks }) => {
        runs++;
        assert.deepEqual(run(chunks), run([whole]));
      }),
      budget(3),
    );
    assert.ok(runs >= 200, `only ${runs} runs in the budget`);
  });

  test(`${name} parser: byte-at-a-time reads of a long hostile stream`, () => {
    fc.assert(
      fc.property(fc.array(mutatedStream(corpus), { minLength: 4, maxLength: 12 }), (streams) => {
        const whole = Buffer.concat(streams);
        const bytes = [...whole].map((b) => Buffer.from([b]));
        assert.deepEqual(run(bytes), run([whole]));
      }),
      budget(0.5),
    );
  });
}

test("IMAP parser: an enormous literal length neither throws nor consumes what it has not got", () => {
  for (const len of ["18446744073709551615", "18446744073709551616", "99999999999999999999999", "4294967296"]) {
    const out = runImap([Buffer.from(`a LOGIN {${len}}\r\n`, "latin1"), Buffer.alloc(4096, 0x41)]);
    assert.ok(
      out.every((r) => r === "literal" || r.startsWith("invalid") || r.startsWith("rest")),
      out.join("\n"),
    );
  }
});

/**
 * Random input to the demo mail backend's three servers over real sockets:
 * lines built from each protocol's words, literals, quotes, parentheses,
 * numbers and random bytes, in random chunks. No input may reach an
 * exception in a handler (LineConnection.onBug counts them), and every
 * server still greets a new client afterwards.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import fc from "fast-check";
import { type DemoBackend, startDemoBackend } from "../../src/demo/backend.js";
import { LineConnection } from "../../src/demo/connection.js";

const ANY = { host: "127.0.0.1", port: 0 };
let demo: DemoBackend;
const bugs: unknown[] = [];
const reportBug = LineConnection.onBug;

before(async () => {
  LineConnection.onBug = (e) => bugs.push(e);
  demo = await startDemoBackend({ imap: ANY, pop3: ANY, smtp: ANY, user: "demo@localhost" }, () => {});
});

after(async () => {
  LineConnection.onBug = reportBug;
  await demo?.close();
});

/** Sends the chunks, ends the write side and resolves when the server has closed. */
function exchange(port: number, chunks: readonly Buffer[]): Promise<void> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.on("error", () => resolve());
    s.on("close", () => resolve());
    s.resume();
    s.on("connect", () => {
      for (const c of chunks) s.write(c);
      s.end();
    });
  });
}

const WORDS: Readonly<Record<"imap" | "pop3" | "smtp", readonly string[]>> = {
  imap: [
    "a",
    "*",
    "LOGIN",
    "demo@localhost",
    "x",
    "SELECT",
    "EXAMINE",
    "INBOX",
    "FETCH",
    "UID",
    "1",
    "*",
    "1:*",
    "0",
    "4294967295",
    "2,3:4",
    "BODY[]",
    "BODY.PEEK[HEADER]",
    "BODY[TEXT]<0.10>",
    "RFC822",
    "FLAGS",
    "(",
    ")",
    '"',
    '"q\\""',
    "{3}",
    "{2+}",
    "{0}",
    "[",
    "]",
    "LIST",
    '""',
    "%",
    "STATUS",
    "(MESSAGES",
    "UNSEEN)",
    "NOOP",
    "CLOSE",
    "UNSELECT",
    "CAPABILITY",
    "LOGOUT",
    "\\",
  ],
  pop3: ["USER", "PASS", "demo@localhost", "x", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP", "CAPA", "QUIT", "1", "0", "-1", "99999999", "2"],
  smtp: [
    "EHLO",
    "HELO",
    "XCLIENT",
    "ADDR=1.2.3.4",
    "MAIL",
    "FROM:<a@b>",
    "FROM:<>",
    "RCPT",
    "TO:<demo@localhost>",
    "TO:<x@y>",
    "DATA",
    ".",
    "..",
    "RSET",
    "NOOP",
    "VRFY",
    "QUIT",
    "SIZE=5",
    "SIZE=99999999999",
  ],
};

function lines(words: readonly string[]): fc.Arbitrary<Buffer> {
  const word = fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...words) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 12 }).map((b) => Buffer.from(b).toString("latin1")) },
  );
  const line = fc.tuple(fc.array(word, { maxLength: 8 }), fc.constantFrom("\r\n", "\n", "", "\r\n\r\n")).map(([w, end]) => w.join(" ") + end);
  return fc.array(line, { maxLength: 12 }).map((l) => Buffer.from(l.join(""), "latin1"));
}

/** The stream cut into 1 to 4 chunks at random places. */
function chunked(stream: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer[]> {
  return stream.chain((whole) =>
    fc.array(fc.nat({ max: whole.length }), { maxLength: 3 }).map((cuts) => {
      const at = [0, ...cuts.sort((a, b) => a - b), whole.length];
      return at.slice(1).map((end, i) => whole.subarray(at[i], end));
    }),
  );
}

for (const protocol of ["imap", "pop3", "smtp"] as const) {
  test(`fuzz: random ${protocol.toUpperCase()} input never reaches an exception, and the server goes on`, async () => {
    const port = demo.ports[protocol];
    await fc.assert(
      fc.asyncProperty(chunked(lines(WORDS[protocol])), async (chunks) => {
        await exchange(port, chunks);
        assert.deepEqual(bugs, []);
      }),
      { numRuns: 150 },
    );
    await exchange(port, []);
    assert.deepEqual(bugs, []);
  });
}

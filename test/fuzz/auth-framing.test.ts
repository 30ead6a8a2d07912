/**
 * Fuzzing the keep-alive framing of auth_http answers (framing.ts):
 * mutated HTTP/1.1 answers with Content-Length and chunked bodies, in
 * arbitrary reads. Never an exception; the verdict does not depend on how
 * the bytes were split; a final state never changes; no body over the limit
 * is ever accepted.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { AUTH_BODY_LIMIT, BodyReader, responseFraming, type BodyState } from "../../src/mail/auth-http/framing.js";
import { parseAuthResponse } from "../../src/mail/auth-http/response.js";
import { budget, mutatedStream, splitStream } from "./fuzz-support.js";

const HEAD = "HTTP/1.1 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 143\r\n";
const CORPUS = [
  `${HEAD}Content-Length: 0\r\n\r\n`,
  `${HEAD}Content-Length: 5\r\n\r\nhello`,
  `${HEAD}Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n`,
  `${HEAD}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n`,
  `HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok`,
  `${HEAD}Connection: close\r\nContent-Length: 1\r\n\r\nx`,
];

type Verdict = string;

/** The whole pipeline of keep-alive.ts on a byte stream, chunk by chunk. */
function run(chunks: readonly Buffer[]): Verdict {
  let received = Buffer.alloc(0);
  let body: BodyReader | undefined;
  let last: BodyState | undefined;
  for (const c of chunks) {
    if (body) {
      const s = body.push(c);
      if (last && last.kind !== "more" && last.kind !== "done") assert.deepEqual(s, last, "a final state changed");
      last = s;
      continue;
    }
    received = Buffer.concat([received, c]);
    const head = parseAuthResponse(received.subarray(0, 1024));
    if (head.kind === "incomplete") continue;
    if (head.kind === "error") return `head ${head.error.kind}`;
    const framing = responseFraming(received.subarray(0, head.end));
    if (framing.kind !== "length" && framing.kind !== "chunked") return `framing ${framing.kind}`;
    body = new BodyReader(framing);
    last = body.push(received.subarray(head.end));
  }
  if (!body) return "incomplete";
  return last?.kind === "done" ? `done extra=${last.extra}` : String(last?.kind);
}

test("auth_http keep-alive framing: arbitrary reads of mutated answers give the one-read verdict, never an exception", () => {
  fc.assert(
    fc.property(splitStream(mutatedStream(CORPUS)), ({ whole, chunks }) => {
      assert.equal(run(chunks), run([whole]));
    }),
    budget(3),
  );
});

test("auth_http keep-alive framing: no chunked body over the limit is accepted, however it is cut into chunks", () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: 0x2000 }), { minLength: 1, maxLength: 12 }), (sizes) => {
      const wire = sizes.map((n) => `${n.toString(16)}\r\n${"x".repeat(n)}\r\n`).join("") + "0\r\n\r\n";
      const verdict = run([Buffer.from(`${HEAD}Transfer-Encoding: chunked\r\n\r\n${wire}`, "latin1")]);
      if (wire.length > AUTH_BODY_LIMIT) assert.equal(verdict, "tooLarge");
      else assert.equal(verdict, "done extra=0");
    }),
    budget(2),
  );
});

/**
 * Fuzzing the auth_http response parser: mutated real responses, huge header
 * blocks and noise, in arbitrary reads. Never an exception; the outcome does
 * not depend on how the bytes were split; a block past 1024 bytes is refused;
 * once done or failed the state no longer changes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { AUTH_RESPONSE_LIMIT, AuthResponseParser, parseAuthResponse, type AuthParseState } from "../../src/mail/auth-http/response.js";
import { budget, mutatedStream, splitStream } from "./fuzz-support.js";

const CORPUS = [
  "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 143\r\n\r\n",
  "HTTP/1.0 200 OK\r\nAuth-Status: Invalid login or password\r\nAuth-Wait: 3\r\n\r\n",
  "HTTP/1.1 200 OK\nAuth-Status: OK\nAuth-Server: 10.0.0.1\nAuth-Port: 110\nAuth-User: user\nAuth-Pass: pass\n\n",
  "Auth-Status: Temporary server problem, try again later\r\nAuth-Error-Code: 451 4.3.0\r\nAuth-Wait: 1\r\n\r\n",
  "HTTP/1.0 200 OK\r\nAuth-Status: WAIT\r\nAuth-Wait: 2\r\n\r\nbody after the headers",
  "HTTP/1.0 502 Bad Gateway\r\nServer: x\r\nContent-Length: 0\r\n\r\n",
  `HTTP/1.0 200 OK\r\nX-Big: ${"y".repeat(1100)}\r\n\r\n`,
];

function show(s: AuthParseState): string {
  if (s.kind !== "done") return JSON.stringify(s);
  const r = s.response;
  const hex = (b: Buffer | undefined): string => (b === undefined ? "-" : b.toString("hex"));
  return `done ${hex(r.failure)} ${r.wait} ${hex(r.server)} ${hex(r.port)} ${hex(r.user)} ${hex(r.pass)} ${r.sleep} ${hex(r.errorCode)}`;
}

function run(chunks: readonly Buffer[]): AuthParseState {
  const parser = new AuthResponseParser();
  let last: AuthParseState = parser.state;
  for (const c of chunks) {
    const s = parser.push(c);
    if (last.kind !== "incomplete") assert.equal(show(s), show(last), "a final state changed");
    last = s;
  }
  return last;
}

test("auth_http response: arbitrary reads of mutated responses give the one-read outcome, never an exception", () => {
  fc.assert(
    fc.property(splitStream(mutatedStream(CORPUS)), ({ whole, chunks }) => {
      const split = run(chunks);
      assert.equal(show(split), show(run([whole])));
      // the one-shot parser agrees on anything that fits the buffer
      if (whole.length < AUTH_RESPONSE_LIMIT) assert.equal(show(split), show(parseAuthResponse(whole)));
      if (split.kind === "done") assert.ok(whole.length > 0);
    }),
    budget(3),
  );
});

test("auth_http response: a header block that does not end within 1024 bytes is refused as too large", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 4000 }), fc.integer({ min: 1, max: 97 }), (extra, step) => {
      const head = `HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nX-Pad: ${"p".repeat(AUTH_RESPONSE_LIMIT + extra)}\r\n\r\n`;
      const bytes = Buffer.from(head, "latin1");
      const chunks: Buffer[] = [];
      for (let i = 0; i < bytes.length; i += step) chunks.push(bytes.subarray(i, i + step));
      assert.deepEqual(run(chunks), { kind: "error", error: { kind: "tooLarge" } });
    }),
    budget(1),
  );
});

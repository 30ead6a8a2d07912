import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { AUTH_RESPONSE_LIMIT, AuthResponseParser, parseAuthResponse, responseErrorMessage, type AuthParseState } from "../../../src/mail/auth-http/response.js";

function parse(text: string): AuthParseState {
  return parseAuthResponse(Buffer.from(text, "latin1"));
}

function done(text: string) {
  const s = parse(text);
  assert.equal(s.kind, "done", `${JSON.stringify(text)} -> ${JSON.stringify(s)}`);
  if (s.kind !== "done") throw new Error("unreachable");
  return s.response;
}

function errorKind(text: string): string {
  const s = parse(text);
  assert.equal(s.kind, "error", `${JSON.stringify(text)} -> ${s.kind}`);
  return s.kind === "error" ? s.error.kind : "";
}

const str = (b: Buffer | undefined): string | undefined => b?.toString("latin1");

test("a status line is skipped whatever it says; without HTTP/ parsing starts at byte 0", () => {
  const r = done("HTTP/1.0 500 Oops\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 143\r\n\r\nbody ignored");
  assert.equal(str(r.server), "127.0.0.1");
  assert.equal(str(r.port), "143");
  assert.equal(r.failure, undefined);
  assert.equal(str(done("Auth-Server: 10.0.0.1\n\n").server), "10.0.0.1");
  // "HTTX" is not a status line: "HTTX" itself is parsed as a header name
  assert.equal(errorKind("HTTX/1.0 200\r\n\r\n"), "invalidHeader");
  assert.equal(errorKind("HTTP/1.0 200\rX\n\r\n"), "invalidResponse");
  assert.deepEqual(parse("HTT"), { kind: "incomplete" });
  assert.deepEqual(parse("HTTP/1.0 200 OK\r"), { kind: "incomplete" });
});

test("header names: letters, digits and '-', first letter or digit; other characters are invalid", () => {
  assert.equal(done("X-1a: v\r\n9x: y\r\n\r\n").failure, undefined);
  assert.equal(errorKind("Auth_Status: OK\r\n\r\n"), "invalidHeader");
  assert.equal(errorKind("Auth-Status : OK\r\n\r\n"), "invalidHeader");
  assert.equal(errorKind("-X: a\r\n\r\n"), "invalidHeader");
  assert.equal(errorKind(" X: a\r\n\r\n"), "invalidHeader");
});

test("values: leading spaces skipped, trailing spaces removed, tabs kept; a bare name is an empty header", () => {
  assert.equal(str(done("Auth-Status:   bad  news  \r\n\r\n").failure), "bad  news");
  assert.equal(str(done("Auth-Status:\tx\t\r\n\r\n").failure), "\tx\t");
  // "Auth-Status" alone: empty value, which is an (empty) failure message
  assert.equal(str(done("Auth-Status\r\n\r\n").failure), "");
  assert.equal(str(done("Auth-Status:   \n\n").failure), "");
});

test("LF and CRLF both end lines; a lone CR is an error", () => {
  assert.equal(str(done("Auth-Port: 1\nAuth-Server: ::1\r\n\n").server), "::1");
  assert.equal(errorKind("Auth-Port: 1\rX\r\n\r\n"), "invalidHeader");
  assert.equal(errorKind("Auth-Port\rX\r\n\r\n"), "invalidHeader");
  assert.equal(errorKind("Auth-Port: 1\r\n\rX"), "invalidHeader");
  assert.deepEqual(parse("Auth-Port: 1\r\n\r"), { kind: "incomplete" });
  assert.deepEqual(parse("Auth-Port: 1\r\n"), { kind: "incomplete" });
});

test("names are case-insensitive, values case-sensitive; last wins; an error status sticks", () => {
  const r = done("auth-status: OK\r\nAUTH-SERVER: 1.1.1.1\r\nauth-server: 2.2.2.2\r\nAuth-User: new\r\nAuth-Pass: pw\r\n\r\n");
  assert.equal(r.failure, undefined);
  assert.equal(str(r.server), "2.2.2.2");
  assert.equal(str(r.user), "new");
  assert.equal(str(r.pass), "pw");
  assert.equal(str(done("Auth-Status: ok\r\n\r\n").failure), "ok");
  assert.equal(str(done("Auth-Status: first\r\nAuth-Status: OK\r\n\r\n").failure), "first");
  assert.equal(str(done("Auth-Status: first\r\nAuth-Status: second\r\n\r\n").failure), "second");
  const w = done("Auth-Status: WAIT\r\nAuth-Status: OK\r\n\r\n");
  assert.equal(w.wait, true);
  assert.equal(w.failure, undefined);
  assert.equal(done("Unknown-Header: x\r\n\r\n").wait, false);
});

test("Auth-Wait takes decimal digits only; anything else is ignored", () => {
  assert.equal(done("Auth-Wait: 3\r\n\r\n").sleep, 3);
  assert.equal(done("Auth-Wait: 3\r\nAuth-Wait: x\r\n\r\n").sleep, 3);
  assert.equal(done("Auth-Wait: -1\r\n\r\n").sleep, 0);
  assert.equal(done("Auth-Wait: 1.5\r\n\r\n").sleep, 0);
  assert.equal(done("Auth-Wait:\r\n\r\n").sleep, 0);
  assert.equal(str(done("Auth-Error-Code: 451 4.3.0\r\n\r\n").errorCode), "451 4.3.0");
});

test("the parser is incremental: any split gives the same result", () => {
  const full = Buffer.from("HTTP/1.0 200 OK\r\nAuth-Status: Invalid login\r\nAuth-Wait: 2\r\n\r\n", "latin1");
  const whole = parseAuthResponse(full);
  for (let cut = 0; cut <= full.length; cut++) {
    const p = new AuthResponseParser();
    p.push(full.subarray(0, cut));
    assert.deepEqual(p.push(full.subarray(cut)), whole);
  }
});

test("the header block must fit in 1024 bytes", () => {
  const pad = (n: number): string => `X: ${"a".repeat(n - 5)}\r\n`;
  const fits = Buffer.from(pad(AUTH_RESPONSE_LIMIT - 2) + "\r\n", "latin1");
  assert.equal(fits.length, AUTH_RESPONSE_LIMIT);
  assert.equal(new AuthResponseParser().push(fits).kind, "done");
  const over = Buffer.from(pad(AUTH_RESPONSE_LIMIT - 1) + "\r\n", "latin1");
  const p = new AuthResponseParser();
  for (const b of over) p.push(Buffer.from([b]));
  assert.deepEqual(p.state, { kind: "error", error: { kind: "tooLarge" } });
  assert.equal(responseErrorMessage({ kind: "tooLarge" }, "1.2.3.4:80"), undefined);
  assert.equal(responseErrorMessage({ kind: "invalidHeader" }, "1.2.3.4:80"), "auth http server 1.2.3.4:80 sent invalid header in response");
  assert.equal(responseErrorMessage({ kind: "invalidResponse" }, "1.2.3.4:80"), "auth http server 1.2.3.4:80 sent invalid response");
});

test("arbitrary bytes never throw and always give a typed state", () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }), (chunks) => {
      const p = new AuthResponseParser();
      let state: AuthParseState = p.state;
      let total = 0;
      for (const c of chunks) {
        total += c.length;
        state = p.push(Buffer.from(c));
      }
      assert.ok(["incomplete", "done", "error"].includes(state.kind));
      if (state.kind === "incomplete") assert.ok(total < AUTH_RESPONSE_LIMIT);
      if (state.kind === "error") assert.ok(["invalidResponse", "invalidHeader", "tooLarge"].includes(state.error.kind));
    }),
    { numRuns: 2000 },
  );
});

test("header-like input is parsed consistently with its lines", () => {
  const name = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9-]{0,10}$/);
  const value = fc.stringMatching(/^[!-~]([ -~]{0,20}[!-~])?$/);
  fc.assert(
    fc.property(fc.array(fc.tuple(name, value), { maxLength: 10 }), fc.boolean(), (headers, crlf) => {
      const eol = crlf ? "\r\n" : "\n";
      const r = parse(headers.map(([n, v]) => `${n}: ${v}${eol}`).join("") + eol);
      assert.equal(r.kind, "done");
      if (r.kind !== "done") return;
      const servers = headers.filter(([n]) => n.toLowerCase() === "auth-server");
      assert.equal(str(r.response.server), servers.length ? servers[servers.length - 1]![1] : undefined);
    }),
    { numRuns: 500 },
  );
});

/**
 * The identity lines and checks of src/mail/proxy/login-identity.ts: what
 * the backend is sent (IMAP ID, POP3 XCLIENT), which client fields are
 * dropped, how the ID reply and the POP3 greeting are read, and that the
 * session id is unique and stable. Rules: docs/client-identity.md.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ID_LINE_MAX,
  identityFields,
  imapIdLine,
  imapQuoted,
  offersXclient,
  pop3XclientLine,
  taggedOkAfterUntagged,
  withImapId,
  withPop3Xclient,
} from "../../../src/mail/proxy/login-identity.js";
import { imapLoginSteps } from "../../../src/mail/proxy/login-imap.js";
import { pop3LoginSteps } from "../../../src/mail/proxy/login-pop3.js";
import { UnsafeLineError } from "../../../src/mail/proxy/login-step.js";
import { sessionId } from "../../../src/mail/session-id.js";
import type { SessionInfo } from "../../../src/mail/types.js";

const b = (s: string) => Buffer.from(s, "latin1");

function info(over: Partial<SessionInfo> = {}): SessionInfo {
  return { id: 42, protocol: "imap", clientAddr: "192.0.2.7", clientPort: 40001, localAddr: "10.0.0.1", localPort: 143, unixClient: false, ...over };
}

test("session ids: stable per connection number, distinct across numbers, pid first, at most 40 characters", () => {
  assert.equal(sessionId(7), sessionId(7));
  assert.notEqual(sessionId(7), sessionId(8));
  assert.match(sessionId(2 ** 40), /^[0-9a-z]+\.[0-9a-z]{13}\.[0-9a-z]+$/);
  assert.ok(sessionId(Number.MAX_SAFE_INTEGER).length <= 40);
  assert.equal(sessionId(1).split(".")[0], process.pid.toString(36));
});

test("IMAP ID line: the proxy's fields first, then the client's (x-* dropped), values quoted", () => {
  const line = imapIdLine("a1", info(), [
    { name: "name", value: 'q"b\\' },
    { name: "X-Originating-IP", value: "203.0.113.1" },
    { name: "os", value: undefined },
  ]).toString("latin1");
  assert.equal(
    line,
    `a1 ID ("x-originating-ip" "192.0.2.7" "x-originating-port" "40001" "x-connected-ip" "10.0.0.1" "x-connected-port" "143" ` +
      `"x-session-id" "${sessionId(42)}" "name" "q\\"b\\\\" "os" NIL)\r\n`,
  );
  assert.equal(imapQuoted('\\"'), '"\\\\\\""');
  // a UNIX-socket client has no address: only the session id (and the listen address if it is one)
  assert.deepEqual(
    identityFields(info({ unixClient: true, clientAddr: "unix:", localAddr: "unix:" })).map((f) => f.name),
    ["x-session-id"],
  );
  // never a line break: values that would carry one are refused outright
  assert.throws(() => imapIdLine("a1", info(), [{ name: "name", value: "a\r\nb" }]), UnsafeLineError);
});

test("IMAP ID line: at most 30 pairs in all and at most ID_LINE_MAX octets; whole client pairs left out, in order", () => {
  const many = Array.from({ length: 30 }, (_, i) => ({ name: `f${i}`, value: "v" }));
  const line = imapIdLine("a1", info(), many).toString("latin1");
  // the proxy's 5 pairs and the client's first 25
  assert.match(line, /"x-session-id" "[^"]+" "f0" "v" .* "f24" "v"\)\r\n$/);
  assert.equal(line.includes('"f25"'), false);
  const big = Array.from({ length: 4 }, (_, i) => ({ name: `b${i}`, value: "x".repeat(700) }));
  const capped = imapIdLine("a1", info(), big).toString("latin1");
  assert.ok(capped.length <= ID_LINE_MAX, String(capped.length));
  assert.match(capped, /"b1" "x{700}"\)\r\n$/);
});

test("IMAP ID reply: tagged OK after untagged lines; anything else invalid; waits for the tagged line", () => {
  const check = taggedOkAfterUntagged("a1");
  const verdict = (s: string) => check(b(s), s.length).kind;
  assert.equal(verdict('* ID ("name" "Dovecot")\r\na1 OK ID completed.\r\n'), "ok");
  assert.equal(verdict("a1 OK\r\n"), "ok");
  assert.equal(verdict("* ID NIL\r\n"), "again");
  assert.equal(verdict("* ID NIL\r\n* OK x\r\na1 OK done\r\n"), "ok");
  assert.equal(verdict("a1 BAD unknown command\r\n"), "invalid");
  assert.equal(verdict("a1 OKAY\r\n"), "invalid");
  assert.equal(verdict("a2 OK\r\n"), "invalid");
  assert.deepEqual(check(b("* ID NIL\r\na1 NO\r\n"), 18), { kind: "invalid", from: 10 });
});

test("IMAP steps: greeting -> ID, tagged OK -> LOGIN, then the usual login", () => {
  const steps = withImapId(imapLoginSteps({ tag: "t", login: b("u"), password: b("p") }), "t", info(), []);
  assert.deepEqual(
    steps.map((s) => [s.state, s.next.kind === "send" ? s.next.line.toString("latin1").split(" (")[0] : s.next.kind]),
    [
      ["start", "t ID"],
      ["id", "t LOGIN {1}\r\n"],
      ["login", "u {1}\r\n"],
      ["user", "p\r\n"],
      ["passwd", "done"],
    ],
  );
});

test("POP3: XCLIENT line, greeting codes, and the step skipped when XCLIENT is not offered", () => {
  assert.equal(pop3XclientLine(info()).toString("latin1"), `XCLIENT ADDR=192.0.2.7 PORT=40001 SESSION=${sessionId(42)}\r\n`);
  assert.equal(pop3XclientLine(info({ clientAddr: "2001:db8::5" })).toString("latin1"), `XCLIENT ADDR=2001:db8::5 PORT=40001 SESSION=${sessionId(42)}\r\n`);
  assert.equal(offersXclient(b("+OK [XCLIENT] Dovecot ready.\r\n")), true);
  assert.equal(offersXclient(b("+OK [FOO xclient] ready\r\n")), true);
  assert.equal(offersXclient(b("+OK Dovecot ready. [XCLIENT]\r\n")), false);
  assert.equal(offersXclient(b("+OK [XCLIENTX] ready\r\n")), false);
  const steps = withPop3Xclient(pop3LoginSteps({ login: b("u"), password: b("p") }), info());
  const offered = steps[0]!.decide!(b("+OK [XCLIENT] ready\r\n"));
  assert.equal(offered.next.kind === "send" && offered.next.line.toString("latin1").startsWith("XCLIENT "), true);
  assert.equal(offered.skip, undefined);
  const plain = steps[0]!.decide!(b("+OK ready\r\n"));
  assert.equal(plain.next.kind === "send" && plain.next.line.toString("latin1"), "USER u\r\n");
  assert.equal(plain.skip, 1);
  assert.equal(plain.warn, "upstream does not offer XCLIENT, client address not passed");
});

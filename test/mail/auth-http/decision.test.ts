import { test } from "node:test";
import assert from "node:assert/strict";
import { decide, type DecisionInput } from "../../../src/mail/auth-http/decision.js";
import { parseAuthResponse, type AuthResponse } from "../../../src/mail/auth-http/response.js";
import type { MailProtocolName } from "../../../src/mail/types.js";

function response(text: string): AuthResponse {
  const s = parseAuthResponse(Buffer.from(text.replace(/\n/g, "\r\n") + "\r\n", "latin1"));
  if (s.kind !== "done") throw new Error(`not done: ${s.kind}`);
  return s.response;
}

function input(protocol: MailProtocolName, password: string | null = "secret"): DecisionInput {
  return { protocol, login: Buffer.from("user"), password: password === null ? undefined : Buffer.from(password), peer: "127.0.0.1:9000" };
}

test("a failure status refuses with the message, logged at info; Auth-Wait is passed on", () => {
  const d = decide(response("Auth-Status: Invalid login or password\nAuth-Wait: 3\n"), input("imap"));
  assert.deepEqual(d, {
    kind: "final",
    outcome: { kind: "refused", message: "Invalid login or password", errorCode: undefined, wait: 3 },
    log: { level: "info", message: 'client login failed: "Invalid login or password"' },
  });
  const noWait = decide(response("Auth-Status: No\nAuth-Wait: 0\n"), input("pop3"));
  assert.equal(noWait.kind === "final" && noWait.outcome.kind === "refused" ? noWait.outcome.wait : "x", undefined);
});

test("SMTP refusals carry Auth-Error-Code or 535 5.7.0; an empty SMTP message is no failure", () => {
  const d1 = decide(response("Auth-Status: Temporary problem\nAuth-Error-Code: 451 4.3.0\n"), input("smtp"));
  assert.ok(d1.kind === "final" && d1.outcome.kind === "refused" && d1.outcome.errorCode === "451 4.3.0");
  const d2 = decide(response("Auth-Status: Bad\n"), input("smtp"));
  assert.ok(d2.kind === "final" && d2.outcome.kind === "refused" && d2.outcome.errorCode === "535 5.7.0");
  // nginx keeps the SMTP message itself, so an empty one means "not failed"
  const d3 = decide(response("Auth-Status:\nAuth-Server: 127.0.0.1\nAuth-Port: 25\n"), input("smtp"));
  assert.ok(d3.kind === "final" && d3.outcome.kind === "ok");
  const d4 = decide(response("Auth-Status:\n"), input("pop3"));
  assert.ok(d4.kind === "final" && d4.outcome.kind === "refused" && d4.outcome.message === "");
});

test("WAIT asks for a repeat with Auth-Wait seconds and the response's Auth-User/Auth-Pass", () => {
  const d = decide(response("Auth-Status: WAIT\nAuth-Wait: 2\nAuth-User: other\n"), input("pop3", null));
  assert.equal(d.kind, "again");
  if (d.kind !== "again") return;
  assert.equal(d.sleep, 2);
  assert.equal(d.login.toString(), "other");
  assert.equal(d.password, undefined);
  // a failure wins over WAIT
  assert.equal(decide(response("Auth-Status: WAIT\nAuth-Status: no\n"), input("imap")).kind, "final");
});

test("success needs server and port, and for IMAP/POP3 a password", () => {
  const errorLine = (text: string, inp = input("imap")): string | undefined => {
    const d = decide(response(text), inp);
    assert.ok(d.kind === "final" && d.outcome.kind === "error");
    return d.kind === "final" ? d.log?.message : undefined;
  };
  assert.equal(errorLine("Auth-Status: OK\nAuth-Server: 127.0.0.1\n"), "auth http server 127.0.0.1:9000 did not send server or port");
  assert.equal(errorLine("Auth-Port: 143\n"), "auth http server 127.0.0.1:9000 did not send server or port");
  assert.equal(errorLine("Auth-Server: 127.0.0.1\nAuth-Port: 143\n", input("pop3", null)), "auth http server 127.0.0.1:9000 did not send password");
  assert.equal(errorLine("Auth-Server: localhost\nAuth-Port: 143\n"), 'auth http server 127.0.0.1:9000 sent invalid server address:"localhost"');
  // as nginx's ngx_parse_addr: no IPv6 zone, no octet over 255
  for (const bad of ["fe80::1%eth0", "::1%lo", "10.0.0.256", "1.2.3", "1.2.3.4.5", "0x7f.0.0.1"]) {
    assert.equal(errorLine(`Auth-Server: ${bad}\nAuth-Port: 143\n`), `auth http server 127.0.0.1:9000 sent invalid server address:"${bad}"`);
  }
  for (const port of ["0", "65536", "x", "-1"]) {
    assert.equal(errorLine(`Auth-Server: 127.0.0.1\nAuth-Port: ${port}\n`), `auth http server 127.0.0.1:9000 sent invalid server port:"${port}"`);
  }
});

test("success without Auth-Status proxies, with the response's login and password", () => {
  const d = decide(response("Auth-Server: ::1\nAuth-Port: 65535\nAuth-Pass: clear\n"), input("pop3", null));
  assert.deepEqual(d, {
    kind: "final",
    outcome: { kind: "ok", backend: { host: "::1", port: 65535 }, login: Buffer.from("user"), password: Buffer.from("clear") },
  });
  // octets with leading zeros are decimal, as nginx's ngx_inet_addr reads them
  const zeros = decide(response("Auth-Server: 010.000.0.01\nAuth-Port: 143\nAuth-Pass: p\n"), input("pop3", null));
  assert.ok(zeros.kind === "final" && zeros.outcome.kind === "ok" && zeros.outcome.backend.host === "10.0.0.1");
  // SMTP needs no password
  const s = decide(response("Auth-Status: OK\nAuth-Server: 10.0.0.1\nAuth-Port: 25\n"), input("smtp", null));
  assert.ok(s.kind === "final" && s.outcome.kind === "ok" && s.outcome.password.length === 0);
});

import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeBase64Strict, makeSalt, saslCramMd5, saslPlain } from "../../src/mail/sasl.js";

const b = (s: string) => Buffer.from(s, "latin1");

test("base64 decoding follows nginx's rules", () => {
  assert.equal(decodeBase64Strict(b("dGVzdA=="))?.toString(), "test");
  assert.equal(decodeBase64Strict(b("dGVzdA"))?.toString(), "test", "missing padding is accepted");
  assert.equal(decodeBase64Strict(b("dGVzdA==junk"))?.toString(), "test", "anything after = is ignored");
  assert.equal(decodeBase64Strict(b(""))?.length, 0);
  assert.equal(decodeBase64Strict(b("="))?.length, 0);
  assert.equal(decodeBase64Strict(b("*")), null, "a client cannot cancel with *");
  assert.equal(decodeBase64Strict(b("dGVzd")), null, "length 1 mod 4 is invalid");
  assert.equal(decodeBase64Strict(b("dG Vz")), null);
  assert.equal(decodeBase64Strict(b("dGVz-A")), null, "url-safe alphabet is not base64");
});

test("base64 decoding agrees with Node's decoder on valid input", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      const text = Buffer.from(bytes).toString("base64");
      assert.deepEqual(decodeBase64Strict(b(text)), Buffer.from(bytes));
      assert.deepEqual(decodeBase64Strict(b(text.replace(/=+$/, ""))), Buffer.from(bytes));
    }),
  );
});

test("AUTH PLAIN needs two NUL bytes", () => {
  const enc = (s: string) => b(Buffer.from(s, "latin1").toString("base64"));
  const ok = saslPlain(enc("authz\0user\0pass"));
  assert.ok(ok.ok && ok.value.login.toString() === "user" && ok.value.password.toString() === "pass");
  const empty = saslPlain(enc("\0\0"));
  assert.ok(empty.ok && empty.value.login.length === 0 && empty.value.password.length === 0);
  assert.deepEqual(saslPlain(enc("user")), { ok: false, log: "client sent invalid login in AUTH PLAIN command" });
  assert.deepEqual(saslPlain(enc("\0user")), { ok: false, log: "client sent invalid password in AUTH PLAIN command" });
  assert.deepEqual(saslPlain(b("%%")), { ok: false, log: "client sent invalid base64 encoding in AUTH PLAIN command" });
});

test("AUTH CRAM-MD5 splits at the first space and wants a 32-byte digest", () => {
  const enc = (s: string) => b(Buffer.from(s).toString("base64"));
  const r = saslCramMd5(enc(`us er ${"x".repeat(30)}`));
  assert.equal(r.ok, false);
  const ok = saslCramMd5(enc(`user ${"0".repeat(32)}`));
  assert.ok(ok.ok && ok.value.login.toString() === "user");
  // nginx has taken the name before it looks at the digest: its log line shows it
  assert.deepEqual(saslCramMd5(enc("nospace")), {
    ok: false,
    log: "client sent invalid CRAM-MD5 hash in AUTH CRAM-MD5 command",
    login: Buffer.from("nospace"),
  });
});

test("salts look like nginx's", () => {
  assert.match(makeSalt("mx.example.test"), /^<\d+\.\d+@mx\.example\.test>$/);
});

test("salts come from crypto, not Math.random: with Math.random and the clock frozen they still differ", (t) => {
  t.mock.method(Math, "random", () => 0.5);
  t.mock.timers.enable({ apis: ["Date"], now: 1_700_000_000_123 });
  const salts = Array.from({ length: 64 }, () => makeSalt("mx.example.test"));
  for (const salt of salts) {
    // nginx's "<%ul.%T@%V>": ngx_random() (0 to 2^31-1), the time in seconds, server_name
    const m = /^<(\d+)\.(\d+)@mx\.example\.test>$/.exec(salt);
    assert.ok(m, salt);
    assert.ok(Number(m[1]) < 2 ** 31, salt);
    assert.equal(m[2], "1700000000");
  }
  // 64 draws from 2^31 values: a repeat has odds of about 1 in a million
  assert.equal(new Set(salts).size, salts.length, "every salt differs although Math.random is constant");
});

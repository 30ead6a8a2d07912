/**
 * Fuzzing the SASL base64 decoder and the SASL steps built on it: arbitrary
 * bytes never throw; whatever decodes is exactly what the standard decoder
 * gives for the part before `=`; every encoding round-trips; the PLAIN, LOGIN,
 * CRAM-MD5 and EXTERNAL steps answer ok or nginx's log line, nothing else.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeBase64Strict, saslCramMd5, saslExternal, saslLoginPassword, saslLoginUsername, saslPlain } from "../../src/mail/sasl.js";
import { budget } from "./fuzz-support.js";

const ALPHABET = /^[A-Za-z0-9+/]*$/;

/** Base64 text: valid encodings, mutated ones, and raw bytes. */
const base64ish = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(Buffer.from(u).toString("base64"), "latin1")),
  fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(Buffer.from(u).toString("base64").replace(/=+$/, ""), "latin1")),
  fc.tuple(fc.uint8Array({ maxLength: 200 }), fc.nat(), fc.integer({ min: 0, max: 255 })).map(([u, p, v]) => {
    const b = Buffer.from(Buffer.from(u).toString("base64"), "latin1");
    if (b.length > 0) b[p % b.length] = v;
    return b;
  }),
  fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)),
);

test("base64: arbitrary input never throws, and what decodes matches the standard decoder", () => {
  fc.assert(
    fc.property(base64ish, (input) => {
      const out = decodeBase64Strict(input);
      const eq = input.indexOf(0x3d);
      const body = input.subarray(0, eq < 0 ? input.length : eq).toString("latin1");
      if (!ALPHABET.test(body) || body.length % 4 === 1) {
        assert.equal(out, null, `accepted ${JSON.stringify(body)}`);
        return;
      }
      assert.ok(out, `refused valid ${JSON.stringify(body)}`);
      assert.equal(out.length, Math.floor((body.length * 3) / 4));
      assert.deepEqual(out, Buffer.from(body, "base64"));
    }),
    budget(2),
  );
});

test("base64: every byte string round-trips, padded or not", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2048 }), (u) => {
      const bytes = Buffer.from(u);
      const text = bytes.toString("base64");
      assert.deepEqual(decodeBase64Strict(Buffer.from(text, "latin1")), bytes);
      assert.deepEqual(decodeBase64Strict(Buffer.from(text.replace(/=+$/, ""), "latin1")), bytes);
    }),
    budget(1),
  );
});

test("SASL steps: arbitrary responses give ok or an nginx log line, never an exception", () => {
  const steps = [
    ["PLAIN", saslPlain],
    ["LOGIN", saslLoginUsername],
    ["LOGIN", saslLoginPassword],
    ["CRAM-MD5", saslCramMd5],
    ["EXTERNAL", saslExternal],
  ] as const;
  fc.assert(
    fc.property(base64ish, fc.constantFrom(...steps), (input, [mech, step]) => {
      const r = step(input);
      if (!r.ok) assert.match(r.log, new RegExp(`^client sent invalid (base64 encoding|login|login or password)? ?(in )?AUTH ${mech}|^client sent invalid`));
    }),
    budget(2),
  );
});

test("SASL PLAIN: any login and password (no NUL, CR or LF) survive encoding", () => {
  const part = fc.uint8Array({ minLength: 1, maxLength: 100 }).map((u) => Buffer.from(u.map((b) => (b === 0 || b === 0x0a || b === 0x0d ? 1 : b))));
  fc.assert(
    fc.property(part, part, part, (authz, login, password) => {
      const b64 = Buffer.from(Buffer.concat([authz, Buffer.from([0]), login, Buffer.from([0]), password]).toString("base64"), "latin1");
      const r = saslPlain(b64);
      assert.ok(r.ok);
      assert.deepEqual(r.value.login, login);
      assert.deepEqual(r.value.password, password);
    }),
    budget(1),
  );
});

test("SASL PLAIN: a login or password holding CR, LF or NUL is always refused, with the field named", () => {
  const clean = fc.uint8Array({ minLength: 1, maxLength: 40 }).map((u) => Buffer.from(u.map((b) => (b === 0 || b === 0x0a || b === 0x0d ? 1 : b))));
  const bad = fc.tuple(clean, fc.constantFrom(0x0a, 0x0d), clean).map(([a, c, z]) => Buffer.concat([a, Buffer.from([c]), z]));
  const badPassword = fc.tuple(clean, fc.constantFrom(0x00, 0x0a, 0x0d), clean).map(([a, c, z]) => Buffer.concat([a, Buffer.from([c]), z]));
  fc.assert(
    fc.property(
      clean,
      fc.oneof(fc.tuple(bad, clean, fc.constant("login")), fc.tuple(clean, badPassword, fc.constant("password"))),
      (authz, [login, password, field]) => {
        const b64 = Buffer.from(Buffer.concat([authz, Buffer.from([0]), login, Buffer.from([0]), password]).toString("base64"), "latin1");
        const r = saslPlain(b64);
        assert.ok(!r.ok);
        assert.equal(r.log, `client sent invalid ${field} in AUTH PLAIN command`);
      },
    ),
    budget(1),
  );
});

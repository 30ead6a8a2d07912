/**
 * Fuzzing the OAuth SASL parsers (OAUTHBEARER's GS2 header and pairs,
 * XOAUTH2): arbitrary bytes and mutated valid responses never throw; an
 * accepted response always yields a user without CR, LF, NUL or ^A and a
 * token of RFC 6750 b64token characters, and well-formed responses built
 * from random users and tokens give exactly those back.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeSaslname, isSaslErrorAck, parseOauthbearer, parseXoauth2, saslOauth } from "../../src/mail/sasl-oauth.js";
import { budget } from "./fuzz-support.js";

const TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/";
const tokenArb = fc
  .tuple(fc.array(fc.constantFrom(...TOKEN_CHARS.split("")), { minLength: 1, maxLength: 200 }), fc.nat({ max: 2 }))
  .map(([chars, pad]) => chars.join("") + "=".repeat(pad));
/** Users: visible ASCII and spaces, without the GS2 specials. */
const userArb = fc.array(fc.integer({ min: 0x20, max: 0x7e }), { maxLength: 40 }).map((c) => Buffer.from(c).toString("latin1"));
const gs2Escape = (u: string): string => u.replace(/=/g, "=3D").replace(/,/g, "=2C");

const valid = fc.oneof(
  fc.tuple(userArb, tokenArb).map(([u, t]) => Buffer.from(`n,${u === "" ? "" : `a=${gs2Escape(u)}`},\x01auth=Bearer ${t}\x01\x01`, "latin1")),
  fc.tuple(userArb, tokenArb).map(([u, t]) => Buffer.from(`user=${u}\x01host=h\x01port=1\x01auth=Bearer ${t}\x01\x01`, "latin1")),
);
const mutated = fc.tuple(valid, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([b, p, v]) => {
  const copy = Buffer.from(b);
  copy[p % copy.length] = v;
  return copy;
});
const anyBytes = fc.oneof(
  valid,
  mutated,
  fc.uint8Array({ maxLength: 400 }).map((u) => Buffer.from(u)),
);

function checkAccepted(result: ReturnType<typeof parseOauthbearer>): void {
  if (!result.ok) {
    assert.match(result.log, /^client sent invalid (base64 encoding|message|login|token) in AUTH (OAUTHBEARER|XOAUTH2) command$/);
    return;
  }
  assert.ok(!/[\r\n\0\x01]/.test(result.value.user.toString("latin1")), "control byte in the user");
  assert.match(result.value.token.toString("latin1"), /^[A-Za-z0-9\-._~+/]+=*$/);
}

test("OAUTHBEARER and XOAUTH2: arbitrary and mutated responses never throw; anything accepted is clean", () => {
  fc.assert(
    fc.property(anyBytes, (bytes) => {
      checkAccepted(parseOauthbearer(bytes));
      checkAccepted(parseXoauth2(bytes));
      checkAccepted(saslOauth(Buffer.from(bytes.toString("base64"), "latin1"), "oauthbearer"));
      checkAccepted(saslOauth(bytes, "xoauth2"));
      isSaslErrorAck(bytes);
      decodeSaslname(bytes);
    }),
    budget(3),
  );
});

test("OAUTHBEARER: a well-formed response gives back its user (GS2-unescaped) and token", () => {
  fc.assert(
    fc.property(userArb, tokenArb, (user, token) => {
      const r = parseOauthbearer(Buffer.from(`n,${user === "" ? "" : `a=${gs2Escape(user)}`},\x01host=mail.example\x01auth=Bearer ${token}\x01\x01`, "latin1"));
      assert.ok(r.ok, JSON.stringify([user, token]));
      assert.equal(r.value.user.toString("latin1"), user);
      assert.equal(r.value.token.toString("latin1"), token);
    }),
    budget(1),
  );
});

test("XOAUTH2: a well-formed response gives back its user and token", () => {
  fc.assert(
    fc.property(userArb, tokenArb, (user, token) => {
      const r = parseXoauth2(Buffer.from(`user=${user}\x01auth=Bearer ${token}\x01\x01`, "latin1"));
      assert.ok(r.ok, JSON.stringify([user, token]));
      assert.equal(r.value.user.toString("latin1"), user);
      assert.equal(r.value.token.toString("latin1"), token);
    }),
    budget(1),
  );
});

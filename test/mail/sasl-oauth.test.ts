/**
 * The OAuth SASL parsers case by case: what RFC 7628 and Google's XOAUTH2
 * document is taken, what strays from it is refused with the log line;
 * the dummy response after an error challenge; Auth-Error-SASL values.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { isSaslErrorAck, parseOauthbearer, parseXoauth2, validSaslErrorHeader } from "../../src/mail/sasl-oauth.js";

const b = (s: string): Buffer => Buffer.from(s, "latin1");
const ok = (r: ReturnType<typeof parseOauthbearer>): [string, string] => {
  assert.ok(r.ok, r.ok ? "" : r.log);
  return [r.value.user.toString("latin1"), r.value.token.toString("latin1")];
};
const refused = (r: ReturnType<typeof parseOauthbearer>): string => {
  assert.equal(r.ok, false);
  return r.ok ? "" : r.log;
};

test("OAUTHBEARER: RFC 7628's forms are taken (with and without a=, host=/port=, Bearer in any case)", () => {
  assert.deepEqual(
    ok(parseOauthbearer(b("n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"))),
    ["user@example.com", "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="],
  );
  assert.deepEqual(ok(parseOauthbearer(b("n,,\x01auth=bearer  tok\x01\x01"))), ["", "tok"]);
  assert.deepEqual(ok(parseOauthbearer(b("n,a=a=3Db=2Cc,\x01auth=Bearer t\x01\x01"))), ["a=b,c", "t"]);
});

test("OAUTHBEARER: strays from the grammar are refused with nginx-style log lines", () => {
  const cases: Array<[string, string]> = [
    ["y,,\x01auth=Bearer t\x01\x01", "message"],
    ["p=tls-unique,,\x01auth=Bearer t\x01\x01", "message"],
    ["n,a=,\x01auth=Bearer t\x01\x01", "login"],
    ["n,a=x=41,\x01auth=Bearer t\x01\x01", "login"],
    ["n,,auth=Bearer t\x01\x01", "message"],
    ["n,,\x01auth=Bearer t\x01", "message"],
    ["n,,\x01auth=Bearer t\x01\x01x", "message"],
    ["n,,\x01host=a\x01\x01", "token"],
    ["n,,\x01auth=Basic dTpw\x01\x01", "token"],
    ["n,,\x01auth=Bearer t\x01auth=Bearer u\x01\x01", "message"],
    ["n,,\x01port=x\x01auth=Bearer t\x01\x01", "message"],
    ["n,,\x01auth=Bearer t=x\x01\x01", "token"],
    ["n,,\x01auth=Bearer t\r\n\x01\x01", "message"],
  ];
  for (const [text, field] of cases)
    assert.equal(refused(parseOauthbearer(b(text))), `client sent invalid ${field} in AUTH OAUTHBEARER command`, JSON.stringify(text));
});

test("XOAUTH2: Google's form is taken, others refused", () => {
  assert.deepEqual(ok(parseXoauth2(b("user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"))), [
    "someuser@example.com",
    "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
  ]);
  assert.equal(refused(parseXoauth2(b("n,a=u,\x01auth=Bearer t\x01\x01"))), "client sent invalid login in AUTH XOAUTH2 command");
  assert.equal(refused(parseXoauth2(b("user=u\x01auth=Bearer t"))), "client sent invalid message in AUTH XOAUTH2 command");
  assert.equal(refused(parseXoauth2(b("user=u\x00v\x01auth=Bearer t\x01\x01"))), "client sent invalid message in AUTH XOAUTH2 command");
});

test("the dummy response: an empty line or AQ== (with or without padding); anything else is not", () => {
  for (const yes of ["", "AQ==", "AQ"]) assert.equal(isSaslErrorAck(b(yes)), true, yes);
  for (const no of ["AQE=", "foo", "*", "AA==", " "]) assert.equal(isSaslErrorAck(b(no)), false, no);
});

test("Auth-Error-SASL values: padded standard base64 only", () => {
  assert.equal(validSaslErrorHeader(b("eyJzdGF0dXMiOiI0MDAifQ==")), true);
  for (const bad of ["", "not base64!", "eyJ", "eyJ_-A==", "eyJz\tA==", "AA=A"]) assert.equal(validSaslErrorHeader(b(bad)), false, bad);
});

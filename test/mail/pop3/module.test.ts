import { test } from "node:test";
import assert from "node:assert/strict";
import { pop3Wire } from "../../../src/mail/pop3/module.js";
import { pop3Server } from "../fake-session.js";

const HEADER = "+OK Capability list follows\r\n";

test("defaults: pop3_auth plain, pop3_capabilities TOP USER UIDL", () => {
  const w = pop3Wire(pop3Server());
  assert.equal(w.capa, `${HEADER}TOP\r\nUSER\r\nUIDL\r\nSASL PLAIN LOGIN\r\n.\r\n`);
  assert.equal(w.capaStarttls, `${HEADER}TOP\r\nUSER\r\nUIDL\r\nSASL PLAIN LOGIN\r\nSTLS\r\n.\r\n`);
  assert.equal(w.capaStarttlsOnly, `${HEADER}TOP\r\nUIDL\r\nSTLS\r\n.\r\n`);
  assert.equal(w.authList, "+OK methods supported:\r\nPLAIN\r\nLOGIN\r\n.\r\n");
  assert.equal(w.saltedGreeting, false);
});

test("every method, in nginx's order whatever the order written", () => {
  const w = pop3Wire(pop3Server("pop3_auth external cram-md5 apop plain;"));
  assert.equal(w.capaStarttls, `${HEADER}TOP\r\nUSER\r\nUIDL\r\nSASL PLAIN LOGIN CRAM-MD5 EXTERNAL\r\nSTLS\r\n.\r\n`);
  assert.equal(w.authList, "+OK methods supported:\r\nPLAIN\r\nLOGIN\r\nCRAM-MD5\r\nEXTERNAL\r\n.\r\n");
  assert.equal(w.saltedGreeting, true);
});

test("pop3_auth apop alone: a bare SASL line and an empty AUTH list", () => {
  const w = pop3Wire(pop3Server("pop3_auth apop;"));
  assert.equal(w.capa, `${HEADER}TOP\r\nUSER\r\nUIDL\r\nSASL\r\n.\r\n`);
  assert.equal(w.authList, "+OK methods supported:\r\n.\r\n");
  assert.equal(w.saltedGreeting, true);
});

test("pop3_capabilities: accumulates, inherits, a server replaces; starttls only drops USER in any case", () => {
  const inherited = pop3Wire(pop3Server("", "pop3_capabilities TOP user; pop3_capabilities UIDL PIPELINING;"));
  assert.equal(inherited.capa, `${HEADER}TOP\r\nuser\r\nUIDL\r\nPIPELINING\r\nSASL PLAIN LOGIN\r\n.\r\n`);
  assert.equal(inherited.capaStarttlsOnly, `${HEADER}TOP\r\nUIDL\r\nPIPELINING\r\nSTLS\r\n.\r\n`);
  const replaced = pop3Wire(pop3Server("pop3_capabilities X;", "pop3_capabilities TOP;"));
  assert.equal(replaced.capa, `${HEADER}X\r\nSASL PLAIN LOGIN\r\n.\r\n`);
});

test("pop3_auth: mail level inherited, server replaces, no login word", () => {
  assert.equal(pop3Wire(pop3Server("", "pop3_auth cram-md5;")).authMethods.has("cram-md5"), true);
  const w = pop3Wire(pop3Server("pop3_auth apop;", "pop3_auth cram-md5;"));
  assert.deepEqual([...w.authMethods], ["apop"]);
  assert.throws(() => pop3Server("pop3_auth login;"), /invalid value "login"/);
});

import { test } from "node:test";
import assert from "node:assert/strict";
import { Level, type SetContext, ServerConf } from "../../../src/conf/directive.js";
import { ConfError } from "../../../src/core/errors.js";
import { imapAuthDirective, imapCapabilitiesDirective, imapClientBufferDirective, imapModule, imapWire } from "../../../src/mail/imap/module.js";
import type { MailServer } from "../../../src/mail/server.js";

const loc = { file: "/t.conf", line: 3 };

function cx(warnings: string[] = []): SetContext {
  return { warn: (m: string) => warnings.push(m) } as unknown as SetContext;
}

test("imap_auth takes plain, login, cram-md5, external; apop is an invalid value", () => {
  const warnings: string[] = [];
  assert.deepEqual([...imapAuthDirective.parse(["CRAM-MD5", "plain"], undefined, cx(warnings))].sort(), ["cram-md5", "plain"]);
  assert.throws(
    () => imapAuthDirective.parse(["apop"], undefined, cx()),
    (e) => e instanceof ConfError && e.message === 'invalid value "apop"',
  );
  imapAuthDirective.parse(["login", "login"], undefined, cx(warnings));
  assert.deepEqual(warnings, ['duplicate value "login"']);
});

test("imap_client_buffer is a size; imap_capabilities accumulates words", () => {
  assert.equal(imapClientBufferDirective.parse(["8k"], undefined, cx()), 8192);
  assert.throws(
    () => imapClientBufferDirective.parse(["big"], undefined, cx()),
    (e) => e instanceof ConfError && e.message === '"imap_client_buffer" directive invalid value',
  );
  const first = imapCapabilitiesDirective.parse(["IMAP4rev1", "ID"], undefined, cx());
  assert.deepEqual(imapCapabilitiesDirective.parse(['"SORT"'], first, cx()), ["IMAP4rev1", "ID", '"SORT"']);
});

test("a server's imap_auth / imap_capabilities replace the mail level's; unset means nginx's defaults", () => {
  const mail = new Level("mail", loc);
  mail.set(imapAuthDirective, new Set(["login"] as const), loc);
  mail.set(imapCapabilitiesDirective, ["IMAP4rev1"], loc);
  const inherit = new Level("server", loc, mail);
  const own = new Level("server", loc, mail);
  own.set(imapAuthDirective, new Set(["external"] as const), loc);
  own.set(imapCapabilitiesDirective, ["X"], loc);
  const bare = new Level("server", loc, new Level("mail", loc));
  const server = (l: Level, index: number): MailServer => ({ conf: new ServerConf(l, l.parent!), protocol: "imap", listens: [], index });
  const [a, b, c] = [server(inherit, 0), server(own, 1), server(bare, 2)];
  for (const s of [a, b, c]) imapModule.finalize?.(s, { warn: () => undefined });
  assert.equal(imapWire(a).capability, "* CAPABILITY IMAP4rev1 AUTH=LOGIN\r\n");
  assert.equal(imapWire(b).capability, "* CAPABILITY X AUTH=EXTERNAL\r\n");
  assert.equal(imapWire(c).capability, "* CAPABILITY IMAP4 IMAP4rev1 UIDPLUS AUTH=PLAIN\r\n");
  assert.equal(imapWire(c).starttlsCapability, "* CAPABILITY IMAP4 IMAP4rev1 UIDPLUS AUTH=PLAIN STARTTLS\r\n");
  assert.equal(imapWire(c).starttlsOnlyCapability, "* CAPABILITY IMAP4 IMAP4rev1 UIDPLUS STARTTLS LOGINDISABLED\r\n");
  assert.equal(c.conf.get(imapClientBufferDirective), 4096);
});

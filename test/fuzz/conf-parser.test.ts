/**
 * Fuzzing the configuration parser: mutated real configurations and noise.
 * Whatever the text, parseConfiguration returns or throws a ConfError with a
 * message; never any other exception (a TypeError would be a crash at start-up
 * or, worse, at reload).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { ConfError } from "../../src/core/errors.js";
import { parseConfiguration } from "../../src/conf/engine.js";
import { mailBlockModule } from "../../src/mail/block.js";
import { MAIL_MODULES } from "../../src/mail/mail-modules.js";
import { budget, mutatedStream } from "./fuzz-support.js";

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), "postern-fuzz-conf-"));
  writeFileSync(join(dir, "included.conf"), "smtp_auth login plain;\n");
});
after(() => rmSync(dir, { recursive: true, force: true }));

// Only loopback addresses and files inside the temp dir: a mutation must not reach the network or the disk.
const CORPUS = [
  "mail {\n",
  "  auth_http 127.0.0.1:9/auth;\n",
  '  auth_http_header X-Auth-Key "secret value";\n',
  "  auth_http_timeout 5s;\n",
  "  proxy_pass_error_message on;\n",
  "  imap_capabilities IMAP4rev1 \"SASL-IR\" 'ID';\n",
  "  pop3_auth plain apop cram-md5;\n",
  "  smtp_auth login plain cram-md5;\n",
  "  imap_client_buffer 4k;\n",
  "  timeout 60s;\n",
  "  max_errors 3;\n",
  "  resolver off;\n",
  "  include included.conf;\n",
  "  server {\n    listen 127.0.0.1:8143;\n    protocol imap;\n  }\n",
  "  server { listen 127.0.0.1:8110 proxy_protocol; protocol pop3; starttls on; }\n",
  "  server { listen 127.0.0.1:8025; protocol smtp; xclient off; smtp_capabilities PIPELINING 8BITMIME; }\n",
  "  set_real_ip_from 127.0.0.0/8;\n",
  "  # a comment {\n",
  "  proxy_timeout 1m;\n  proxy_buffer 8k;\n",
  "}\n",
  '${var} \\" ;;; {{ }}\n',
];

test("configuration parser: arbitrary text throws nothing but ConfError", () => {
  const file = join(dir, "nginx.conf");
  let confErrors = 0;
  let parsed = 0;
  fc.assert(
    fc.property(mutatedStream(CORPUS), (text) => {
      writeFileSync(file, text);
      try {
        parseConfiguration({ prefix: `${dir}/`, file }, [mailBlockModule, ...MAIL_MODULES], () => undefined);
        parsed++;
      } catch (e) {
        if (!(e instanceof ConfError))
          throw new Error(`not a ConfError for ${JSON.stringify(text.toString("latin1"))}: ${(e as Error).stack ?? String(e)}`, { cause: e });
        assert.ok(e.text.length > 0);
        confErrors++;
      }
    }),
    budget(4),
  );
  assert.ok(confErrors > 0 && parsed > 0, `parsed ${parsed}, errors ${confErrors}: the corpus should reach both`);
});

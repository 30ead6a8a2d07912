/**
 * Entries hashed with the old scrypt cost (N=2^14) keep working and are
 * rehashed with today's default on the user's next successful login; the
 * auth service rewrites that line through an exclusive temporary file.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAuthServer, type RunningAuthServer } from "../../src/auth-server/server.js";
import { formatUserLine, hashPasswordAsync, parseUsers } from "../../src/auth-server/users.js";
import { ask, plain, text } from "./helpers.js";

let dir = "";
let usersFile = "";
let server: RunningAuthServer | undefined;
const logLines: string[] = [];

/** What `postern passwd` wrote before this change: N=2^14, r=8, p=1. */
const OLD = { N: 16384, r: 8, p: 1 };

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "postern-rehash-"));
  usersFile = join(dir, "users");
  const old = formatUserLine({
    login: "olduser",
    hash: await hashPasswordAsync("old secret", OLD),
    backends: { default: { host: "127.0.0.1", port: 1143 } },
    clear: Buffer.from("old secret"),
  });
  const other = formatUserLine({ login: "other", hash: await hashPasswordAsync("other pw", OLD), backends: { imap: { host: "127.0.0.2", port: 143 } } });
  writeFileSync(usersFile, `# comment kept\n${old}\n\n${other}\n`);
  chmodSync(usersFile, 0o640);
  // the service's default scrypt target: no `scrypt` option
  server = await startAuthServer({ usersFile, wait: 0, log: (l) => logLines.push(l) }, "127.0.0.1", 0);
});

after(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

test("a wrong password does not rewrite an old entry", async () => {
  const before = readFileSync(usersFile, "utf8");
  const r = await ask(server!.address.port, "imap", plain("olduser", "wrong secret"), "127.0.0.50");
  assert.equal(text(r.failure), "Invalid login or password");
  assert.equal(readFileSync(usersFile, "utf8"), before);
  assert.match(before, /^olduser:scrypt\$16384\$8\$1\$/m);
});

test("an old N=2^14 entry logs in and is rewritten with N=2^17, r=8, p=1; the rest of the file is kept", async () => {
  const port = server!.address.port;
  const before = readFileSync(usersFile, "utf8");
  const r = await ask(port, "imap", plain("olduser", "old secret"));
  assert.deepEqual([r.failure, text(r.server), text(r.port)], [undefined, "127.0.0.1", "1143"]);
  const after = readFileSync(usersFile, "utf8");
  assert.match(after, /^olduser:scrypt\$131072\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:127\.0\.0\.1:1143:clear=b2xkIHNlY3JldA==$/m);
  // only that line changed: comments, blank lines and other users are as they were
  const changed = (t: string) => t.split("\n").filter((l) => !l.startsWith("olduser:"));
  assert.deepEqual(changed(after), changed(before));
  assert.equal(statSync(usersFile).mode & 0o777, 0o640, "the file's mode is kept");
  assert.deepEqual(readdirSync(dir), ["users"], "no temporary file left");
  assert.ok(
    logLines.some((l) => /^login "olduser": password hash upgraded to scrypt N=131072 r=8 p=1$/.test(l)),
    logLines.join("\n"),
  );
  for (const l of logLines) assert.doesNotMatch(l, /old secret/);

  // the new entry logs in, and is not rewritten again
  const again = await ask(port, "imap", plain("olduser", "old secret"));
  assert.equal(again.failure, undefined);
  assert.equal(readFileSync(usersFile, "utf8"), after, "a current entry is not rewritten again");
  assert.equal(parseUsers(after).get("other")!.hash.startsWith("scrypt$16384$"), true, "users who did not log in keep their entry");
});

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { lstatSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseUsers, verifyPasswordAsync } from "../../src/auth-server/users.js";
import { runPasswd } from "../../src/auth-server/cli.js";
import { io, passwd } from "./helpers.js";

let dir = "";

before(() => {
  dir = mkdtempSync(join(tmpdir(), "postern-passwd-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

test("passwd does not follow a symlink planted at the old predictable temporary name", async () => {
  const usersFile = join(dir, "users");
  const victim = join(dir, "victim");
  writeFileSync(victim, "precious\n");
  writeFileSync(usersFile, "# users\n");
  // the name the old code wrote to: FILE.PID.tmp
  const planted = `${usersFile}.${process.pid}.tmp`;
  symlinkSync(victim, planted);
  await passwd([usersFile, "mallory-target", "127.0.0.1:143"], "a password");
  assert.equal(readFileSync(victim, "utf8"), "precious\n", "the symlink's target is untouched");
  assert.ok(lstatSync(planted).isSymbolicLink(), "the planted link is left as it was");
  assert.ok(lstatSync(usersFile).isFile() && !lstatSync(usersFile).isSymbolicLink());
  assert.equal(statSync(usersFile).mode & 0o777, 0o600);
  const users = parseUsers(readFileSync(usersFile, "utf8"));
  assert.ok(await verifyPasswordAsync("a password", users.get("mallory-target")!.hash));
  // no temporary file is left behind
  assert.deepEqual(readdirSync(dir).sort(), ["users", "users." + process.pid + ".tmp", "victim"].sort());
});

test("passwd hashes with OWASP's scrypt cost by default (N=2^17, r=8, p=1); --scrypt-n sets a lower one for tests", async () => {
  const usersFile = join(dir, "cost");
  await passwd([usersFile, "strong", "127.0.0.1:143"], "pw-one");
  await passwd(["--scrypt-n", "1024", usersFile, "cheap", "127.0.0.1:143"], "pw-two");
  const text = readFileSync(usersFile, "utf8");
  assert.match(text, /^strong:scrypt\$131072\$8\$1\$[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}:127\.0\.0\.1:143$/m);
  assert.match(text, /^cheap:scrypt\$1024\$8\$1\$/m);
  const users = parseUsers(text);
  assert.ok(await verifyPasswordAsync("pw-one", users.get("strong")!.hash), "Node's default maxmem (32 MiB) would refuse N=2^17: the hash must pass its own");
  assert.ok(await verifyPasswordAsync("pw-two", users.get("cheap")!.hash));
  assert.ok(!(await verifyPasswordAsync("pw-one", users.get("cheap")!.hash)));
  for (const bad of ["1000", "512", "2097152", "x"]) {
    const x = io("pw\n");
    assert.equal(await runPasswd(["--scrypt-n", bad, usersFile, "u", "127.0.0.1:1"], x), 2, bad);
    assert.match(x.err(), /invalid --scrypt-n/);
  }
});

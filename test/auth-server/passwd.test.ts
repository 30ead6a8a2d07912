import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { lstatSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseUsers, verifyPassword } from "../../src/auth-server/users.js";
import { passwd } from "./helpers.js";

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
  assert.ok(verifyPassword("a password", users.get("mallory-target")!.hash));
  // no temporary file is left behind
  assert.deepEqual(readdirSync(dir).sort(), ["users", "users." + process.pid + ".tmp", "victim"].sort());
});

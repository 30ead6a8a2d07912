/**
 * `npm pack` makes a package that installs and runs on its own: packed from
 * a copy of the repository (its prepack builds dist/src/ afresh), installed
 * into an empty directory from the tarball and npm's cache (only ioredis's
 * package metadata may come from the registry), run there with `npx postern`. The
 * tarball holds what running Postern needs and nothing else: the compiled
 * JavaScript, the `postern` command, the service files in contrib/, the
 * README and package.json. Not the TypeScript sources (Node.js runs the
 * JavaScript; the build also leaves out source maps, which would point at
 * .ts files that are not there), not the tests, benchmarks, scripts or
 * docs/ (they cite test files), not the build-time docs generator
 * (dist/src/tools/; the demo mail backend dist/src/demo/, which only
 * `npm start` in a clone runs), and not what a developer's tree holds beside them (the
 * secrets and keys `npm start` makes in conf/, .cache/, stale build output).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { repoRoot } from "../support/postern.js";
import { freePort } from "../support/ports.js";

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The environment npm runs in here: none of the npm_* variables of an
 * `npm test` around this test (they would point npm at this repository),
 * offline unless `metadata` is allowed (then npm's cache first, the registry
 * for what `npm ci` does not cache: a package's metadata), and the
 * Node.js that runs this test first on PATH, so `#!/usr/bin/env node`
 * runs the installed command on this lane's Node.
 */
function npmEnv(metadata: boolean): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  env.PATH = `${dirname(process.execPath)}:${process.env.PATH ?? ""}`;
  if (metadata) env.npm_config_prefer_offline = "true";
  else env.npm_config_offline = "true";
  env.npm_config_audit = "false";
  env.npm_config_fund = "false";
  env.npm_config_update_notifier = "false";
  return env;
}

function run(cmd: string, args: string[], cwd: string, metadata = false): Promise<Run> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { cwd, env: npmEnv(metadata), stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    c.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    c.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    c.on("error", reject);
    c.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** Every file under `dir`, relative to it, with `/` separators. */
function listFiles(dir: string, under = ""): string[] {
  return readdirSync(join(dir, under), { withFileTypes: true }).flatMap((e) => {
    const rel = under ? `${under}/${e.name}` : e.name;
    return e.isDirectory() ? listFiles(dir, rel) : [rel];
  });
}

/**
 * A copy of the repository as a developer's tree may be after `npm start`
 * and a build: with the files that must never ship planted in it.
 */
function repositoryCopy(root: string, dest: string): void {
  const skip = new Set(["node_modules", ".git", "dist", ".cache", "run"].map((n) => join(root, n)));
  cpSync(root, dest, { recursive: true, filter: (src) => !skip.has(src) && !src.startsWith(join(root, "bench", ".build")) });
  symlinkSync(join(root, "node_modules"), join(dest, "node_modules"), "dir");
  const plant = (rel: string, text: string): void => {
    mkdirSync(dirname(join(dest, rel)), { recursive: true });
    writeFileSync(join(dest, rel), text);
  };
  plant("conf/users", "demo@localhost:$scrypt$planted\n");
  plant("conf/auth-http-key", "planted secret\n");
  plant("conf/ssl/postern.key", "-----BEGIN PRIVATE KEY-----\nplanted\n");
  plant(".cache/node-v24/bin/node", "planted");
  plant("dist/src/removed-module.js", "// a module deleted from src/ since the last build\n");
  plant("dist/test/old.test.js", "// compiled tests\n");
  plant("error.log", "planted\n");
}

test("npm pack: the tarball installs into an empty directory and `npx postern` runs from it; it holds only what Postern needs", async () => {
  const root = repoRoot();
  const work = mkdtempSync(join(tmpdir(), "postern-pack-"));
  try {
    const repo = join(work, "repo");
    repositoryCopy(root, repo);
    const packed = await run("npm", ["pack", "--silent", "--pack-destination", work], repo);
    assert.equal(packed.code, 0, `npm pack failed:\n${packed.stderr}`);
    const tarballs = readdirSync(work).filter((n) => n.endsWith(".tgz"));
    const version = (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string }).version;
    assert.deepEqual(tarballs, [`postern-${version}.tgz`]);
    const tarball = join(work, tarballs[0]!);

    // what is in it, read from the tarball itself
    const listed = await run("tar", ["-tzf", tarball], work);
    assert.equal(listed.code, 0, listed.stderr);
    const files = listed.stdout
      .split("\n")
      .filter((l) => l !== "" && !l.endsWith("/"))
      .map((l) => l.replace(/^package\//, ""))
      .sort();
    const allowed = /^(package\.json|README\.md|LICENSE|bin\/postern\.js|dist\/src\/(?!tools\/|demo\/)[\w/-]+\.js|contrib\/.+)$/;
    assert.deepEqual(
      files.filter((f) => !allowed.test(f)),
      [],
      "files the package does not need",
    );
    assert.ok(!files.includes("dist/src/removed-module.js"), "prepack builds dist/src/ from an empty directory");
    // every module of src/ is in it, compiled from the sources being packed
    const modules = listFiles(join(root, "src")).filter((f) => f.endsWith(".ts") && !f.startsWith("tools/") && !f.startsWith("demo/"));
    assert.deepEqual(
      modules.map((f) => `dist/src/${f.replace(/\.ts$/, ".js")}`).filter((f) => !files.includes(f)),
      [],
    );
    for (const f of ["LICENSE", "contrib/systemd/postern.service", "contrib/logrotate/postern"]) assert.ok(files.includes(f), f);

    // installed into an empty project from the tarball, no repository: ioredis, the one runtime
    // dependency, comes from npm's cache where `npm ci` put its tarball, and its package
    // metadata (which `npm ci` does not cache) from the registry, as for any user
    // (--offline failed on a fresh machine whose cache held no metadata)
    const clean = join(work, "clean");
    mkdirSync(clean);
    writeFileSync(join(clean, "package.json"), JSON.stringify({ name: "clean", private: true }));
    const installed = await run("npm", ["install", tarball], clean, true);
    assert.equal(installed.code, 0, `npm install failed:\n${installed.stderr}`);
    const home = realpathSync(join(clean, "node_modules", "postern"));
    assert.equal(relative(clean, home), join("node_modules", "postern"));

    const v = await run("npx", ["postern", "-V"], clean);
    assert.equal(v.code, 0, v.stderr);
    const lines = v.stderr.split("\n");
    assert.equal(lines[0], `nginx version: nginx/1.22.1 (postern/${version})`);
    assert.match(lines[1]!, /^built with OpenSSL \S+ \(Node\.js v[\d.]+\)$/);
    // the default prefix is where the package was installed, not the repository
    assert.match(v.stderr, new RegExp(`configure arguments: .* --prefix=${home.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} `));

    const prefix = join(work, "mail");
    mkdirSync(prefix);
    const port = await freePort();
    writeFileSync(
      join(prefix, "mail.conf"),
      [
        "load_module /usr/lib/nginx/modules/ngx_mail_module.so;",
        "pid postern.pid;",
        "error_log error.log info;",
        "events { worker_connections 64; }",
        `mail { server { listen 127.0.0.1:${port}; protocol imap; auth_http 127.0.0.1:9/auth; } }`,
        "",
      ].join("\n"),
    );
    const t = await run("npx", ["postern", "-p", `${prefix}/`, "-c", "mail.conf", "-t"], clean);
    const conf = join(prefix, "mail.conf");
    assert.equal(t.stderr, `nginx: the configuration file ${conf} syntax is ok\nnginx: configuration file ${conf} test is successful\n`);
    assert.equal(t.code, 0);
    const bad = await run("npx", ["postern", "-p", `${prefix}/`, "-c", "missing.conf", "-t"], clean);
    assert.equal(bad.code, 1, "a failing -t fails the installed command too");
  } finally {
    if (!process.env.POSTERN_KEEP_TMP) rmSync(work, { recursive: true, force: true });
  }
});

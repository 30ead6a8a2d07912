/**
 * `-t` and `-T` bind the listening addresses as nginx -t does: the
 * installed nginx 1.22.1 and Postern run on the same file, and stderr, the
 * -e log (without time and pid) and the exit code must be identical.
 * "Address in use" passes (another program, or the running server itself,
 * holds the address); any other bind failure fails the test.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { createServer, type AddressInfo, type Server } from "node:net";
import { join } from "node:path";
import { MAIL_MODULE, NGINX, both, postern, run, tempDir, writeFiles } from "./run-helpers.js";
import { startNginx } from "../support/nginx.js";
import { startPostern } from "../support/postern.js";
import { freePorts } from "../support/ports.js";

/** A config with one SMTP server per listen argument. */
function conf(...listens: string[]): string {
  const servers = listens.map((l) => `  server { listen ${l}; protocol smtp; }\n`).join("");
  return `${MAIL_MODULE}pid nginx.pid;\nevents {}\nmail {\n  auth_http 127.0.0.1:1/auth;\n${servers}}\n`;
}

/** The -e log's lines without date and pid. */
function logLines(path: string): string[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => l.replace(/^\S+ \S+ (\[\w+\]) \d+#\d+: /, "$1 "));
}

/** Runs `switches` on both, asserts they agree; returns nginx's result. */
function sameAsNginx(dir: string, switches: readonly string[]): { status: number | null; stderr: string } {
  const r = both(dir, switches);
  assert.equal(r.postern.stderr, r.nginx.stderr, `${switches.join(" ")}: stderr`);
  assert.equal(r.postern.stdout, r.nginx.stdout, `${switches.join(" ")}: stdout`);
  assert.equal(r.postern.status, r.nginx.status, `${switches.join(" ")}: exit code`);
  assert.deepEqual(logLines(join(dir, "postern-err.log")), logLines(join(dir, "nginx-err.log")), `${switches.join(" ")}: -e log`);
  return r.nginx;
}

async function listening(): Promise<{ server: Server; port: number }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, port: (server.address() as AddressInfo).port };
}

test("-t: an address another program listens on passes silently, as in nginx", async () => {
  const { dir, cleanup } = tempDir();
  const other = await listening();
  try {
    const [free] = await freePorts(1);
    writeFiles(dir, { "nginx.conf": conf(`127.0.0.1:${other.port}`, `127.0.0.1:${free}`) });
    for (const sw of [["-t"], ["-T"], ["-tq"]]) assert.equal(sameAsNginx(dir, sw).status, 0);
  } finally {
    other.server.close();
    cleanup();
  }
});

test("-t: an address that cannot be bound fails with nginx's bind() message and exit 1", async () => {
  const { dir, cleanup } = tempDir();
  try {
    const [port] = await freePorts(1);
    // 192.0.2.1 (TEST-NET-1) is on no interface here: EADDRNOTAVAIL
    writeFiles(dir, { "nginx.conf": conf(`127.0.0.1:${port}`, `192.0.2.1:${port}`) });
    for (const sw of [["-t"], ["-T"], ["-tq"]]) {
      const r = sameAsNginx(dir, sw);
      assert.equal(r.status, 1);
      assert.match(r.stderr, new RegExp(`nginx: \\[emerg\\] bind\\(\\) to 192\\.0\\.2\\.1:${port} failed \\(99: Cannot assign requested address\\)\\n`));
    }
  } finally {
    cleanup();
  }
});

test("-t: unix: sockets are bound and removed again; a missing directory fails as in nginx", () => {
  const { dir, cleanup } = tempDir();
  try {
    mkdirSync(join(dir, "run"));
    const socket = join(dir, "run", "smtp.sock");
    writeFiles(dir, { "nginx.conf": conf(`unix:${socket}`) });
    assert.equal(sameAsNginx(dir, ["-t"]).status, 0);
    assert.equal(existsSync(socket), false, "no socket file is left behind");
    writeFiles(dir, { "nginx.conf": conf(`unix:${join(dir, "missing", "smtp.sock")}`) });
    const r = sameAsNginx(dir, ["-t"]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /bind\(\) to unix:\S+\/missing\/smtp\.sock failed \(2: No such file or directory\)/);
  } finally {
    cleanup();
  }
});

test("-t while nginx, or Postern, serves the same configuration: both succeed", async () => {
  for (const start of [startNginx, startPostern]) {
    const [port] = await freePorts(1);
    const proxy = await start(`auth_http 127.0.0.1:1/auth;\nserver { listen 127.0.0.1:${port}; protocol smtp; }`);
    try {
      const n = run(NGINX, ["-t", "-p", proxy.prefix, "-c", proxy.configPath, "-e", join(proxy.prefix, "nginx-t.log")]);
      const p = postern(["-t", "-p", proxy.prefix, "-c", proxy.configPath, "-e", join(proxy.prefix, "postern-t.log")]);
      assert.equal(p.stderr, n.stderr, `${proxy.kind} running: stderr`);
      assert.equal(p.status, n.status);
      assert.equal(n.status, 0);
    } finally {
      await proxy.stop();
    }
  }
});

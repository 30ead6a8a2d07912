/**
 * Workers never run as root (issue 10, item 2). Started as root, nginx's
 * workers take the `user` directive's user, or by default `nobody` with
 * group `nobody`, or `nogroup` where there is no such group (Debian's
 * nginx 1.22.1: nobody/nogroup). Postern and nginx run the same files; the
 * workers' /proc/PID/status Uid/Gid/Groups lines must be equal and not 0,
 * and TLS still works with a key only root can read (it is loaded before
 * the workers drop their privileges).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { certs } from "../support/certs.js";
import { freePorts } from "../support/ports.js";
import { startNginx } from "../support/nginx.js";
import { startPostern } from "../support/postern.js";
import type { MailProxyProcess } from "../support/mail-proxy.js";
import { childPids, procIds, waitFor } from "./harness.js";

/** The greeting over implicit TLS. */
function tlsGreeting(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: "127.0.0.1", rejectUnauthorized: false });
    s.once("data", (d: Buffer) => {
      s.destroy();
      resolve(d.toString("latin1"));
    });
    s.once("error", reject);
  });
}

/** A copy of the test server's key that only root may read (0600 in a 0700 directory). */
function rootOnlyKey(): { dir: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), "postern-rootkey-"));
  chmodSync(dir, 0o700);
  const key = join(dir, "server.key");
  copyFileSync(certs().serverEcdsa.key, key);
  chmodSync(key, 0o600);
  return { dir, key };
}

/** The worker's credentials as /proc shows them, once it serves. */
async function workerIds(proxy: MailProxyProcess, port: number): Promise<ReturnType<typeof procIds>> {
  assert.equal(await tlsGreeting(port), "* OK IMAP4 ready\r\n", `${proxy.kind} greets over TLS`);
  const workers = await waitFor(`${proxy.kind} worker`, () => (childPids(proxy.pid).length === 1 ? childPids(proxy.pid) : undefined));
  return procIds(workers[0]!);
}

async function compare(mainExtra: string): Promise<{ nginx: ReturnType<typeof procIds>; postern: ReturnType<typeof procIds> }> {
  assert.equal(process.getuid?.(), 0, "these tests run as root");
  const { dir, key } = rootOnlyKey();
  const ids: Partial<Record<"nginx" | "postern", ReturnType<typeof procIds>>> = {};
  try {
    for (const [kind, start] of [
      ["nginx", startNginx],
      ["postern", startPostern],
    ] as const) {
      const [port] = await freePorts(1);
      const block = `server { listen 127.0.0.1:${port} ssl; protocol imap; auth_http 127.0.0.1:9/auth;
        ssl_certificate ${certs().serverEcdsa.cert}; ssl_certificate_key ${key}; }`;
      const proxy = await start(block, { workerProcesses: 1, mainExtra });
      try {
        ids[kind] = await workerIds(proxy, port!);
      } finally {
        await proxy.stop();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { nginx: ids.nginx!, postern: ids.postern! };
}

test("started as root without `user`: workers run as nobody with nginx's default group, as nginx's do; TLS with a root-only key works", async () => {
  const { nginx, postern } = await compare("");
  assert.deepEqual(postern, nginx);
  const nobody = 65534;
  assert.deepEqual(postern.uid, [nobody, nobody, nobody, nobody]);
  for (const g of postern.gid) assert.notEqual(g, 0);
  assert.ok(!postern.groups.includes(0), "no supplementary root group");
});

test("started as root with `user mail www-data`: workers take that user, group and its supplementary groups, as nginx's do", async () => {
  const { nginx, postern } = await compare("user mail www-data;");
  assert.deepEqual(postern, nginx);
  assert.deepEqual(postern.uid, [8, 8, 8, 8]);
  assert.deepEqual(postern.gid, [33, 33, 33, 33]);
});

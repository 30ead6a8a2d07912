/**
 * Workers run exactly the configuration the master validated (issue 10,
 * item 12): a worker respawned after the files changed on disk, without a
 * HUP, still runs the old configuration, included files, certificate and
 * key too; HUP then brings in the new one. nginx behaves the same way (its
 * workers are forked from the master's parsed cycle).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import tls from "node:tls";
import { certs } from "../support/certs.js";
import { Client, Instance, childPids, freePort, waitFor } from "./harness.js";

function mainConf(port: number, tlsPort?: number): string {
  const ssl =
    tlsPort === undefined ? "" : `server { listen 127.0.0.1:${tlsPort} ssl; protocol imap; ssl_certificate server.crt; ssl_certificate_key server.key; }`;
  return [
    "load_module /usr/lib/nginx/modules/ngx_mail_module.so;",
    "daemon off; master_process on; worker_processes 1; pid nginx.pid; error_log error.log info;",
    "events { worker_connections 64; }",
    `mail { auth_http 127.0.0.1:9/auth; include caps.conf; server { listen 127.0.0.1:${port}; protocol imap; } ${ssl} }`,
    "",
  ].join("\n");
}

/** Kills the only worker with SIGKILL and waits for its replacement to serve `port`. */
async function respawn(inst: Instance, master: number, port: number): Promise<void> {
  const [old] = await waitFor("one worker", () => (childPids(master).length === 1 ? childPids(master) : undefined));
  process.kill(old!, "SIGKILL");
  await waitFor("the replacement worker", () => childPids(master).length === 1 && childPids(master)[0] !== old);
  await waitFor("the replacement serving", () => new RegExp(`worker process ${old} exited on signal 9`).test(inst.log()));
  await eventually("a greeting", async () => {
    try {
      const c = await Client.connect(port);
      c.close();
      return true;
    } catch {
      return false;
    }
  });
}

/** Polls an async check until it is true (8 s at most). */
async function eventually(what: string, check: () => Promise<boolean>): Promise<void> {
  const end = Date.now() + 8000;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function capability(port: number): Promise<string> {
  const c = await Client.connect(port);
  try {
    assert.equal(await c.line(), "* OK IMAP4 ready");
    return await c.capability();
  } finally {
    c.close();
  }
}

/** The server certificate's fingerprint and the greeting over implicit TLS. */
function tlsHello(port: number): Promise<{ cert: string; greeting: string }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: "127.0.0.1", rejectUnauthorized: false });
    s.once("data", (d: Buffer) => {
      const cert = s.getPeerCertificate().fingerprint256;
      s.destroy();
      resolve({ cert, greeting: d.toString("latin1") });
    });
    s.once("error", reject);
  });
}

test("a worker respawned after the included file changed on disk runs the validated text; HUP brings the new one", async () => {
  const inst = new Instance();
  try {
    const port = await freePort();
    inst.write(mainConf(port));
    writeFileSync(join(inst.dir, "caps.conf"), "imap_capabilities IMAP4rev1 XOLD;\n");
    const master = await inst.up();
    assert.match(await capability(port), /XOLD/);
    // changed on disk, no HUP: the master never validated this
    writeFileSync(join(inst.dir, "caps.conf"), "imap_capabilities IMAP4rev1 XNEW;\n");
    await respawn(inst, master, port);
    const after = await capability(port);
    assert.match(after, /XOLD/);
    assert.doesNotMatch(after, /XNEW/);
    process.kill(master, "SIGHUP");
    await eventually("the new configuration", async () => /XNEW/.test(await capability(port)));
  } finally {
    await inst.cleanup();
  }
});

test("a worker respawned after the certificate and key were replaced on disk (one by garbage) still serves the validated ones", async () => {
  const inst = new Instance();
  try {
    const [port, tlsPort] = [await freePort(), await freePort()];
    const c = certs();
    copyFileSync(c.serverEcdsa.cert, join(inst.dir, "server.crt"));
    copyFileSync(c.serverEcdsa.key, join(inst.dir, "server.key"));
    inst.write(mainConf(port, tlsPort));
    writeFileSync(join(inst.dir, "caps.conf"), "");
    const master = await inst.up();
    const before = await tlsHello(tlsPort);
    assert.equal(before.greeting, "* OK IMAP4 ready\r\n");
    // another certificate, and a key that does not parse
    copyFileSync(c.serverRsa.cert, join(inst.dir, "server.crt"));
    writeFileSync(join(inst.dir, "server.key"), "not a key\n");
    await respawn(inst, master, port);
    const after = await tlsHello(tlsPort);
    assert.equal(after.greeting, "* OK IMAP4 ready\r\n");
    assert.equal(after.cert, before.cert);
    assert.doesNotMatch(inst.log(), /\[emerg\]/);
  } finally {
    await inst.cleanup();
  }
});

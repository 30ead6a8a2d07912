/**
 * limit_conn where Postern's mail module and nginx's stream module mean the
 * same thing, compared over TCP with two workers each: the same clients, in
 * the same order, are admitted or refused; the key is the real client's
 * address once realip has read a trusted PROXY header; a closed connection
 * gives its place back; the refusal is logged at limit_conn_log_level as
 * `limiting connections by zone "NAME"`. An `ssl` listener refuses with
 * the bare close on both. Where they differ: on a plain listener nginx's
 * stream proxy closes without a byte, Postern first says its protocol's
 * refusal (asserted in limit-conn-e2e.test.ts).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { certs } from "../../support/certs.js";
import { MailClient } from "../../support/client.js";
import { startFakeImap, type FakeBackend } from "../../support/fake-backend.js";
import type { MailProxyProcess } from "../../support/mail-proxy.js";
import { startNginx } from "../../support/nginx.js";
import { freePorts } from "../../support/ports.js";
import { startPostern } from "../../support/postern.js";

const STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so";
const ZONES = [
  "limit_conn_zone $binary_remote_addr zone=plain:32k;",
  "limit_conn_zone $binary_remote_addr zone=pp:32k;",
  "limit_conn_zone $binary_remote_addr zone=tls:32k;",
  "limit_conn_log_level warn;",
].join("\n");

interface Side {
  proxy: MailProxyProcess;
  plain: number;
  pp: number;
  tls: number;
}

let backend: FakeBackend;
const sides: Record<"nginx" | "postern", Side> = {} as never;

before(async () => {
  assert.ok(existsSync(STREAM_MODULE), `nginx's stream module is missing (${STREAM_MODULE}: Debian's libnginx-mod-stream)`);
  backend = await startFakeImap();
  const c = certs();
  const [a, b, d, e, f, g] = await freePorts(6);
  const streamServers = (plain: number, pp: number, tls: number): string =>
    [
      `server { listen 127.0.0.1:${plain}; proxy_pass 127.0.0.1:${backend.port}; limit_conn plain 2; }`,
      `server { listen 127.0.0.1:${pp} proxy_protocol; set_real_ip_from 127.0.0.1; proxy_pass 127.0.0.1:${backend.port}; limit_conn pp 1; }`,
      `server { listen 127.0.0.1:${tls} ssl; ssl_certificate ${c.serverRsa.cert}; ssl_certificate_key ${c.serverRsa.key}; proxy_pass 127.0.0.1:${backend.port}; limit_conn tls 1; }`,
    ].join("\n");
  const nginx = await startNginx("", {
    workerProcesses: 2,
    mainExtra: `load_module ${STREAM_MODULE};\nstream {\n${ZONES}\n${streamServers(a!, b!, d!)}\n}`,
    ports: [a!, b!, d!],
  });
  sides.nginx = { proxy: nginx, plain: a!, pp: b!, tls: d! };
  const mailServers = [
    `server { listen 127.0.0.1:${e}; protocol imap; limit_conn plain 2; }`,
    `server { listen 127.0.0.1:${f} proxy_protocol; protocol imap; set_real_ip_from 127.0.0.1; limit_conn pp 1; }`,
    `server { listen 127.0.0.1:${g} ssl; protocol imap; ssl_certificate ${c.serverRsa.cert}; ssl_certificate_key ${c.serverRsa.key}; limit_conn tls 1; }`,
  ].join("\n");
  const postern = await startPostern(`auth_http 127.0.0.1:9/auth;\n${ZONES}\n${mailServers}`, { workerProcesses: 2 });
  sides.postern = { proxy: postern, plain: e!, pp: f!, tls: g! };
});

after(async () => {
  await sides.nginx?.proxy.stop();
  await sides.postern?.proxy.stop();
  await backend?.close();
});

/** Connects (with a PROXY header from `source`, or TLS) and tells whether a `* OK` greeting came; admitted clients stay open. */
async function attempt(port: number, open: MailClient[], how: { source?: string; tls?: boolean } = {}): Promise<"admitted" | "refused"> {
  let c: MailClient;
  try {
    c = await MailClient.connect({ port, timeoutMs: 10000, ...(how.tls ? { tls: {} } : {}) });
  } catch {
    return "refused"; // the handshake met the close
  }
  if (how.source) await c.send(`PROXY TCP4 ${how.source} 127.0.0.1 40000 143\r\n`);
  const line = await c.readLine().catch(() => "");
  if (/^\* OK/.test(line)) {
    open.push(c);
    return "admitted";
  }
  c.close();
  return "refused";
}

/** Refusals met while waiting for a closed connection's place to come back, by side: each is logged too. */
const retried = new Map<Side, number>();

/** Runs the scenario on one side: who is admitted, in order. */
async function scenario(side: Side): Promise<string[]> {
  const open: MailClient[] = [];
  const seen: string[] = [];
  retried.set(side, 0);
  try {
    for (let i = 0; i < 3; i++) seen.push(`plain ${i}: ${await attempt(side.plain, open)}`);
    // a closed connection gives its place back (the close travels to the proxy first)
    open.shift()!.close();
    let again = "refused";
    for (let i = 0; i < 40 && again === "refused"; i++) {
      again = await attempt(side.plain, open);
      if (again === "refused") retried.set(side, retried.get(side)! + 1);
    }
    seen.push(`plain after a close: ${again}`);
    // realip: the PROXY header's source is the key
    seen.push(`pp 10.0.0.1: ${await attempt(side.pp, open, { source: "10.0.0.1" })}`);
    seen.push(`pp 10.0.0.1 again: ${await attempt(side.pp, open, { source: "10.0.0.1" })}`);
    seen.push(`pp 10.0.0.2: ${await attempt(side.pp, open, { source: "10.0.0.2" })}`);
    seen.push(`tls 0: ${await attempt(side.tls, open, { tls: true })}`);
    seen.push(`tls 1: ${await attempt(side.tls, open, { tls: true })}`);
    return seen;
  } finally {
    for (const c of open) c.close();
  }
}

/** The `limiting connections` lines: level, text and client, without time, pid and connection number. */
function limitLines(proxy: MailProxyProcess): string[] {
  return proxy
    .errorLog()
    .split("\n")
    .filter((l) => l.includes("limiting connections"))
    .map((l) => /\[(\w+)\] \d+#\d+: \*\d+ (limiting connections by zone "\w+")[^,]*, client: ([\d.]+)/.exec(l)?.slice(1).join(" ") ?? l)
    .sort();
}

test("limit_conn as nginx's stream module: the same clients refused, realip's address as the key, a close gives the place back, the same log line", async () => {
  const nginx = await scenario(sides.nginx);
  const postern = await scenario(sides.postern);
  assert.deepEqual(nginx, [
    "plain 0: admitted",
    "plain 1: admitted",
    "plain 2: refused",
    "plain after a close: admitted",
    "pp 10.0.0.1: admitted",
    "pp 10.0.0.1 again: refused",
    "pp 10.0.0.2: admitted",
    "tls 0: admitted",
    "tls 1: refused",
  ]);
  assert.deepEqual(postern, nginx);
  // one line per refusal: the close loop's retries (as many as the close took to reach each proxy) add theirs
  const plain = 'warn limiting connections by zone "plain" 127.0.0.1';
  const expected = (side: Side): string[] =>
    [
      ...Array<string>(1 + retried.get(side)!).fill(plain),
      'warn limiting connections by zone "pp" 10.0.0.1',
      'warn limiting connections by zone "tls" 127.0.0.1',
    ].sort();
  assert.deepEqual(limitLines(sides.nginx.proxy), expected(sides.nginx));
  assert.deepEqual(limitLines(sides.postern.proxy), expected(sides.postern));
});

/**
 * `ssl_session_cache shared:NAME:SIZE sync` across three real Postern nodes
 * (each its own prefix and ports, master and two workers) sharing one real
 * Redis and one secret_file: TLS 1.2 session ids and TLS 1.2/1.3 tickets
 * made on any node resume on every other, before and after a ticket key
 * rotation; a rotation lets most valid tickets resume; sessions never cross
 * TLS policies through the store; forged entries are misses; with Redis
 * down every client is served with full handshakes, and sharing returns
 * with Redis. Clients: openssl s_client -sess_out/-sess_in, Python's ssl.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Redis } from "ioredis";
import { StoreSeal } from "../../../src/event/shared-store/seal.js";
import { certs } from "../../support/certs.js";
import type { MailProxyProcess } from "../../support/mail-proxy.js";
import { freePorts } from "../../support/ports.js";
import { posternCommand, repoRoot, startPostern } from "../../support/postern.js";
import { type RedisServer, startRedis } from "../../support/redis.js";
import { sClient, sessionLine } from "./helpers.js";

/** The ticket key period (ssl_session_timeout of the ticket servers). */
const PERIOD_S = 4;

interface Node {
  readonly proxy: MailProxyProcess;
  /** TLS 1.2 session ids, tickets off, ssl_verify_client off. */
  readonly ids: number;
  /** Tickets on (keys from the store). */
  readonly tickets: number;
  /** Same cache name as `ids`, ssl_verify_client optional: another TLS policy. */
  readonly strict: number;
}

let redis: RedisServer;
let inspect: Redis;
let dir: string;
let secret: Buffer;
const nodes: Node[] = [];

function mailBlock(storePort: number, ports: number[]): string {
  const c = certs();
  return [
    `shared_store redis 127.0.0.1:${storePort} secret_file=${join(dir, "secret")} timeout=200ms;`,
    "auth_http 127.0.0.1:9/auth;",
    `ssl_certificate ${c.serverEcdsa.cert}; ssl_certificate_key ${c.serverEcdsa.key};`,
    `server { listen 127.0.0.1:${ports[0]} ssl; protocol imap; ssl_session_cache shared:IDS:1m sync; ssl_session_tickets off; }`,
    `server { listen 127.0.0.1:${ports[1]} ssl; protocol imap; ssl_session_cache shared:TK:1m sync; ssl_session_timeout ${PERIOD_S}s; }`,
    `server { listen 127.0.0.1:${ports[2]} ssl; protocol imap; ssl_session_cache shared:IDS:1m sync; ssl_session_tickets off;`,
    `  ssl_verify_client optional; ssl_client_certificate ${c.ca.cert}; }`,
  ].join("\n");
}

/** A Python ssl client kept running: sessions stay in its memory. */
class PyClient {
  readonly #child: ChildProcess;
  readonly #answers: string[] = [];
  readonly #waiting: ((line: string) => void)[] = [];
  constructor() {
    this.#child = spawn("python3", [join(repoRoot(), "test/mail/ssl/fixtures/resume-driver.py")], { stdio: ["pipe", "pipe", "inherit"] });
    createInterface({ input: this.#child.stdout! }).on("line", (line) => {
      const w = this.#waiting.shift();
      if (w) w(line);
      else this.#answers.push(line);
    });
  }
  async connect(port: number, version: "1.2" | "1.3", save?: string, offer?: string): Promise<{ reused: boolean; greeting: string; protocol: string }> {
    this.#child.stdin!.write(JSON.stringify({ op: "connect", port, version, save, offer }) + "\n");
    const line = this.#answers.shift() ?? (await new Promise<string>((r) => this.#waiting.push(r)));
    const answer = JSON.parse(line) as { reused: boolean; greeting: string; protocol: string; error?: string };
    assert.equal(answer.error, undefined, `python client on ${port}: ${answer.error}`);
    return answer;
  }
  close(): void {
    this.#child.stdin!.end();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until the wall clock is `fraction` into a ticket key period. */
async function untilFraction(fraction: number): Promise<void> {
  const p = PERIOD_S * 1000;
  const now = Date.now();
  const at = Math.floor(now / p) * p + fraction * p;
  await sleep(at > now ? at - now : at + p - now);
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, ms = 8000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** s_client: a new TLS 1.2 session saved, or an offered one; whether it was reused. */
async function sClientResume(port: number, sess: string, save: boolean): Promise<boolean> {
  const run = await sClient(port, ["-tls1_2", save ? "-sess_out" : "-sess_in", sess], 10000, true);
  const line = sessionLine(run);
  assert.ok(line, run.stdout + run.stderr);
  return line.reused;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "postern-shared-tls-"));
  secret = randomBytes(32);
  writeFileSync(join(dir, "secret"), secret);
  redis = await startRedis();
  inspect = new Redis(redis.port, "127.0.0.1", { lazyConnect: false });
  // the outage test stops Redis under it
  inspect.on("error", () => undefined);
  for (let i = 0; i < 3; i++) {
    const ports = await freePorts(3);
    const proxy = await startPostern(mailBlock(redis.port, ports), { workerProcesses: 2 });
    nodes.push({ proxy, ids: ports[0]!, tickets: ports[1]!, strict: ports[2]! });
  }
});

after(async () => {
  await Promise.all(nodes.map((n) => n.proxy.stop()));
  inspect.disconnect();
  await redis.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("ssl_session_cache ... sync", () => {
  test("a TLS 1.2 session made through node A resumes on nodes B and C (openssl s_client and Python)", async () => {
    const [a, b, c] = nodes as [Node, Node, Node];
    const sess = join(dir, "a.pem");
    assert.equal(await sClientResume(a.ids, sess, true), false);
    assert.equal(await sClientResume(b.ids, sess, false), true, "node B resumes node A's session id");
    assert.equal(await sClientResume(c.ids, sess, false), true, "node C too");
    const py = new PyClient();
    try {
      assert.equal((await py.connect(c.ids, "1.2", "c")).reused, false);
      assert.equal((await py.connect(a.ids, "1.2", undefined, "c")).reused, true);
      assert.equal((await py.connect(b.ids, "1.2", undefined, "c")).reused, true);
    } finally {
      py.close();
    }
    const keys = await inspect.keys("postern:tls-session:*");
    assert.ok(keys.length >= 2, "sessions are in Redis under opaque names");
    const ttl = await inspect.pttl(keys[0]!);
    assert.ok(ttl > 0 && ttl <= 300_000, `expires at ssl_session_timeout (${ttl} ms)`);
  });

  test("no cross-policy resumption through the store: same cache name, other ssl_verify_client", async () => {
    const [a, b, c] = nodes as [Node, Node, Node];
    const sess = join(dir, "policy.pem");
    assert.equal(await sClientResume(a.ids, sess, true), false);
    assert.equal(await sClientResume(b.strict, sess, false), false, "a verify-off session is not offered to a verify-optional server");
    const strict = join(dir, "strict.pem");
    assert.equal(await sClientResume(b.strict, strict, true), false);
    assert.equal(await sClientResume(c.strict, strict, false), true, "the same policy on another node resumes");
    assert.equal(await sClientResume(a.ids, strict, false), false, "and the other way round does not cross either");
  });

  test("tickets from any node are accepted by every node, TLS 1.2 and 1.3, before and after a key rotation", async () => {
    const py = new PyClient();
    try {
      const everyPair = async (version: "1.2" | "1.3", tag: string): Promise<void> => {
        for (const [i, from] of nodes.entries()) {
          await py.connect(from.tickets, version, `${tag}${i}`);
          for (const to of nodes) assert.equal((await py.connect(to.tickets, version, undefined, `${tag}${i}`)).reused, true, `${tag}: node ${i}'s ticket`);
        }
      };
      await untilFraction(0.1);
      await everyPair("1.3", "before13-");
      await everyPair("1.2", "before12-");
      // tickets issued late in a period, offered again after the rotation
      await untilFraction(0.7);
      for (const [i, from] of nodes.entries()) await py.connect(from.tickets, "1.3", `late${i}`);
      await untilFraction(0.05);
      let resumed = 0;
      for (const [i] of nodes.entries()) for (const to of nodes) if ((await py.connect(to.tickets, "1.3", undefined, `late${i}`)).reused) resumed++;
      // a ticket of the previous key resumes with a probability falling from 1 across the period (a few percent move early)
      assert.ok(resumed >= 6, `${resumed} of 9 previous-key tickets resumed just after the rotation`);
      await everyPair("1.3", "after13-");
      await everyPair("1.2", "after12-");
    } finally {
      py.close();
    }
  });

  test("a rotation does not force clients with valid tickets into a full handshake at once", async () => {
    const py = new PyClient();
    const clients = 30;
    try {
      await untilFraction(0.6);
      for (let i = 0; i < clients; i++) await py.connect(nodes[i % 3]!.tickets, "1.3", `c${i}`);
      // just after the next rotation, every client comes back to another node
      await untilFraction(0.1);
      let resumed = 0;
      for (let i = 0; i < clients; i++) if ((await py.connect(nodes[(i + 1) % 3]!.tickets, "1.3", undefined, `c${i}`)).reused) resumed++;
      // the old key resumes with a probability that falls across the period: about 90% here
      assert.ok(resumed >= clients * 0.7, `${resumed} of ${clients} resumed right after the rotation`);
    } finally {
      py.close();
    }
  });

  test("forged, oversized and foreign entries in Redis are misses, never crashes", async () => {
    const [a, b] = nodes as [Node, Node, Node];
    const sess = join(dir, "forged.pem");
    const before = new Set(await inspect.keys("postern:tls-session:*"));
    assert.equal(await sClientResume(a.ids, sess, true), false);
    let key: string | undefined;
    await waitFor("the new session in Redis", async () => (key = (await inspect.keys("postern:tls-session:*")).find((k) => !before.has(k))) !== undefined);
    const seal = new StoreSeal(secret, "postern:");
    const der = seal.open("tls-session", key!, await inspect.getBuffer(key!), 64 * 1024);
    assert.ok(der, "the test opens the value with the cluster's secret");
    const forgeries: [string, Buffer][] = [
      ["garbage", randomBytes(300)],
      ["sealed for another key", seal.seal("tls-session", `${key}x`, der)],
      ["sealed but not an SSL_SESSION", seal.seal("tls-session", key!, randomBytes(200))],
      ["sealed, oversized", seal.seal("tls-session", key!, Buffer.concat([der, Buffer.alloc(40_000)]))],
      [
        "sealed, another session id",
        seal.seal("tls-session", key!, Buffer.from(der.toString("hex").replace(/0420[0-9a-f]{64}/, `0420${"00".repeat(32)}`), "hex")),
      ],
    ];
    assert.notDeepEqual(seal.open("tls-session", key!, forgeries[4]![1], 64 * 1024), der, "the id was changed");
    for (const [what, value] of forgeries) {
      await inspect.set(key!, value);
      assert.equal(await sClientResume(b.ids, sess, false), false, `${what}: a full handshake`);
    }
    // every ticket key garbage too: nodes keep their keys, replace the garbage, and still serve
    for (const k of await inspect.keys("postern:ticket-keys:*")) await inspect.set(k, randomBytes(64));
    const py = new PyClient();
    try {
      await py.connect(a.tickets, "1.3", "t");
      assert.equal((await py.connect(b.tickets, "1.3", undefined, "t")).reused, true);
    } finally {
      py.close();
    }
    for (const n of nodes) assert.doesNotMatch(n.proxy.errorLog(), /\[(emerg|alert|crit)\]|exited on signal|exited with code [1-9]/);
  });

  test("Redis down: full handshakes, every client served, warn logged; Redis back: sharing returns", async () => {
    const [a, b, c] = nodes as [Node, Node, Node];
    await redis.stop();
    try {
      const py = new PyClient();
      try {
        let served = 0;
        for (let i = 0; i < 12; i++) {
          const r = await py.connect(nodes[i % 3]!.ids, "1.2");
          if (r.greeting.startsWith("* OK")) served++;
        }
        assert.equal(served, 12, "every client served while Redis is down");
        const sess = join(dir, "down.pem");
        assert.equal(await sClientResume(a.ids, sess, true), false);
        assert.equal(await sClientResume(b.ids, sess, false), false, "no sharing while the store is down");
        assert.equal(await sClientResume(a.ids, sess, false), true, "the node's own cache still resumes");
      } finally {
        py.close();
      }
      for (const n of nodes) await waitFor("the warning", () => /\[warn\].*shared store redis 127\.0\.0\.1:\d+ unavailable/.test(n.proxy.errorLog()));
    } finally {
      await redis.start();
    }
    for (const n of nodes) await waitFor("the store's return", () => /\[warn\].*shared store .* is available again/.test(n.proxy.errorLog()));
    const sess = join(dir, "back.pem");
    assert.equal(await sClientResume(c.ids, sess, true), false);
    assert.equal(await sClientResume(a.ids, sess, false), true, "sharing returns without a restart");
    const py = new PyClient();
    try {
      await waitFor(
        "ticket keys agreed again",
        async () => {
          await py.connect(b.tickets, "1.3", "back");
          return (await py.connect(c.tickets, "1.3", undefined, "back")).reused;
        },
        3 * PERIOD_S * 1000,
      );
    } finally {
      py.close();
    }
  });
});

describe("ssl_session_cache ... sync: configuration", () => {
  /** `postern -t` on a mail block: its stderr. */
  const check = (mail: string): string => {
    const conf = join(dir, "t.conf");
    writeFileSync(conf, `pid ${dir}/t.pid;\nevents {}\nmail {\nauth_http 127.0.0.1:9/auth;\n${mail}\n}\n`);
    const [bin, ...pre] = posternCommand();
    const r = spawnSync(bin!, [...pre, "-t", "-p", `${dir}/`, "-c", conf, "-e", "stderr"], { encoding: "utf8", timeout: 20000 });
    return r.stderr;
  };

  test("sync must follow a shared cache, and needs a shared_store; errors name the file and line", () => {
    assert.match(check(`ssl_session_cache builtin sync;`), /\[emerg\].*"sync" must follow "shared:name:size" in "ssl_session_cache" in \S+t\.conf:5/);
    assert.match(check(`ssl_session_cache sync shared:A:1m;`), /"sync" must follow "shared:name:size"/);
    assert.match(check(`ssl_session_cache shared:A:1m sync;`), /\[emerg\].*"ssl_session_cache" zone "A" is "sync" but no "shared_store" is configured/);
    const ok = check(`shared_store redis 127.0.0.1:1 secret_file=${join(dir, "secret")};\nssl_session_cache builtin:100 shared:A:1m sync;`);
    assert.match(ok, /test is successful/, ok);
  });
});

/**
 * Two or three real Postern nodes (master_process on, two workers each,
 * their own prefix and ports) sharing one real Redis through shared_store,
 * with the real fake auth service and a fake IMAP backend: the bed of the
 * shared-store tests. Each node's mail block is the same text with its own
 * listen port, as operators deploy a cluster.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { MailClient } from "../../support/client.js";
import { type FakeBackend, startFakeImap } from "../../support/fake-backend.js";
import { type AuthHandler, type FakeAuth, startFakeAuth } from "../../support/fake-auth.js";
import type { MailProxyOptions, MailProxyProcess } from "../../support/mail-proxy.js";
import { freePorts } from "../../support/ports.js";
import { startPostern } from "../../support/postern.js";
import { type RedisOptions, type RedisServer, startRedis } from "../../support/redis.js";

export interface ClusterNode {
  readonly proxy: MailProxyProcess;
  readonly imap: number;
  readonly metrics: number;
}

export interface Cluster {
  readonly redis: RedisServer;
  readonly auth: FakeAuth;
  readonly backend: FakeBackend;
  readonly nodes: ClusterNode[];
  /** A client of the test's own to look inside Redis. */
  readonly inspect: Redis;
  readonly secret: Buffer;
  close(): Promise<void>;
}

export interface ClusterOptions {
  nodes?: number;
  /** Directives of the mail block (besides auth_http, shared_store and the server). */
  mail: string;
  /** Directives of the server block. */
  server?: string;
  /** The shared_store line's parameters after the address (default `secret_file=store.secret timeout=2s`). */
  store?: string;
  /** The address shared_store names (default the Redis started here). */
  storeAddress?: (redis: RedisServer) => string;
  redis?: RedisOptions;
  /** Extra files in each node's prefix. */
  files?: Record<string, string>;
  /** The auth service's answer (default: OK to the fake backend). */
  auth?: (backend: FakeBackend) => AuthHandler;
  proxyOptions?: MailProxyOptions;
}

export async function startCluster(o: ClusterOptions): Promise<Cluster> {
  const redis = await startRedis(o.redis);
  const backend = await startFakeImap();
  const auth = await startFakeAuth(
    o.auth?.(backend) ??
      (() => ({
        headers: [
          ["Auth-Status", "OK"],
          ["Auth-Server", "127.0.0.1"],
          ["Auth-Port", String(backend.port)],
        ] as Array<[string, string]>,
      })),
  );
  const secret = randomBytes(48);
  const nodes: ClusterNode[] = [];
  const inspect = new Redis(redis.port, "127.0.0.1", { lazyConnect: true, maxRetriesPerRequest: 1, password: o.redis?.password });
  const close = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.proxy.stop()));
    inspect.disconnect();
    await auth.close();
    await backend.close();
    await redis.close();
  };
  try {
    for (let i = 0; i < (o.nodes ?? 2); i++) {
      const [imap, metrics] = (await freePorts(2)) as [number, number];
      const address = o.storeAddress?.(redis) ?? `127.0.0.1:${redis.port}`;
      const proxy = await startPostern(
        [
          `auth_http ${auth.url};`,
          // `store` may go on with more directives after the line (shared_store_ssl ...)
          // timeout=2s by default: the tests count across nodes, and on a loaded machine the default 100 ms can pass
          // before Redis answers, which falls back to node-local counts (outage.test.ts names its own timeout)
          `shared_store redis ${address} ${o.store ?? "secret_file=store.secret timeout=2s"};`,
          `metrics_listen 127.0.0.1:${metrics};`,
          o.mail,
          `server { listen 127.0.0.1:${imap}; protocol imap; ${o.server ?? ""} }`,
        ].join("\n"),
        {
          workerProcesses: 2,
          ...o.proxyOptions,
          files: { "store.secret": secret.toString("hex"), ...o.files },
          ports: [imap, metrics],
        },
      );
      nodes.push({ proxy, imap, metrics });
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { redis, auth, backend, nodes, inspect, secret, close };
}

/** Opens a session and reads the greeting (or whatever comes before the close). */
export async function connect(node: ClusterNode, localAddress?: string): Promise<{ client: MailClient; first: string }> {
  const client = await MailClient.connect({ port: node.imap, localAddress });
  const first = await client.readLine().catch(() => "");
  return { client, first };
}

/** One IMAP LOGIN on a fresh session: the tagged reply; the session is closed after. */
export async function login(node: ClusterNode, user: string, password = "secret", localAddress?: string): Promise<string> {
  const { client, first } = await connect(node, localAddress);
  try {
    if (!first.startsWith("* OK")) return first;
    await client.send(`a1 LOGIN ${user} ${password}\r\n`);
    return await client.read(/^a1 .*\r\n/m, 8000);
  } finally {
    client.close();
  }
}

/** The node's metrics page. */
export async function metricsPage(node: ClusterNode): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${node.metrics}/metrics`);
  return await res.text();
}

/** A sample's value on a metrics page (0 when absent). */
export function sample(page: string, name: string): number {
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const m = new RegExp(`^${escaped} (\\S+)$`, "m").exec(page);
  return m ? Number(m[1]) : 0;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` until true, or fails with `what`. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string | (() => string)): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === "string" ? what : what()}`);
    await sleep(50);
  }
}

/** The lines of a node's error log matching `re`. */
export function logLines(node: ClusterNode, re: RegExp): string[] {
  return node.proxy
    .errorLog()
    .split("\n")
    .filter((l) => re.test(l));
}

/**
 * A real client under load: Python's imaplib logging in and out in a loop,
 * alternating between the nodes, a new login each time (so each is a
 * cache miss that asks the store), until stopped. Resolves with the number
 * of logins that succeeded and the failures' texts.
 */
export function imaplibLoop(ports: readonly number[]): { stop(): Promise<{ ok: number; failed: string[] }> } {
  const script = `
import imaplib, sys, json, select
ports = [int(p) for p in sys.argv[1:]]
ok, failed, i = 0, [], 0
while True:
    if select.select([sys.stdin], [], [], 0)[0]:
        break
    port = ports[i % len(ports)]
    i += 1
    try:
        c = imaplib.IMAP4("127.0.0.1", port, timeout=10)
        c.login("loop%d" % i, "secret")
        c.logout()
        ok += 1
    except Exception as e:
        failed.append("%d: %r" % (port, e))
print(json.dumps({"ok": ok, "failed": failed}))
`;
  const child = spawn("python3", ["-c", script, ...ports.map(String)], { stdio: ["pipe", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  const done = new Promise<void>((r) => child.on("exit", () => r()));
  return {
    async stop() {
      child.stdin.end("stop\n");
      await done;
      return JSON.parse(out) as { ok: number; failed: string[] };
    },
  };
}

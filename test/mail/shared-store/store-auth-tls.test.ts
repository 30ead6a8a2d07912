/**
 * The connection to the store: a password from password_file (redis
 * `--requirepass`), a wrong password (the warn line, the node-local
 * fallback, logins still served), TLS to Debian's redis-server built with
 * TLS (`--tls-port`, certificates from test/support/certs.ts), and a
 * verify failure with the wrong CA (warn line, fallback, logins served).
 * A node shows it used the store by the sealed auth cache entry it wrote.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { certs } from "../../support/certs.js";
import { freePort } from "../../support/ports.js";
import { type Cluster, type ClusterOptions, eventually, logLines, login, startCluster } from "./cluster.js";

const MAIL = "auth_http_cache zone=answers:64k ok=1m sync;";
const DOWN = /\[warn\] .*shared store redis 127\.0\.0\.1:\d+ unavailable \((.*)\), node-local state is used until it returns$/;

/**
 * `timeout=2s`: the tests read why the store was refused (a wrong password, a
 * certificate), which the store's answer tells; on a loaded machine the
 * default 100 ms can pass before it, and the reason logged is the timeout
 * (outage.test.ts covers timeouts).
 */
async function withCluster(o: Omit<ClusterOptions, "mail">, body: (c: Cluster) => Promise<void>): Promise<void> {
  const store = o.store?.replace("secret_file=store.secret", "secret_file=store.secret timeout=2s");
  assert.ok(store?.includes("timeout=2s"), "every store line of this file names the secret file first");
  const cluster = await startCluster({ nodes: 1, mail: MAIL, ...o, store });
  try {
    await body(cluster);
  } finally {
    await cluster.close();
  }
}

/** The auth cache entries in Redis (a node that reached the store wrote one per answer). */
async function entries(cluster: Cluster): Promise<number> {
  return (await cluster.inspect.keys("postern:auth-answer:*")).length;
}

test("password_file: the node authenticates to a Redis with requirepass and writes its entries", async () => {
  await withCluster(
    { redis: { password: "store-pass-1" }, store: "secret_file=store.secret password_file=store.pass", files: { "store.pass": "store-pass-1\n" } },
    async (cluster) => {
      assert.match(await login(cluster.nodes[0]!, "dora"), /^a1 OK/);
      await eventually(async () => (await entries(cluster)) === 1, 3000, "the entry in Redis");
      assert.equal(logLines(cluster.nodes[0]!, DOWN).length, 0);
    },
  );
});

test("a wrong password: one warn line, the node-local cache serves, logins work", async () => {
  await withCluster(
    { redis: { password: "store-pass-1" }, store: "secret_file=store.secret password_file=store.pass", files: { "store.pass": "not-the-password\n" } },
    async (cluster) => {
      const node = cluster.nodes[0]!;
      for (let i = 0; i < 3; i++) assert.match(await login(node, "erin"), /^a1 OK/);
      // the node-local cache still works: one request for three logins
      assert.equal(cluster.auth.parsed.filter((r) => r.header("Auth-User") === "erin").length, 1);
      await eventually(() => logLines(node, DOWN).length >= 1, 3000, "the warn line");
      assert.equal(logLines(node, DOWN).length, 1);
      assert.match(DOWN.exec(logLines(node, DOWN)[0]!)![1]!, /WRONGPASS|invalid username-password/i);
      assert.equal(logLines(node, /store-pass-1|not-the-password/).length, 0, "no password in the log");
      assert.equal(await entries(cluster), 0);
    },
  );
});

async function tlsOptions(trusted: string, authClients = "no"): Promise<Omit<ClusterOptions, "mail">> {
  const c = certs();
  const tlsPort = await freePort();
  return {
    redis: {
      extraArgs: [
        "--tls-port",
        String(tlsPort),
        "--tls-cert-file",
        c.serverRsa.cert,
        "--tls-key-file",
        c.serverRsa.key,
        "--tls-ca-cert-file",
        c.ca.cert,
        "--tls-auth-clients",
        authClients,
      ],
    },
    storeAddress: () => `127.0.0.1:${tlsPort}`,
    files: { "store-ca.pem": trusted, "client.pem": c.clientValid.certPem, "client.key": c.clientValid.keyPem },
  };
}

test("shared_store_ssl: TLS to redis-server's --tls-port, verified against the CA and the name, with a client certificate", async () => {
  // --tls-auth-clients yes: Redis refuses a client without a certificate of its CA
  const o = await tlsOptions(certs().ca.certPem, "yes");
  await withCluster(
    {
      ...o,
      store: [
        "secret_file=store.secret;",
        "shared_store_ssl on;",
        "shared_store_ssl_trusted_certificate store-ca.pem;",
        "shared_store_ssl_name localhost;",
        "shared_store_ssl_certificate client.pem;",
        "shared_store_ssl_certificate_key client.key",
      ].join("\n"),
    },
    async (cluster) => {
      assert.match(await login(cluster.nodes[0]!, "fay"), /^a1 OK/);
      await eventually(
        async () => (await entries(cluster)) === 1,
        3000,
        () => `the entry written over TLS: ${logLines(cluster.nodes[0]!, /shared store/).join("\n")}`,
      );
      assert.equal(logLines(cluster.nodes[0]!, DOWN).length, 0);
    },
  );
});

test("shared_store_ssl with the wrong CA: the verify failure is logged once, the node falls back, logins work", async () => {
  const o = await tlsOptions(certs().clientSelfSigned.certPem);
  await withCluster({ ...o, store: `secret_file=store.secret;\nshared_store_ssl on;\nshared_store_ssl_trusted_certificate store-ca.pem` }, async (cluster) => {
    const node = cluster.nodes[0]!;
    for (let i = 0; i < 2; i++) assert.match(await login(node, "gus"), /^a1 OK/);
    // the node-local cache serves meanwhile
    assert.equal(cluster.auth.parsed.filter((r) => r.header("Auth-User") === "gus").length, 1);
    await eventually(() => logLines(node, DOWN).length >= 1, 3000, "the warn line");
    assert.equal(logLines(node, DOWN).length, 1);
    assert.match(DOWN.exec(logLines(node, DOWN)[0]!)![1]!, /certificate/i);
    assert.equal(await entries(cluster), 0);
  });
});

test("shared_store_ssl_verify off: the wrong CA is not checked (encryption without authentication, as proxy_ssl_verify off)", async () => {
  const o = await tlsOptions(certs().clientSelfSigned.certPem);
  await withCluster(
    { ...o, store: `secret_file=store.secret;\nshared_store_ssl on;\nshared_store_ssl_trusted_certificate store-ca.pem;\nshared_store_ssl_verify off` },
    async (cluster) => {
      assert.match(await login(cluster.nodes[0]!, "hal"), /^a1 OK/);
      await eventually(async () => (await entries(cluster)) === 1, 3000, "the entry written over unverified TLS");
      assert.equal(logLines(cluster.nodes[0]!, DOWN).length, 0);
    },
  );
});

test("shared_store_ssl to an IP address: checked against the certificate's IP names, never sent as SNI (Node.js 26 refuses an address there)", async () => {
  // the address alone: 127.0.0.1 is in the server certificate's subjectAltName
  const o = await tlsOptions(certs().ca.certPem);
  await withCluster({ ...o, store: `secret_file=store.secret;\nshared_store_ssl on;\nshared_store_ssl_trusted_certificate store-ca.pem` }, async (cluster) => {
    assert.match(await login(cluster.nodes[0]!, "ida"), /^a1 OK/);
    await eventually(
      async () => (await entries(cluster)) === 1,
      3000,
      () => `the entry written over TLS verified by address: ${logLines(cluster.nodes[0]!, /shared store/).join("\n")}`,
    );
    assert.equal(logLines(cluster.nodes[0]!, DOWN).length, 0);
  });
  // shared_store_ssl_name naming another address: the certificate does not name it, so the store is refused
  const other = await tlsOptions(certs().ca.certPem);
  await withCluster(
    { ...other, store: `secret_file=store.secret;\nshared_store_ssl on;\nshared_store_ssl_trusted_certificate store-ca.pem;\nshared_store_ssl_name 127.0.0.2` },
    async (cluster) => {
      const node = cluster.nodes[0]!;
      assert.match(await login(node, "jon"), /^a1 OK/);
      await eventually(() => logLines(node, DOWN).length >= 1, 3000, "the warn line");
      assert.match(DOWN.exec(logLines(node, DOWN)[0]!)![1]!, /127\.0\.0\.2/);
      assert.equal(await entries(cluster), 0);
    },
  );
});

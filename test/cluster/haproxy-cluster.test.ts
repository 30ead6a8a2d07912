/**
 * Three Postern nodes behind a real HAProxy, as operators deploy them
 * (docs/scaling.md): `send-proxy-v2` to `listen ... proxy_protocol`,
 * health checks on metrics_listen's /health, one Redis as the shared
 * store. Real clients (Python's imaplib, poplib and smtplib, curl, openssl
 * s_client) log in through HAProxy; a node is reloaded (HUP), upgraded
 * (USR2, then QUIT of the old master), drained (QUIT) and killed (SIGKILL
 * of its master and workers) under load. What a user sees: no client lost
 * on a reload, an upgrade or a drain, only the killed node's own sessions
 * lost on a crash, and HAProxy sending new clients to the others.
 *
 * One cluster serves the whole file; the tests run in order and leave
 * every node up for the next one.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { CLIENT_IP, type Cluster, PASSWORD, USER, alive, startCluster } from "../support/cluster.js";
import { Load, holdSessions, probeHeld, shortSession } from "../support/cluster-load.js";
import { haproxyAvailable } from "../support/haproxy.js";

let cluster: Cluster;

before(async () => {
  assert.ok(haproxyAvailable(), "haproxy is not installed (scripts/install-test-deps.sh installs it)");
  cluster = await startCluster();
});

after(async () => {
  await cluster?.stop();
});

function run(file: string, args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { timeout: 30_000, encoding: "latin1" }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

/** Python's own clients, each socket bound to CLIENT_IP (imaplib and poplib have no source address switch: _create_socket is overridden). */
const PYTHON_CLIENTS = `
import imaplib, poplib, smtplib, socket, sys
src, user, password = (sys.argv[1], 0), sys.argv[2], sys.argv[3]
imap_port, pop_port, smtp_port = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
class Imap(imaplib.IMAP4):
    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=src)
class Pop(poplib.POP3):
    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=src)
for i in range(3):
    m = Imap("127.0.0.1", imap_port)
    print("imap", m.login(user, password)[0], m.noop()[0], m.logout()[0])
    p = Pop("127.0.0.1", pop_port)
    p.user(user)
    print("pop3", p.pass_(password).split()[0].decode(), p.quit().split()[0].decode())
    s = smtplib.SMTP("127.0.0.1", smtp_port, source_address=src)
    s.ehlo("client.example")
    print("smtp", s.login(user, password)[0], s.quit()[0])
`;

test("real clients log in through HAProxy on all three nodes; the auth service sees the client's address, not HAProxy's", async () => {
  const before = cluster.logins().length;
  const py = await run("python3", ["-c", PYTHON_CLIENTS, CLIENT_IP, USER, PASSWORD, ...["imap", "pop3", "smtp"].map((f) => String(cluster.port(f as "imap")))]);
  assert.equal(py.code, 0, py.stderr);
  assert.deepEqual(py.stdout.trim().split("\n"), Array(3).fill(["imap OK OK BYE", "pop3 +OK +OK", "smtp 235 221"]).flat());
  const curl = await run("curl", ["-sS", "--insecure", "--interface", CLIENT_IP, "-u", `${USER}:${PASSWORD}`, `imaps://127.0.0.1:${cluster.port("imaps")}/`]);
  assert.equal(curl.code, 0, curl.stderr);
  // s_client cannot bind a source address: its login is the one from 127.0.0.1
  const sClient = await run(
    "openssl",
    ["s_client", "-connect", `127.0.0.1:${cluster.port("imaps")}`, "-quiet", "-verify_quiet"],
    `a LOGIN sclient ${PASSWORD}\r\nb LOGOUT\r\n`,
  );
  assert.match(sClient.stdout, /^a OK /m, sClient.stderr);
  const logins = cluster.logins().slice(before);
  assert.equal(logins.length, 3 * 3 + 2);
  // each protocol's logins went round the three nodes
  for (const k of [0, 1, 2])
    assert.deepEqual(
      new Set(
        logins
          .slice(0, 9)
          .filter((_, i) => i % 3 === k)
          .map((l) => l.node),
      ),
      new Set(["n1", "n2", "n3"]),
    );
  const fromClient = logins.filter((l) => l.user !== "sclient");
  assert.deepEqual(new Set(fromClient.map((l) => l.clientIp)), new Set([CLIENT_IP]));
  assert.deepEqual(
    logins.filter((l) => l.user === "sclient").map((l) => l.clientIp),
    ["127.0.0.1"],
  );
  // HAProxy counted sessions on every node of every frontend used
  for (const s of (await cluster.haproxy.states()).filter((r) => r.backend !== "postern_imaps")) assert.ok(s.total >= 1, JSON.stringify(s));
});

test("a HUP reload of one node under load loses no client, and its open sessions stay", async () => {
  const held = await holdSessions(cluster.port("imap"), 6, "reload-held");
  const load = new Load(cluster.port("imap"), 6, "reload-load");
  try {
    await load.flowing();
    await cluster.nodes[1]!.reload();
    await load.flowing(30);
  } finally {
    const r = await load.stop();
    assert.deepEqual(r.failures, []);
  }
  const probe = await probeHeld(held);
  for (const c of held.values()) c.close();
  assert.deepEqual(probe.dead, []);
  assert.equal((await cluster.haproxy.states()).filter((s) => s.status !== "UP").length, 0);
});

test("a USR2 binary upgrade, then QUIT of the old master, under load loses no client; HAProxy never marks the node down", async () => {
  const node = cluster.nodes[2]!;
  const held = await holdSessions(cluster.port("imap"), 6, "usr2-held");
  const load = new Load(cluster.port("imap"), 6, "usr2-load");
  const downs: string[] = [];
  let watching = true;
  const watch = (async () => {
    while (watching) {
      // one failed check (`UP 1/2`, a slow answer on a loaded machine) is what `fall` tolerates; DOWN is not
      for (const s of await cluster.haproxy.states()) if (s.server === node.name && s.status.startsWith("DOWN")) downs.push(`${s.backend} ${s.status}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  let oldMaster: number | undefined;
  try {
    await load.flowing();
    oldMaster = node.pid();
    // not waiting for the old master's exit: its workers still serve two held sessions
    const newMaster = await node.upgrade(false);
    assert.notEqual(newMaster, oldMaster);
    await load.flowing(30);
    assert.equal((await node.health()).status, 200);
  } finally {
    watching = false;
    await watch;
    const r = await load.stop();
    assert.deepEqual(r.failures, []);
  }
  // the held sessions the old master's workers serve still work, then end
  const probe = await probeHeld(held);
  for (const c of held.values()) c.close();
  assert.deepEqual(probe.dead, []);
  assert.deepEqual(downs, []);
  // the new master's workers served logins after the upgrade
  assert.match(node.log(), /using inherited sockets from ".*metrics_listen 127\.0\.0\.1:\d+;"/);
  const end = Date.now() + 20_000;
  while (oldMaster !== undefined && alive(oldMaster) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  assert.equal(oldMaster !== undefined && alive(oldMaster), false, "the old master exited once its sessions ended");
});

test("QUIT drains a node: /health says draining, HAProxy sends new clients elsewhere, the node's open sessions finish", async () => {
  const node = cluster.nodes[0]!;
  const held = await holdSessions(cluster.port("imap"), 6, "drain-held");
  const onNode = cluster
    .logins()
    .filter((l) => l.user.startsWith("drain-held") && l.node === node.name)
    .map((l) => l.user);
  // round robin spreads them, but not evenly: a node that came back moments ago may get more or fewer
  // (CI saw 4 of 9 and 6 of 9); what matters is that the node holds some and the others hold the rest
  assert.ok(onNode.length >= 1 && onNode.length <= 5, onNode.join(" "));
  const pid = node.pid()!;
  node.signal("SIGQUIT");
  // the signal is handled asynchronously: the first answers may still come before it
  let health = await node.health();
  for (let i = 0; i < 100 && health.status === 200; i++) health = await node.health();
  assert.deepEqual(health, { status: 503, body: "draining" });
  await cluster.haproxy.waitFor(node.name, "DOWN");
  const from = cluster.logins().length;
  const load = new Load(cluster.port("imap"), 4, "drain-load");
  await load.flowing(20);
  const r = await load.stop();
  assert.deepEqual(r.failures, []);
  const nodes = new Set(
    cluster
      .logins()
      .slice(from)
      .map((l) => l.node),
  );
  assert.deepEqual(nodes, new Set(["n2", "n3"]));
  // the draining node still serves its sessions, then exits when they end
  const probe = await probeHeld(held);
  assert.deepEqual(probe.dead, []);
  assert.ok(alive(pid));
  for (const c of held.values()) c.close();
  const end = Date.now() + 20_000;
  while (alive(pid) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  assert.equal(alive(pid), false);
  await node.start();
  await cluster.haproxy.waitFor(node.name, "UP");
});

test("a node killed under load loses only its own sessions; HAProxy marks it down and the others serve every new client", async () => {
  const node = cluster.nodes[0]!;
  const held = await holdSessions(cluster.port("imap"), 9, "kill-held");
  const nodeOf = (user: string): string | undefined => cluster.logins().find((l) => l.user === user)?.node;
  const heldOnNode = [...held.keys()].filter((u) => nodeOf(u) === node.name).sort();
  // round robin spreads 9 sessions over 3 nodes, but not always 3 each: a node back from the drain test may get
  // several more (CI saw 4 and 6); the test needs sessions on the killed node and on the others
  assert.ok(heldOnNode.length >= 1 && heldOnNode.length <= 8, heldOnNode.join(" "));
  const load = new Load(cluster.port("imap"), 6, "kill-load");
  let downAt: number;
  try {
    await load.flowing();
    await node.kill();
    await cluster.haproxy.waitFor(node.name, "DOWN");
    downAt = cluster.logins().length;
    await load.flowing(30);
  } finally {
    const r = await load.stop();
    // a session that failed was the killed node's (or had not reached a node's login yet when it died)
    const failedElsewhere = r.failures.filter((f) => nodeOf(f.user) !== undefined && nodeOf(f.user) !== node.name);
    assert.deepEqual(failedElsewhere, []);
  }
  assert.deepEqual(
    new Set(
      cluster
        .logins()
        .slice(downAt)
        .map((l) => l.node),
    ),
    new Set(["n2", "n3"]),
  );
  const probe = await probeHeld(held);
  for (const c of held.values()) c.close();
  assert.deepEqual(probe.dead, heldOnNode);
  assert.equal(probe.alive.length, held.size - heldOnNode.length);
  // the lost clients reconnect through HAProxy and are served by the others
  for (const user of heldOnNode) assert.equal(await shortSession(cluster.port("imap"), `${user}-again`), undefined);
  assert.ok(
    cluster
      .logins()
      .slice(-3)
      .every((l) => l.node !== node.name),
  );
});

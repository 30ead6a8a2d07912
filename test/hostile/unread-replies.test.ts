/**
 * A client that stops reading: it pipelines commands until the proxy's
 * replies fill the kernel's buffers both ways, then QUIT, and never reads
 * again. The proxy must not hold that connection for good: nginx's send
 * timer (`timeout`) closes it with "client timed out", and so must Postern,
 * also when it had already read the QUIT and closed the session with its
 * replies still queued (Postern reads on while under 16 KiB of replies wait;
 * nginx reads nothing while any wait). Postern gives the connection's
 * limit_conn slot back then.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { startNginx } from "../support/nginx.js";
import { startPostern } from "../support/postern.js";
import { connectTo, eventually, logLines, startBed, type Bed } from "./env.js";

const TIMEOUT_MS = 15_000;

/** The proxy's end of a client's connection in /proc/net/tcp: its state, or undefined when gone. */
function serverState(proxyPort: number, clientPort: number): string | undefined {
  const hex = (n: number): string => n.toString(16).toUpperCase().padStart(4, "0");
  for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1]?.endsWith(`:${hex(proxyPort)}`) && f[2]?.endsWith(`:${hex(clientPort)}`)) return f[3];
  }
  return undefined;
}

const ESTABLISHED = "01";

/**
 * The client, in Python for its fixed 4 KiB receive buffer (Node's sockets
 * cannot set one): reads nothing and sends CAPA (8 bytes: POP3's 128-byte
 * buffer holds a whole number of them, so pipelining them is never a
 * command too long), 100 at a time (a round every `fast` seconds) while the
 * proxy's kernel takes the replies (its send buffer grows to megabytes), 4
 * at a time (every `slow` seconds) once it stalls, so that only a few kilobytes of replies wait in the proxy
 * itself; when neither end's queue has moved for ten rounds (the send
 * buffer may grow for a while after a first stall), QUIT. It prints its
 * port and holds the connection until its stdin closes.
 */
const CLIENT = `
import socket, sys, time
port, fast, slow = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", port))
me = s.getsockname()[1]
def queues():
    hx = lambda n: "%04X" % n
    found = {}
    for line in open("/proc/net/tcp").read().split("\\n")[1:]:
        f = line.split()
        if len(f) > 4 and f[1].endswith(":" + hx(port)) and f[2].endswith(":" + hx(me)): found["unsent"] = int(f[4].split(":")[0], 16)
        if len(f) > 4 and f[1].endswith(":" + hx(me)) and f[2].endswith(":" + hx(port)): found["unread"] = int(f[4].split(":")[1], 16)
    return found
last, steady, n = queues(), 0, 16
for i in range(20000):
    s.sendall(b"CAPA x\\r\\n" * n)
    time.sleep(fast if n == 100 else slow)
    now = queues()
    steady = steady + 1 if now == last and now.get("unread", 0) > 0 else 0
    n = 100 if now.get("unsent", 0) - last.get("unsent", 0) >= n * 40 else 4
    last = now
    if steady == 10: break
if steady < 10:
    print("never full", flush=True); sys.exit(1)
s.sendall(b"CAPA x\\r\\n" * 8 + b"QUIT\\r\\n")
print(me, flush=True)
sys.stdin.read()
`;

/**
 * A client that has stopped reading: its port, and stop() to let go of it.
 * `timeout` is a deadline from the greeting that commands do not re-arm
 * (nginx's and Postern's): the filling must end well within it. Paces that
 * do, found by trying: 10 ms rounds throughout for nginx (it stops reading
 * at its first unsent reply); for Postern 2 ms rounds, then 30 ms ones (it
 * reads on, and its kernel buffer keeps growing after a first stall).
 */
async function stopReading(port: number, paces: readonly [fast: number, slow: number]): Promise<{ clientPort: number; stop: () => void }> {
  const child = spawn("python3", ["-c", CLIENT, String(port), ...paces.map(String)], { stdio: ["pipe", "pipe", "inherit"] });
  const line = await new Promise<string>((resolve) => {
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("\n")) resolve(out.trim());
    });
    child.once("exit", () => resolve(out.trim()));
  });
  assert.match(line, /^\d+$/, `the client: ${line}`);
  return { clientPort: Number(line), stop: () => child.kill() };
}

/** The client's connection is no longer established on the proxy's side within `ms`. */
async function closedWithin(bed: Bed, clientPort: number, ms: number): Promise<void> {
  await eventually(() => serverState(bed.ports.pop3, clientPort) !== ESTABLISHED, ms, "the proxy closed the connection of a client that reads nothing");
}

test("nginx closes a client that stops reading its replies after `timeout` (the oracle)", async () => {
  const bed = await startBed({ start: startNginx, timeout: `${TIMEOUT_MS}ms` });
  try {
    const client = await stopReading(bed.ports.pop3, [0.01, 0.01]);
    await closedWithin(bed, client.clientPort, TIMEOUT_MS * 2);
    assert.ok(logLines(bed, "info", "client timed out (110: Connection timed out)").length >= 1, bed.proxy.errorLog());
    client.stop();
  } finally {
    await bed.stop();
  }
});

test("Postern closes a session ended with its replies unsent once the client has had `timeout` to read them, and frees its limit_conn slot", async () => {
  const bed = await startBed({
    start: startPostern,
    timeout: `${TIMEOUT_MS}ms`,
    extra: "  limit_conn_zone $binary_remote_addr zone=addr:32k;\n  limit_conn addr 1;",
  });
  try {
    // the case that held connections: Postern read the QUIT and closed the session, replies still queued
    let held: { clientPort: number; stop: () => void } | undefined;
    for (let attempt = 0; attempt < 5 && !held; attempt++) {
      const quits = logLines(bed, "debug", "close mail connection: client quit").length;
      const client = await stopReading(bed.ports.pop3, [0.002, 0.03]);
      try {
        await eventually(() => logLines(bed, "debug", "close mail connection: client quit").length > quits, 1000, "QUIT read");
        held = client;
      } catch {
        // more than 16 KiB of replies were queued, so the QUIT was not read: that connection ends by the deadline; try again
        client.stop();
        await closedWithin(bed, client.clientPort, TIMEOUT_MS * 2);
        await sleep(200); // its limit_conn slot is given back once the session has ended
      }
    }
    assert.ok(held, "Postern never read the QUIT behind the unread replies");
    assert.equal(serverState(bed.ports.pop3, held.clientPort), ESTABLISHED, "closed before the client had its time to read");
    await closedWithin(bed, held.clientPort, TIMEOUT_MS * 2);
    assert.ok(logLines(bed, "info", "client timed out (110: Connection timed out)").length >= 1, bed.proxy.errorLog());
    // the slot is free again: the next client from the same address is greeted
    const next = await connectTo(bed, "pop3");
    assert.match(await next.readLine(), /^\+OK /);
    next.close();
    held.stop();
  } finally {
    await bed.stop();
  }
});

/**
 * `error_log syslog:...` against nginx 1.22.1: the same configuration, the
 * same clients, one set of UDP receivers; the datagrams must be the same
 * after normalising only what cannot be: process ids, the clock, client
 * ports, and two documented differences (the version pair of the start-up
 * notice; nginx 1.22.1's empty host field before its first cycle is
 * current, a bug nginx fixed in 1.23.4). Connection numbers are compared by
 * order of appearance: nginx also numbers its own connections to the
 * auth_http server (`*1`, `*3`, `*5` for three clients), Postern numbers
 * clients only (`*1`, `*2`, `*3`), which is not the log format's business.
 *
 * Rule: docs/behaviour/cli.md#cli-8-the-error-log.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createSocket, type Socket } from "node:dgram";
import { hostname } from "node:os";
import net from "node:net";
import { nginxAvailable, startNginx } from "../support/nginx.js";
import { startPostern } from "../support/postern.js";
import { freePorts } from "../support/ports.js";
import type { MailProxyOptions, MailProxyProcess } from "../support/mail-proxy.js";

const HOST = hostname().toLowerCase();
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** UDP receivers by name; each keeps its datagrams in arrival order. */
class Receivers {
  readonly #sockets = new Map<string, Socket>();
  readonly got = new Map<string, string[]>();
  readonly ports = new Map<string, number>();

  static async open(names: readonly string[], ports: readonly number[]): Promise<Receivers> {
    const r = new Receivers();
    for (const [i, name] of names.entries()) {
      const socket = createSocket("udp4");
      r.got.set(name, []);
      socket.on("message", (m) => r.got.get(name)!.push(m.toString("latin1")));
      await new Promise<void>((resolve) => socket.bind(ports[i], "127.0.0.1", resolve));
      r.#sockets.set(name, socket);
      r.ports.set(name, ports[i]!);
    }
    return r;
  }
  port(name: string): number {
    return this.ports.get(name)!;
  }
  /** Takes what arrived so far and empties the lists. */
  take(): Map<string, string[]> {
    const out = new Map([...this.got].map(([k, v]) => [k, v.splice(0)]));
    return out;
  }
  close(): void {
    for (const s of this.#sockets.values()) s.close();
  }
}

/** Splits a datagram into its header fields and the error-log line it carries. */
const DATAGRAM = /^<(\d+)>(\w{3} [ \d]\d \d\d:\d\d:\d\d) (?:(\S*) )?(\w+): (.*)$/s;

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** The syslog header's time must be the error-log line's own time (nginx stamps both from one clock reading). */
function assertSameMoment(datagram: string, who: string): void {
  const m = DATAGRAM.exec(datagram);
  assert.ok(m, `${who}: not an RFC 3164 datagram: ${datagram}`);
  const line = /^(\d{4})\/(\d\d)\/(\d\d) (\d\d:\d\d:\d\d) /.exec(m[5]!);
  assert.ok(line, `${who}: the message is not an error-log line: ${datagram}`);
  const stamp = `${MONTHS[Number(line[2]) - 1]} ${String(Number(line[3])).padStart(2, " ")} ${line[4]}`;
  assert.equal(m[2], stamp, `${who}: header time and line time differ: ${datagram}`);
}

/**
 * Normalises one run's datagrams: pids by order of first appearance, times,
 * the client's ephemeral port; nginx 1.22.1's empty host field gets the host.
 */
function normalise(kind: MailProxyProcess["kind"], datagrams: Map<string, string[]>, nohostname: ReadonlySet<string>): Map<string, string[]> {
  const pids = new Map<string, string>();
  const pid = (p: string): string => {
    if (!pids.has(p)) pids.set(p, `PID${pids.size + 1}`);
    return pids.get(p)!;
  };
  const connections = new Map<string, string>();
  const connection = (n: string): string => {
    if (!connections.has(n)) connections.set(n, `*C${connections.size + 1}`);
    return connections.get(n)!;
  };
  const out = new Map<string, string[]>();
  for (const [name, list] of datagrams) {
    out.set(
      name,
      list.map((d) => {
        let s = d;
        // nginx 1.22.1 sends an empty host before its new cycle is current (the
        // start-up notices); nginx 1.23.4 fixed it ("incorrect logging"), Postern sends the host
        if (kind === "nginx" && !nohostname.has(name)) s = s.replace(/^(<\d+>\w{3} [ \d]\d \d\d:\d\d:\d\d) ( \w+: )/, `$1 ${HOST}$2`);
        // the documented pair: `nginx/1.22.1 (postern/X)` where nginx says `nginx/1.22.1`
        if (kind === "postern") s = s.replace(/: (nginx\/[0-9.]+) \(postern\/[0-9.]+[^)]*\)$/, ": $1");
        s = s.replace(/^(<\d+>)\w{3} [ \d]\d \d\d:\d\d:\d\d/, "$1TIME");
        s = s.replace(/\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d/, "DATE");
        s = s.replace(/(\d+)#(\d+): /, (_m, a: string, b: string) => `${pid(a)}#${pid(b)}: `);
        s = s.replace(/start worker process (\d+)$/, (_m, a: string) => `start worker process ${pid(a)}`);
        s = s.replace(/client 127\.0\.0\.1:\d+ connected/, "client 127.0.0.1:CPORT connected");
        s = s.replace(/(#PID\d+: )\*(\d+) /, (_m, head: string, n: string) => `${head}${connection(n)} `);
        return s;
      }),
    );
  }
  return out;
}

/** The lines both servers write: start-up notices and every session line (`*N`). */
const COMPARED = /: (?:nginx\/|OS: |getrlimit\(|start worker process|\*C\d+ )/;

async function readGreeting(socket: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    socket.once("data", (d) => resolve(d.toString("latin1")));
    socket.once("error", reject);
  });
}

async function closed(socket: net.Socket): Promise<void> {
  if (socket.destroyed) return;
  await new Promise<void>((resolve) => socket.once("close", () => resolve()));
}

/** One client dialogue: connect, read the greeting, send lines, wait for the server to close. */
async function dialogue(port: number, lines: readonly string[]): Promise<void> {
  const socket = net.connect(port, "127.0.0.1");
  socket.on("error", () => {});
  await readGreeting(socket);
  for (const l of lines) {
    socket.write(`${l}\r\n`);
    await sleep(50);
  }
  if (lines.length === 0) socket.end();
  await closed(socket);
}

interface Ports {
  imap: number;
  pop3: number;
  deadAuth: number;
}

/** Starts one server, runs the sessions, stops it; returns what the receivers got and its file log. */
async function run(
  kind: MailProxyProcess["kind"],
  mailBlock: string,
  options: MailProxyOptions,
  rx: Receivers,
  sessions: () => Promise<void>,
): Promise<{ datagrams: Map<string, string[]>; fileLog: string }> {
  rx.take();
  const proxy = await (kind === "nginx" ? startNginx : startPostern)(mailBlock, options);
  try {
    await sleep(300);
    await sessions();
    await sleep(300);
  } finally {
    await proxy.stop();
  }
  await sleep(100);
  return { datagrams: rx.take(), fileLog: proxy.errorLog() };
}

test("syslog datagrams carry the whole error-log line, as nginx's: notices, session lines, levels, tag/facility/severity/nohostname, main, mail and server level", async () => {
  assert.ok(nginxAvailable(), "nginx is the oracle");
  const [imap, pop3, deadAuth, ...udp] = await freePorts(8);
  const ports: Ports = { imap: imap!, pop3: pop3!, deadAuth: deadAuth! };
  const names = ["main", "variant", "mail", "server"];
  const rx = await Receivers.open(names, udp);
  const nohostname = new Set(["variant", "server"]);
  try {
    const mainExtra = [
      `error_log syslog:server=127.0.0.1:${rx.port("main")} info;`,
      `error_log syslog:server=127.0.0.1:${rx.port("variant")},facility=mail,severity=crit,tag=Post_Tag9,nohostname notice;`,
    ].join("\n");
    const mailBlock = `
      auth_http 127.0.0.1:${ports.deadAuth}/auth;
      error_log syslog:server=127.0.0.1:${rx.port("mail")},facility=auth,tag=mailtag info;
      server { listen 127.0.0.1:${ports.imap}; protocol imap; }
      server {
        listen 127.0.0.1:${ports.pop3}; protocol pop3;
        error_log syslog:server=127.0.0.1:${rx.port("server")},facility=local3,severity=debug,nohostname error;
      }`;
    const sessions = async (): Promise<void> => {
      // an error line longer than nginx's 2048-byte buffer
      await dialogue(ports.imap, [`a LOGIN ${"x".repeat(3000)} secret`]);
      // an error line with the login in the context
      await dialogue(ports.imap, ["a LOGIN bob secret"]);
      // the client leaves: info lines only
      await dialogue(ports.imap, []);
      // the server-level target: error and above only, no host field
      await dialogue(ports.pop3, ["USER carol", "PASS secret"]);
    };
    const results = new Map<MailProxyProcess["kind"], { datagrams: Map<string, string[]>; fileLog: string }>();
    for (const kind of ["nginx", "postern"] as const) results.set(kind, await run(kind, mailBlock, { mainExtra }, rx, sessions));

    const compared = new Map<string, Map<string, string[]>>();
    for (const [kind, r] of results) {
      for (const [name, list] of r.datagrams) {
        assert.ok(list.length > 0, `${kind}: nothing reached the "${name}" receiver`);
        for (const d of list) assertSameMoment(d, `${kind} ${name}`);
      }
      // the main targets carry exactly the lines of the main file log
      const fileLines = new Set(r.fileLog.split("\n"));
      for (const d of r.datagrams.get("main")!) {
        const line = DATAGRAM.exec(d)![5]!;
        assert.ok(fileLines.has(line), `${kind}: "${line}" is not a line of the file log`);
      }
      const normal = normalise(kind, r.datagrams, nohostname);
      compared.set(kind, new Map([...normal].map(([k, v]) => [k, v.filter((d) => COMPARED.test(d))])));
    }
    const n = compared.get("nginx")!;
    const p = compared.get("postern")!;
    // the scenario reaches what it means to compare
    assert.ok(
      n.get("main")!.some((d) => /: nginx\/1\.22\.1$/.test(d)),
      "nginx's start-up notice",
    );
    assert.ok(
      n.get("mail")!.some((d) => /\[info\] PID\d#PID\d: \*C\d+ client 127\.0\.0\.1:CPORT connected/.test(d)),
      "an info session line",
    );
    assert.ok(
      n.get("mail")!.some((d) => /^<35>.*\[error\] .*login: "x{100,}$/.test(d)),
      "a truncated error line",
    );
    assert.ok(
      n.get("server")!.some((d) => /^<155>TIME nginx: DATE \[error\] .*login: "carol"$/.test(d)),
      "a server-level error line",
    );
    for (const name of names) assert.deepEqual(p.get(name), n.get(name), `receiver "${name}"`);
  } finally {
    rx.close();
  }
});

for (const level of ["main", "mail"] as const) {
  test(`a syslog server that is down (${level} level): nginx's 'send() failed' line in the main log's other targets, and serving goes on`, async () => {
    assert.ok(nginxAvailable(), "nginx is the oracle");
    const [imap, deadAuth, dead, alive] = await freePorts(4);
    const rx = await Receivers.open(["alive"], [alive!]);
    try {
      const deadTarget = `error_log syslog:server=127.0.0.1:${dead} info;`;
      const mainExtra = [level === "main" ? deadTarget : "", `error_log syslog:server=127.0.0.1:${alive} notice;`].join("\n");
      // at mail level the failure still goes to the main log (nginx's cycle log), not to the server's
      const mailBlock = `auth_http 127.0.0.1:${deadAuth}/auth; ${level === "mail" ? deadTarget : ""} server { listen 127.0.0.1:${imap}; protocol imap; }`;
      const shapes = new Map<string, { file: Set<string>; alive: Set<string> }>();
      for (const kind of ["nginx", "postern"] as const) {
        const r = await run(kind, mailBlock, { mainExtra }, rx, async () => {
          for (let i = 0; i < 3; i++) await dialogue(imap!, ["a LOGIN bob secret"]);
        });
        const failure = /\[error\] \d+#\d+: send\(\) failed \(111: Connection refused\)$/;
        const file = r.fileLog.split("\n").filter((l) => failure.test(l));
        const got = r.datagrams.get("alive")!.filter((d) => failure.test(d));
        assert.ok(file.length > 0, `${kind}: no send() failure in the file log:\n${r.fileLog}`);
        assert.ok(got.length > 0, `${kind}: no send() failure at the live syslog server`);
        const strip = (s: string): string =>
          s
            .replace(/^<(\d+)>.*?: \d{4}\/\S+ \S+ /, "<$1> ")
            .replace(/^\d{4}\/\S+ \S+ /, "")
            .replace(/\d+#\d+/, "PID#PID");
        shapes.set(kind, { file: new Set(file.map(strip)), alive: new Set(got.map(strip)) });
      }
      assert.deepEqual(shapes.get("postern"), shapes.get("nginx"));
      assert.deepEqual([...shapes.get("nginx")!.alive], ["<187> [error] PID#PID: send() failed (111: Connection refused)"]);
    } finally {
      rx.close();
    }
  });
}

/**
 * TLS session resumption with `openssl s_client -sess_out/-sess_in`: the
 * session cache (builtin, shared across 2 workers), tickets with a 48-byte key
 * file, refusals (cache none/off without tickets, another certificate), and two
 * processes sharing one ticket key file: nginx 1.22.1 vs Postern.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import path from "node:path";
import { sClient, startPair, startSide, subjectKind, tempDir, type ConfigFn, type Kind, type Pair, type Side } from "./e2e.js";

const GREETING = /\* OK .*\r\n/;

/** One connection saving its session to `file`; returns New/Reused. */
async function connect(port: number, args: string[], sessIn: string | undefined, sessOut: string): Promise<{ state: string; sessionId: string }> {
  const r = await sClient(port, [...args, ...(sessIn ? ["-sess_in", sessIn] : []), "-sess_out", sessOut], [GREETING], { mode: "full" });
  assert.ok(r.session, `handshake on port ${port}: ${r.stderr}`);
  return { state: r.session.state!, sessionId: r.sessionId ?? "" };
}

/** A first connection, then `count` reconnections offering the saved session; the states seen. */
async function resumeSeries(portFirst: number, portNext: number, args: string[], file: string, count: number): Promise<string[]> {
  const states = [(await connect(portFirst, args, undefined, file)).state];
  for (let i = 0; i < count; i++) {
    // s_client saves no session the server gave no ID or ticket for (nothing to offer).
    states.push(existsSync(file) ? (await connect(portNext, args, file, `${file}.${i}`)).state : "nothing saved");
  }
  return states;
}

describe("session resumption, nginx vs Postern", () => {
  let pair: Pair;
  let workers: Pair;
  const tmp = tempDir();
  const files = (side: Side, name: string): string => path.join(tmp.dir, `${side.kind}-${side.ports.builtin ?? side.ports.shared}-${name}`);

  before(async () => {
    pair = await startPair(
      ["builtin", "tickets", "none", "off", "certA", "certB", "starttls"],
      ({ ports, authUrl, pki }) => `
      auth_http ${authUrl};
      ssl_protocols TLSv1.2 TLSv1.3;
      ssl_certificate ${pki.serverRsa.cert};
      ssl_certificate_key ${pki.serverRsa.key};
      server { listen 127.0.0.1:${ports.builtin} ssl; protocol imap; ssl_session_cache builtin:1000; ssl_session_tickets off; }
      server { listen 127.0.0.1:${ports.tickets} ssl; protocol imap; ssl_session_ticket_key ${pki.ticketKey48}; }
      server { listen 127.0.0.1:${ports.none} ssl; protocol imap; ssl_session_cache none; ssl_session_tickets off; }
      server { listen 127.0.0.1:${ports.off} ssl; protocol imap; ssl_session_cache off; ssl_session_tickets off; }
      server { listen 127.0.0.1:${ports.certA} ssl; protocol imap; ssl_session_cache shared:AB:1m; ssl_session_ticket_key ${pki.ticketKey48}; }
      server { listen 127.0.0.1:${ports.certB} ssl; protocol imap; ssl_session_cache shared:AB:1m; ssl_session_ticket_key ${pki.ticketKey48};
               ssl_certificate ${pki.serverEcdsa.cert}; ssl_certificate_key ${pki.serverEcdsa.key}; }
      server { listen 127.0.0.1:${ports.starttls}; protocol imap; starttls on; ssl_session_cache builtin:1000; ssl_session_tickets off; }
    `,
    );
    workers = await startPair(
      ["shared", "sharedTickets"],
      ({ ports, authUrl, pki }) => `
      auth_http ${authUrl};
      ssl_protocols TLSv1.2 TLSv1.3;
      ssl_certificate ${pki.serverRsa.cert};
      ssl_certificate_key ${pki.serverRsa.key};
      ssl_session_cache shared:SSL:1m;
      server { listen 127.0.0.1:${ports.shared} ssl; protocol imap; ssl_session_tickets off; }
      server { listen 127.0.0.1:${ports.sharedTickets} ssl; protocol imap; }
    `,
      { proxyOptions: { workerProcesses: 2 } },
    );
  });
  after(async () => {
    await pair?.stop();
    await workers?.stop();
    tmp.remove();
  });

  it("ssl_session_cache builtin, TLS 1.2 session IDs: resumed on every reconnection", async () => {
    const r = await pair.both((side) => resumeSeries(side.ports.builtin!, side.ports.builtin!, ["-tls1_2"], files(side, "b12"), 3));
    assert.deepEqual(r.subject, r.nginx);
    assert.deepEqual(r.nginx, ["New", "Reused", "Reused", "Reused"]);
  });

  it("ssl_session_cache builtin with STARTTLS, TLS 1.2: resumed", async () => {
    const r = await pair.both(async (side) => {
      const file = files(side, "st12");
      const states: string[] = [];
      for (let i = 0; i < 3; i++) {
        const res = await sClient(
          side.ports.starttls!,
          ["-starttls", "imap", "-tls1_2", ...(i ? ["-sess_in", file] : []), "-sess_out", i ? `${file}.${i}` : file],
          ["a1 NOOP", /a1 .*\r\n/],
          { mode: "full" },
        );
        states.push(res.session?.state ?? "failed");
      }
      return states;
    });
    assert.deepEqual(r.subject, r.nginx);
    assert.deepEqual(r.nginx, ["New", "Reused", "Reused"]);
  });

  it("ssl_session_cache builtin with ssl_session_tickets off, TLS 1.3 (documented difference 9)", async () => {
    const r = await pair.both((side) => resumeSeries(side.ports.builtin!, side.ports.builtin!, ["-tls1_3"], files(side, "b13"), 2));
    // nginx resumes through OpenSSL's stateful TLS 1.3 tickets; Postern's cache only sees legacy session IDs.
    assert.deepEqual(r.nginx, ["New", "Reused", "Reused"]);
    assert.deepEqual(r.subject, subjectKind() === "postern" ? ["New", "New", "New"] : r.nginx);
  });

  for (const [name, args] of [
    ["TLS 1.3", ["-tls1_3"]],
    ["TLS 1.2", ["-tls1_2"]],
  ] as const) {
    it(`tickets with a 48-byte ssl_session_ticket_key file, ${name}: resumed`, async () => {
      const r = await pair.both((side) => resumeSeries(side.ports.tickets!, side.ports.tickets!, [...args], files(side, `t${name}`), 3));
      assert.deepEqual(r.subject, r.nginx);
      assert.deepEqual(r.nginx, ["New", "Reused", "Reused", "Reused"]);
    });
  }

  for (const [name, args] of [
    ["TLS 1.3", ["-tls1_3"]],
    ["TLS 1.2", ["-tls1_2"]],
  ] as const) {
    it(`ssl_session_cache none and off with ssl_session_tickets off, ${name}: never resumed`, async () => {
      const r = await pair.both(async (side) => ({
        none: await resumeSeries(side.ports.none!, side.ports.none!, [...args], files(side, `n${name}`), 2),
        off: await resumeSeries(side.ports.off!, side.ports.off!, [...args], files(side, `o${name}`), 2),
      }));
      if (name === "TLS 1.3") {
        assert.deepEqual(r.subject, r.nginx);
        assert.deepEqual(r.nginx, { none: ["New", "New", "New"], off: ["New", "New", "New"] });
      } else {
        // nginx's `off` gives TLS 1.2 clients no session ID, so there is nothing to offer;
        // Postern's `off` issues one that never resumes (documented difference 8).
        assert.deepEqual(r.nginx, { none: ["New", "New", "New"], off: ["New", "nothing saved", "nothing saved"] });
        assert.deepEqual(r.subject, subjectKind() === "postern" ? { none: ["New", "New", "New"], off: ["New", "New", "New"] } : r.nginx);
      }
    });
  }

  it("ssl_session_cache off, TLS 1.2: the session ID in the ServerHello (documented difference 8)", async () => {
    const r = await pair.both(async (side) => ({
      none: (await connect(side.ports.none!, ["-tls1_2"], undefined, files(side, "idn"))).sessionId !== "",
      off: (await connect(side.ports.off!, ["-tls1_2"], undefined, files(side, "ido"))).sessionId !== "",
    }));
    // nginx: `none` issues an ID it never stores, `off` issues none; Postern treats `off` like `none`.
    assert.deepEqual(r.nginx, { none: true, off: false });
    assert.deepEqual(r.subject, subjectKind() === "postern" ? { none: true, off: true } : r.nginx);
  });

  for (const [name, args] of [
    ["TLS 1.3", ["-tls1_3"]],
    ["TLS 1.2", ["-tls1_2"]],
  ] as const) {
    it(`a session never resumes on a server with another certificate (same cache and ticket key), ${name}`, async () => {
      const r = await pair.both(async (side) => ({
        same: await resumeSeries(side.ports.certA!, side.ports.certA!, [...args], files(side, `a${name}`), 1),
        other: await resumeSeries(side.ports.certA!, side.ports.certB!, [...args], files(side, `b${name}`), 1),
      }));
      assert.deepEqual(r.subject, r.nginx);
      assert.deepEqual(r.nginx, { same: ["New", "Reused"], other: ["New", "New"] });
    });
  }

  /** Runs `count` reconnections at once (so both workers take some), returns their states and the worker pids that logged them. */
  async function acrossWorkers(
    side: Side,
    port: number,
    args: string[],
    name: string,
    count: number,
  ): Promise<{ first: string; states: string[]; pids: number }> {
    const file = path.join(tmp.dir, `${side.kind}-${port}-${name}`);
    const first = (await connect(port, args, undefined, file)).state;
    const rounds = await Promise.all(Array.from({ length: count }, (_, i) => connect(port, args, file, `${file}.${i}`)));
    const pids = new Set(
      side.proxy
        .errorLog()
        .split("\n")
        .filter((l) => / client 127\.0\.0\.1:\d+ connected to /.test(l))
        .map((l) => / (\d+)#\d+: /.exec(l)?.[1]),
    );
    return { first, states: rounds.map((x) => x.state), pids: pids.size };
  }

  it("ssl_session_cache shared across 2 worker processes, TLS 1.2 session IDs: resumed", async () => {
    const r = await workers.both((side) => acrossWorkers(side, side.ports.shared!, ["-tls1_2"], "s12", 8));
    assert.deepEqual(r.subject.first, "New");
    assert.deepEqual({ first: r.subject.first, states: r.subject.states }, { first: r.nginx.first, states: r.nginx.states });
    assert.deepEqual(r.nginx.states, Array(8).fill("Reused"));
    assert.equal(r.nginx.pids, 2, "nginx: both workers served connections");
    assert.equal(r.subject.pids, 2, "subject: both workers served connections");
  });

  it("ssl_session_cache shared across 2 worker processes, TLS 1.3 tickets without a key file: resumed", async () => {
    const r = await workers.both((side) => acrossWorkers(side, side.ports.sharedTickets!, ["-tls1_3"], "t13", 8));
    assert.deepEqual({ first: r.subject.first, states: r.subject.states }, { first: r.nginx.first, states: r.nginx.states });
    assert.deepEqual(r.nginx.states, Array(8).fill("Reused"));
    assert.equal(r.subject.pids, 2, "subject: both workers served connections");
  });

  /** A server with the given ssl_session_ticket_key files (names resolved at start). */
  const ticketConfig =
    (keys: (env: Parameters<ConfigFn>[0]) => string[]): ConfigFn =>
    (env) => `
      auth_http ${env.authUrl};
      ssl_protocols TLSv1.2 TLSv1.3;
      ssl_certificate ${env.pki.serverRsa.cert};
      ssl_certificate_key ${env.pki.serverRsa.key};
      ${keys(env)
        .map((k) => `ssl_session_ticket_key ${k};`)
        .join("\n")}
      server { listen 127.0.0.1:${env.ports.imaps} ssl; protocol imap; }
    `;

  let series = 0;
  /** Sessions from process one offered to process two (and back when `back`), TLS 1.3 and 1.2. */
  async function twoProcesses(kind: Kind, one: ConfigFn, two: ConfigFn, tag: string, back = true): Promise<Record<string, string[]>> {
    const a = await startSide(kind, ["imaps"], one);
    const b = await startSide(kind, ["imaps"], two).catch(async (err: unknown) => {
      await a.stop();
      throw err;
    });
    try {
      const out: Record<string, string[]> = {};
      for (const [name, args] of [
        ["TLS 1.3", ["-tls1_3"]],
        ["TLS 1.2", ["-tls1_2"]],
      ] as const) {
        const file = path.join(tmp.dir, `${kind}-${tag}-${name}-${++series}`);
        out[`${name} one->two`] = await resumeSeries(a.ports.imaps!, b.ports.imaps!, [...args], file, 2);
        if (back) out[`${name} two->one`] = await resumeSeries(b.ports.imaps!, a.ports.imaps!, [...args], `${file}-back`, 2);
      }
      return out;
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  }
  const resumed = ["New", "Reused", "Reused"];

  for (const [name, key] of [
    ["48-byte", "ticketKey48"],
    ["80-byte", "ticketKey80"],
  ] as const) {
    it(`two processes sharing one ${name} ticket key file resume each other's sessions`, async () => {
      const config = ticketConfig(({ pki }) => [pki[key]]);
      const [nginx, subject] = await Promise.all([twoProcesses("nginx", config, config, key), twoProcesses(subjectKind(), config, config, key)]);
      assert.deepEqual(subject, nginx);
      for (const states of Object.values(nginx)) assert.deepEqual(states, resumed);
    });
  }

  it("several ticket key files: a ticket made with a later key (documented difference 10)", async () => {
    const other = tmp.file("other48.key", randomBytes(48));
    const one = ticketConfig(({ pki }) => [pki.ticketKey48]);
    const two = ticketConfig(({ pki }) => [other, pki.ticketKey48]);
    const [nginx, subject] = await Promise.all([twoProcesses("nginx", one, two, "several", false), twoProcesses(subjectKind(), one, two, "several", false)]);
    // nginx decrypts with every listed key; Postern only with the first, so the ticket costs a full handshake.
    assert.deepEqual(nginx, { "TLS 1.3 one->two": resumed, "TLS 1.2 one->two": resumed });
    const fallback = ["New", "New", "New"];
    assert.deepEqual(subject, subjectKind() === "postern" ? { "TLS 1.3 one->two": fallback, "TLS 1.2 one->two": fallback } : nginx);
  });

  it("a session from nginx never resumes on Postern, same certificate and ticket key (documented difference 13)", async () => {
    const config = ticketConfig(({ pki }) => [pki.ticketKey48]);
    const a = await startSide("nginx", ["imaps"], config);
    const b = await startSide(subjectKind(), ["imaps"], config).catch(async (err: unknown) => {
      await a.stop();
      throw err;
    });
    try {
      const out: string[][] = [];
      for (const args of [["-tls1_3"], ["-tls1_2"]]) {
        const file = path.join(tmp.dir, `cross-${args[0]}`);
        out.push(await resumeSeries(a.ports.imaps!, b.ports.imaps!, args, file, 1));
      }
      const expected = subjectKind() === "postern" ? ["New", "New"] : ["New", "Reused"];
      assert.deepEqual(out, [expected, expected]);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});

/**
 * Session resumption seen by `openssl s_client -sess_out/-sess_in`:
 * ssl_session_cache none/off/builtin/shared (in-process and across worker
 * processes through the master), tickets with key files, timeouts, and
 * session separation by verification policy.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { TlsServerSetup } from "../../../src/mail/ssl/context.js";
import { installSessionCacheMaster } from "../../../src/event/tls-session-ipc.js";
import { type EchoResult, echoLine, echoServer, makePki, type Pki, sClient, sessionLine, setupFrom, tempDir } from "./helpers.js";

let tmp: ReturnType<typeof tempDir>;
let pki: Pki;
let n = 0;

before(() => {
  tmp = tempDir();
  pki = makePki(tmp.dir);
});
after(() => tmp.remove());

const rsa = (): string[][] => [
  ["ssl_certificate", pki.rsaCert],
  ["ssl_certificate_key", pki.rsaKey],
];

/** First connection to `a` saves the session, second (to `b`) offers it; returns whether it was reused. */
async function resumes(a: TlsServerSetup | number, b: TlsServerSetup | number, args: string[] = [], onSecond?: (r: EchoResult) => void): Promise<boolean> {
  const sess = join(tmp.dir, `sess${++n}.pem`);
  const port = async (x: TlsServerSetup | number): Promise<{ port: number; close: () => Promise<void> }> =>
    typeof x === "number" ? { port: x, close: () => Promise.resolve() } : echoServer(x);
  const sa = await port(a);
  const sb = b === a ? sa : await port(b);
  try {
    const first = await sClient(sa.port, ["-sess_out", sess, ...args]);
    assert.equal(sessionLine(first)?.reused, false, first.stdout + first.stderr);
    const second = await sClient(sb.port, ["-sess_in", sess, ...args]);
    const line = echoLine(second);
    assert.ok(line, second.stdout + second.stderr);
    onSecond?.(line);
    return sessionLine(second)!.reused;
  } finally {
    await sa.close();
    if (sb !== sa) await sb.close();
  }
}

describe("ssl_session_cache", () => {
  test("none (default): tickets resume, session IDs do not", async () => {
    const s = setupFrom(rsa());
    assert.equal(await resumes(s, s, ["-tls1_2"]), true);
    assert.equal(await resumes(s, s, ["-tls1_3"]), true);
    assert.equal(await resumes(s, s, ["-tls1_2", "-no_ticket"]), false);
  });
  test("off and none without tickets: no resumption", async () => {
    for (const mode of ["off", "none"]) {
      const s = setupFrom([...rsa(), ["ssl_session_cache", mode], ["ssl_session_tickets", "off"]]);
      assert.equal(await resumes(s, s, ["-tls1_2"]), false, mode);
      assert.equal(await resumes(s, s, ["-tls1_3"]), false, mode);
    }
  });
  test("builtin: session IDs resume with TLS 1.2; TLS 1.3 without tickets does not (Node limit, docs/compat-tls.md)", async () => {
    const s = setupFrom([...rsa(), ["ssl_session_cache", "builtin:100"], ["ssl_session_tickets", "off"]]);
    assert.equal(await resumes(s, s, ["-tls1_2"]), true);
    // nginx resumes here through OpenSSL's stateful TLS 1.3 tickets; Node's
    // cache hooks only see the legacy session ID field.
    assert.equal(await resumes(s, s, ["-tls1_3"]), false);
  });
  test("builtin is per server; shared:NAME is common to servers naming it", async () => {
    const b1 = setupFrom([...rsa(), ["ssl_session_cache", "builtin"], ["ssl_session_tickets", "off"]]);
    const b2 = setupFrom([...rsa(), ["ssl_session_cache", "builtin"], ["ssl_session_tickets", "off"]]);
    assert.equal(await resumes(b1, b2, ["-tls1_2"]), false);
    const s1 = setupFrom([...rsa(), ["ssl_session_cache", "shared:T1:1m"], ["ssl_session_tickets", "off"]]);
    const s2 = setupFrom([...rsa(), ["ssl_session_cache", "shared:T1:1m"], ["ssl_session_tickets", "off"]]);
    assert.equal(await resumes(s1, s2, ["-tls1_2"]), true);
  });
  test("a session never resumes on a server with another client-certificate policy", async () => {
    const open = setupFrom([...rsa(), ["ssl_session_cache", "shared:T2:1m"], ["ssl_session_tickets", "off"]]);
    const strict = setupFrom([
      ...rsa(),
      ["ssl_session_cache", "shared:T2:1m"],
      ["ssl_session_tickets", "off"],
      ["ssl_verify_client", "on"],
      ["ssl_client_certificate", pki.ca],
    ]);
    assert.equal(await resumes(open, strict, ["-tls1_2"]), false);
    assert.equal(await resumes(open, open, ["-tls1_2"]), true);
  });
  test("a failed client certificate check removes the session", async () => {
    const s = setupFrom([
      ...rsa(),
      ["ssl_session_cache", "builtin"],
      ["ssl_session_tickets", "off"],
      ["ssl_verify_client", "on"],
      ["ssl_client_certificate", pki.ca],
    ]);
    // A resumed session still reports the certificate and the verification result.
    const seen: EchoResult[] = [];
    assert.equal(await resumes(s, s, ["-tls1_2", "-cert", pki.client, "-key", pki.clientKey], (r) => seen.push(r)), true);
    assert.deepEqual(seen[0]?.check, { result: "ok", verify: "SUCCESS" });
    assert.equal(seen[0]?.info.subject, "CN=client one,O=Example\\, Inc.,C=US");
    assert.equal(await resumes(s, s, ["-tls1_2", "-cert", pki.selfSigned, "-key", pki.selfSignedKey]), false);
  });
  test("shared across worker processes through the master (session IDs and auto ticket keys)", async () => {
    const script = join(import.meta.dirname, "fixtures", "tls-worker.js");
    const start = async (lines: string[][]) => {
      const child = fork(script, [JSON.stringify(lines)], { stdio: ["ignore", "ignore", "inherit", "ipc"] });
      const uninstall = installSessionCacheMaster(child);
      const port = await new Promise<number>((resolve, reject) => {
        child.on("message", (m: { type?: string; port?: number }) => {
          if (m.type === "port") resolve(m.port!);
        });
        child.on("exit", () => reject(new Error("worker exited")));
      });
      return {
        port,
        stop: () => {
          uninstall();
          child.disconnect();
          return new Promise((r) => child.once("exit", r));
        },
      };
    };
    const ids = [...rsa(), ["ssl_session_cache", "shared:W:1m"], ["ssl_session_tickets", "off"]];
    const tickets = [...rsa(), ["ssl_session_cache", "shared:WT:1m"]];
    const w = await Promise.all([start(ids), start(ids), start(tickets), start(tickets)]);
    try {
      assert.equal(await resumes(w[0].port, w[1].port, ["-tls1_2"]), true);
      assert.equal(await resumes(w[1].port, w[0].port, ["-tls1_2"]), true);
      assert.equal(await resumes(w[2].port, w[3].port, ["-tls1_2"]), true);
      assert.equal(await resumes(w[3].port, w[2].port, ["-tls1_3"]), true);
    } finally {
      await Promise.all(w.map((x) => x.stop()));
    }
  });
});

describe("tickets", () => {
  test("a shared cache without key file: one generated key for its servers, rotation retires it", async (t) => {
    // the key's rotation timer (every max(ssl_session_timeout, 1h)) runs on mock time
    t.mock.timers.enable({ apis: ["setInterval"] });
    const lines = [...rsa(), ["ssl_session_cache", "shared:K:1m"]];
    const a = setupFrom(lines);
    const b = setupFrom(lines);
    assert.equal(await resumes(a, b, ["-tls1_3"]), true);
    const sess = join(tmp.dir, "rot.pem");
    const sa = await echoServer(a);
    try {
      await sClient(sa.port, ["-sess_out", sess]);
      t.mock.timers.tick(3600 * 1000);
      assert.equal(sessionLine(await sClient(sa.port, ["-sess_in", sess]))?.reused, false);
    } finally {
      await sa.close();
    }
    assert.equal(await resumes(b, a, ["-tls1_3"]), true);
  });
  test("ssl_session_tickets off: no ticket resumption", async () => {
    const s = setupFrom([...rsa(), ["ssl_session_tickets", "off"]]);
    assert.equal(await resumes(s, s, ["-tls1_2"]), false);
  });
  test("two server instances sharing a 48-byte key file resume each other's tickets; another key does not", async () => {
    const key = join(tmp.dir, "ticket48.key");
    writeFileSync(key, randomBytes(48));
    const other = join(tmp.dir, "other48.key");
    writeFileSync(other, randomBytes(48));
    const a = setupFrom([...rsa(), ["ssl_session_ticket_key", key]]);
    const b = setupFrom([...rsa(), ["ssl_session_ticket_key", key], ["ssl_session_ticket_key", other]]);
    const c = setupFrom([...rsa(), ["ssl_session_ticket_key", other]]);
    assert.equal(await resumes(a, b, ["-tls1_2"]), true);
    assert.equal(await resumes(a, b, ["-tls1_3"]), true);
    assert.equal(await resumes(a, c, ["-tls1_2"]), false);
  });
  test("an 80-byte key works between Postern servers, with a warning", async () => {
    const key = join(tmp.dir, "ticket80.key");
    writeFileSync(key, randomBytes(80));
    const warnings: string[] = [];
    const a = setupFrom([...rsa(), ["ssl_session_ticket_key", key]], { warn: (m) => warnings.push(m) });
    const b = setupFrom([...rsa(), ["ssl_session_ticket_key", key]]);
    assert.equal(await resumes(a, b, ["-tls1_3"]), true);
    assert.match(warnings[0]!, /is an 80-byte ticket key/);
  });
  test("ssl_session_timeout is the ticket lifetime hint", async () => {
    const s = await echoServer(setupFrom([...rsa(), ["ssl_session_timeout", "10m"]]));
    try {
      assert.match((await sClient(s.port, ["-tls1_3"])).stdout, /lifetime hint: 600 \(seconds\)/);
      assert.match((await sClient(s.port, ["-tls1_2"])).stdout, /lifetime hint: 600 \(seconds\)/);
    } finally {
      await s.close();
    }
  });
});

/**
 * The failure matrix, part 1: authentication and the backend, one table run
 * for IMAP, POP3 and SMTP (nginx-tests mail_{imap,pop3,smtp}.t): auth
 * refusals, credential overrides, auth service and backend failures,
 * proxy_pass_error_message. Every row runs against nginx 1.22.1 and Postern
 * with the same config (matrix-protocols.ts); the records must be equal.
 * What only one protocol has stays in its own file.
 */
import assert from "node:assert/strict";
import type { AuthHandler } from "../../support/fake-auth.js";
import { assertSame, type PairEnv } from "./pair.js";
import { greet } from "./matrix-protocols.js";
import { dialogue, plain, row, runMatrix } from "./matrix.js";
import { firstThen, ok, okToBackend, refusal, Talk } from "./talk.js";
// ---------------------------------------------------------------- auth refusal

interface Refusal {
  message: string;
  wait?: number;
  code?: string;
}

const authRefusal = row<{
  refusals: Refusal[];
  /** What a refused client sends; the session ends with the refusal. */
  refused: (t: Talk) => Promise<void>;
  /** The refused login with a pipelined command, in the session whose refusal has Auth-Wait. */
  refusedPipelined: (t: Talk) => Promise<void>;
  retry: (t: Talk) => Promise<void>;
  /** The last line of each session refused without Auth-Wait. */
  closedAfter: string[];
  /** The waiting session from this transcript index on. */
  waitedFrom: number;
  waited: string[];
  attempts: string[];
}>(
  (p) => `${p.label} auth refusal: without Auth-Wait the session ends; with Auth-Wait the retry is served`,
  {
    imap: {
      refusals: [{ message: "Invalid login or password" }, { message: "Invalid login or password", wait: 1 }],
      refused: (t) => t.send("a1 LOGIN test@example.com wrong\r\n"),
      // The NOOP pipelined during the wait is answered after the refusal.
      refusedPipelined: (t) => t.send("b1 LOGIN test@example.com wrong\r\nb2 NOOP\r\n"),
      retry: (t) => dialogue(t, ["b3 LOGIN test@example.com secret"]),
      closedAfter: ['closed after: "a1 NO Invalid login or password\\r\\n"'],
      waitedFrom: 2,
      waited: [
        "S: b1 NO Invalid login or password\r\n",
        "note: waited >= 0.9 s",
        "S: b2 OK completed\r\n",
        "C: b3 LOGIN test@example.com secret\r\n",
        "S: b3 OK LOGIN completed\r\n",
      ],
      attempts: ["1", "1", "2"],
    },
    pop3: {
      refusals: [{ message: "Invalid login or password" }, { message: "Try later", wait: 1 }],
      refused: async (t) => {
        await t.cmd("USER test@example.com\r\n");
        await t.send("PASS wrong\r\n");
      },
      // After a refusal with Auth-Wait, USER is needed again: the pipelined PASS is invalid.
      refusedPipelined: async (t) => {
        await t.cmd("USER test@example.com\r\n");
        await t.send("PASS wrong\r\nPASS again\r\n");
      },
      retry: (t) => dialogue(t, ["USER test@example.com", "PASS secret"]),
      closedAfter: ['closed after: "-ERR Invalid login or password\\r\\n"'],
      waitedFrom: 4,
      waited: [
        "S: -ERR Try later\r\n",
        "note: waited >= 0.9 s",
        "S: -ERR invalid command\r\n",
        "C: USER test@example.com\r\n",
        "S: +OK\r\n",
        "C: PASS secret\r\n",
        "S: +OK logged in\r\n",
      ],
      attempts: ["1", "1", "2"],
    },
    smtp: {
      // The default reply is 535 5.7.0; Auth-Error-Code replaces it.
      refusals: [
        { message: "Invalid login or password" },
        { message: "Temporary problem", code: "451 4.3.0" },
        { message: "Slow down", wait: 1, code: "454 4.7.0" },
      ],
      refused: (t) => t.send(`AUTH PLAIN ${plain("test@example.com", "wrong")}\r\n`),
      refusedPipelined: (t) => t.send(`AUTH PLAIN ${plain("test@example.com", "wrong")}\r\nNOOP\r\n`),
      retry: (t) => dialogue(t, [`AUTH PLAIN ${plain("test@example.com", "secret")}`]),
      closedAfter: ['closed after: "535 5.7.0 Invalid login or password\\r\\n"', 'closed after: "451 4.3.0 Temporary problem\\r\\n"'],
      waitedFrom: 2,
      waited: [
        "S: 454 4.7.0 Slow down\r\n",
        "note: waited >= 0.9 s",
        "S: 250 2.0.0 OK\r\n",
        `C: AUTH PLAIN ${plain("test@example.com", "secret")}\r\n`,
        "S: 235 2.0.0 OK\r\n",
      ],
      attempts: ["1", "1", "1", "2"],
    },
  },
  async (pair, p, d) => {
    // Each refusal answers one request, in order; then every request is accepted.
    const handler = (env: PairEnv): AuthHandler =>
      d.refusals.reduceRight<AuthHandler>((then, f) => firstThen(1, refusal(f.message, f.wait, f.code), then), ok(env.backends[p.protocol]!));
    const r = await pair.run({ logLevels: ["info", "error"], auth: handler }, async (ports) => {
      const logs: string[][] = [];
      for (let i = 0; i < d.refusals.length - 1; i++) {
        const t = await greet(ports[p.protocol]!);
        await d.refused(t);
        await t.closed();
        logs.push(t.log);
      }
      const t = await greet(ports[p.protocol]!);
      const started = Date.now();
      await d.refusedPipelined(t);
      await t.line(3000);
      t.note(Date.now() - started >= 900 ? "waited >= 0.9 s" : "less than 0.9 s");
      await t.line();
      await d.retry(t);
      t.close();
      logs.push(t.log);
      return logs;
    });
    const n = r.nginx;
    d.closedAfter.forEach((line, i) => assert.equal(n.transcript[i]!.at(-1), line));
    assert.deepEqual(n.transcript.at(-1)!.slice(d.waitedFrom), d.waited);
    assert.deepEqual(
      n.authRequests.map((q) => /Auth-Login-Attempt: (\d)/.exec(q)![1]),
      d.attempts,
    );
    const failed = `client login failed: "${d.refusals[0]!.message}"`;
    assert.ok(
      n.errorLog.some((l) => l.includes(failed)),
      n.errorLog.join("\n"),
    );
    assertSame(r);
  },
);

// ---------------------------------------------------------- credential override

const credentialOverride = row<{ user: string; pass: string; login: string[]; received: string }>(
  (p) => `${p.label} Auth-User and Auth-Pass from the auth server replace the client credentials`,
  {
    imap: { user: "other user", pass: "p{3}", login: ["a1 LOGIN test@example.com secret"], received: "a1 LOGIN {10}\r\nother user {4}\r\np{3}\r\n" },
    pop3: {
      user: "real@example.com",
      pass: "real pass",
      login: ["USER test@example.com", "PASS secret"],
      received: "USER real@example.com\r\nPASS real pass\r\n",
    },
  },
  async (pair, p, d) => {
    const r = await pair.run(
      {
        logLevels: ["info"],
        auth: okToBackend(p.protocol, [
          ["Auth-User", d.user],
          ["Auth-Pass", d.pass],
        ]),
      },
      async (ports) => {
        const t = await greet(ports[p.protocol]!);
        await dialogue(t, d.login);
        t.close();
        return t.log;
      },
    );
    assert.deepEqual(r.nginx.backendReceived[p.protocol], [d.received]);
    const loggedIn = `client logged in, client: 127.0.0.1, server: 127.0.0.1:<port:${p.protocol}>, login: "${d.user}"`;
    assert.ok(
      r.nginx.errorLog.some((l) => l.includes(loggedIn)),
      r.nginx.errorLog.join("\n"),
    );
    assertSame(r);
  },
);

// ------------------------------------------------------- auth service failures

const authServiceFailures = row<{ garbage: string; badServer: string; logged: RegExp[] }>(
  (p) => `${p.label} auth service failures: down, slow, garbage, bad Auth-Server; the next client is served`,
  {
    imap: {
      garbage: "HTTP/1.0 200 OK\r\nAuth_Status: OK\r\n\r\n",
      badServer: "localhost",
      logged: [
        /<connect\|recv>\(\) failed \(111: Connection refused\) while in http auth state, client: 127\.0\.0\.1, server: 127\.0\.0\.1:<port:authDown>, login: "test@example\.com"/,
        /auth http server 127\.0\.0\.1:<auth-port> timed out \(110: Connection timed out\) while in http auth state/,
        /auth http server 127\.0\.0\.1:<auth-port> sent invalid header in response while in http auth state/,
        /auth http server 127\.0\.0\.1:<auth-port> sent invalid server address:"localhost" while in http auth state/,
      ],
    },
    pop3: {
      garbage: "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 0\r\n\r\n",
      badServer: "localhost",
      logged: [
        /<connect\|recv>\(\) failed \(111: Connection refused\) while in http auth state/,
        /auth http server 127\.0\.0\.1:<auth-port> timed out/,
        /auth http server 127\.0\.0\.1:<auth-port> sent invalid server port:"0"/,
        /sent invalid server address:"localhost"/,
      ],
    },
    smtp: {
      garbage: "garbage without headers\r\n\r\n",
      badServer: "mx.example.test",
      logged: [
        /<connect\|recv>\(\) failed \(111: Connection refused\) while in http auth state/,
        /auth http server 127\.0\.0\.1:<auth-port> timed out/,
        /sent invalid server address:"mx\.example\.test"/,
      ],
    },
  },
  async (pair, p, d) => {
    const r = await pair.run(
      {
        logLevels: ["error"],
        auth: (env) => {
          let n = 0;
          return (req) => {
            // Requests come from the scenario in order; every second one is the "normal" client.
            const i = n++;
            if (i % 2 === 1) return ok(env.backends[p.protocol]!)(req);
            if (i === 0) return { headers: [["Auth-Status", "OK"]], delayMs: 1000 };
            if (i === 2) return d.garbage;
            return {
              headers: [
                ["Auth-Status", "OK"],
                ["Auth-Server", d.badServer],
                ["Auth-Port", String(env.backends[p.protocol])],
              ],
            };
          };
        },
      },
      async (ports) => {
        const logs: string[][] = [];
        const down = await greet(ports.authDown!);
        await p.sendLogin(down);
        await down.closed();
        logs.push(down.log);
        for (let i = 0; i < 3; i++) {
          const t = await greet(ports.slowAuth!);
          await p.sendLogin(t);
          await t.closed(3000);
          logs.push(t.log, await p.normalClient(ports.slowAuth!));
        }
        return logs;
      },
    );
    const n = r.nginx;
    for (const i of [0, 1, 3, 5]) assert.equal(n.transcript[i]!.at(-1), p.internal, String(i));
    for (const i of [2, 4, 6]) assert.equal(n.transcript[i]![p.served[0]], p.served[1]);
    const log = n.errorLog.join("\n");
    for (const re of d.logged) assert.match(log, re);
    assertSame(r);
  },
);

// ------------------------------------------------------------ backend failures

const backendFailures = row<{ rejectingReceived: string; logged: RegExp[] }>(
  (p) => `${p.label} backend failures: down, never greeting, closing during login, rejecting, garbage; the next client is served`,
  {
    imap: {
      rejectingReceived: "a1 LOGIN {16}\r\ntest@example.com {6}\r\nsecret\r\n",
      logged: [
        /<connect\|recv>\(\) failed \(111: Connection refused\) while <connecting to\|reading response from> upstream, .*upstream: 127\.0\.0\.1:<closed-port:backendDown>/,
        /upstream timed out \(110: Connection timed out\) while connecting to upstream, .*<backend-port:noGreet>/,
        /upstream sent invalid response: "NO \[AUTHENTICATIONFAILED\] invalid credentials"/,
        /upstream sent invalid response: "garbage"/,
      ],
    },
    pop3: {
      rejectingReceived: "USER test@example.com\r\nPASS secret\r\n",
      logged: [/upstream sent invalid response: "-ERR \[AUTH\] invalid credentials"/],
    },
    smtp: {
      rejectingReceived: `HELO mx.example.test\r\nAUTH PLAIN ${plain("test@example.com", "secret")}\r\n`,
      logged: [/upstream sent invalid response: "535 5\.7\.8 Authentication failed"/],
    },
  },
  async (pair, p, d) => {
    const order = ["backendDown", "noGreet", "closing", "rejecting", "garbage"];
    const r = await pair.run(
      {
        logLevels: ["info", "error"],
        auth: (env) => {
          let n = 0;
          return (req) => {
            const i = n++;
            if (i % 2 === 1) return ok(env.backends[p.protocol]!)(req);
            const name = order[i / 2]!;
            return ok(name === "backendDown" ? env.closed.backendDown! : env.backends[name]!)(req);
          };
        },
      },
      async (ports) => {
        const logs: string[][] = [];
        for (let i = 0; i < order.length; i++) {
          const t = await greet(ports.short!);
          await p.sendLogin(t);
          await t.closed(3000);
          logs.push(t.log, await p.normalClient(ports.short!));
        }
        return logs;
      },
    );
    const n = r.nginx;
    for (let i = 0; i < order.length; i++) {
      assert.equal(n.transcript[2 * i]!.at(-1), p.internal, order[i]);
      assert.equal(n.transcript[2 * i + 1]![p.served[0]], p.served[1], order[i]);
    }
    // The backend that never greets is sent nothing.
    assert.deepEqual(n.backendReceived.noGreet, [""]);
    assert.deepEqual(n.backendReceived.rejecting, [d.rejectingReceived]);
    const log = n.errorLog.join("\n");
    for (const re of d.logged) assert.match(log, re);
    assertSame(r);
  },
);

// ------------------------------------------------------ proxy_pass_error_message

const passErrorMessage = row<{ closedAfter: string }>(
  (p) => `${p.label} proxy_pass_error_message on: the backend refusal reaches the client`,
  {
    imap: { closedAfter: 'closed after: "a1 NO [AUTHENTICATIONFAILED] invalid credentials\\r\\n"' },
    pop3: { closedAfter: 'closed after: "-ERR [AUTH] invalid credentials\\r\\n"' },
    smtp: { closedAfter: 'closed after: "535 5.7.8 Authentication failed\\r\\n"' },
  },
  async (pair, p, d) => {
    const r = await pair.run(
      {
        logLevels: ["info", "error"],
        auth: (env) => firstThen(1, ok(env.backends.rejecting!), ok(env.backends[p.protocol]!)),
      },
      async (ports) => {
        const t = await greet(ports.passError!);
        await p.sendLogin(t);
        await t.closed();
        return [t.log, await p.normalClient(ports.passError!)];
      },
    );
    assert.equal(r.nginx.transcript[0]!.at(-1), d.closedAfter);
    // With the message passed on, the refusal is no error: nginx logs it at info.
    const logged = `upstream sent invalid response: "${p.backendRefusal}" while reading response from upstream`;
    assert.ok(
      r.nginx.errorLog.some((l) => l.includes("[info]") && l.includes(logged)),
      r.nginx.errorLog.join("\n"),
    );
    assertSame(r);
  },
);

// ------------------------------------------------------------------ pipelining
runMatrix([authRefusal, credentialOverride, authServiceFailures, backendFailures, passErrorMessage]);

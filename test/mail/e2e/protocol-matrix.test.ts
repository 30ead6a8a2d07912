/**
 * The failure/limit/PROXY matrix, one table run for IMAP, POP3 and SMTP
 * (nginx-tests mail_{imap,pop3,smtp}.t, mail_max_errors.t, mail_proxy_protocol.t):
 * each row is one scenario, written once, with each protocol's lines and
 * expected replies; every row runs against nginx 1.22.1 and Postern with the same
 * config (matrix-protocols.ts), and the records must be equal unless the row is
 * named `Postern is stricter`. What only one protocol has stays in its own file.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { AuthHandler } from '../../support/fake-auth.js';
import { assertSame, Pair, posternRecord, sleep, tooLongByName, type PairEnv } from './pair.js';
import { greet, MATRIX_PROTOCOLS, smtpReply, type MatrixProtocol, type Protocol } from './matrix-protocols.js';
import { b64, firstThen, ok, okToBackend, refusal, Talk } from './talk.js';

/** A row of the table: its scenario, run for each protocol that has data for it. */
interface Row {
  title: (p: MatrixProtocol) => string;
  protocols: Protocol[];
  run: (pair: Pair, p: MatrixProtocol) => Promise<void>;
}

/** A row whose per-protocol data is typed by its scenario. */
function row<D>(title: (p: MatrixProtocol) => string, data: Partial<Record<Protocol, D>>,
  scenario: (pair: Pair, p: MatrixProtocol, d: D) => Promise<void>): Row {
  return {
    title,
    protocols: Object.keys(data) as Protocol[],
    run: (pair, p) => scenario(pair, p, data[p.protocol]!),
  };
}

/** Sends each line and reads one reply line. */
async function dialogue(t: Talk, lines: string[], timeoutMs?: number): Promise<void> {
  for (const line of lines) await t.cmd(`${line}\r\n`, timeoutMs);
}

/** The transcript of a session of single-line commands: greeting, then each command and its reply. */
function exchange(greeting: string, lines: string[], replies: string[]): string[] {
  return [greeting, ...lines.flatMap((l, i) => [`C: ${l}\r\n`, `S: ${replies[i]}\r\n`])];
}

const plain = (user: string, pass: string): string => b64(`\0${user}\0${pass}`);

// ---------------------------------------------------------------- auth refusal

interface Refusal { message: string; wait?: number; code?: string }

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
}>((p) => `${p.label} auth refusal: without Auth-Wait the session ends; with Auth-Wait the retry is served`, {
  imap: {
    refusals: [{ message: 'Invalid login or password' }, { message: 'Invalid login or password', wait: 1 }],
    refused: (t) => t.send('a1 LOGIN test@example.com wrong\r\n'),
    // The NOOP pipelined during the wait is answered after the refusal.
    refusedPipelined: (t) => t.send('b1 LOGIN test@example.com wrong\r\nb2 NOOP\r\n'),
    retry: (t) => dialogue(t, ['b3 LOGIN test@example.com secret']),
    closedAfter: ['closed after: "a1 NO Invalid login or password\\r\\n"'],
    waitedFrom: 2,
    waited: ['S: b1 NO Invalid login or password\r\n', 'note: waited >= 0.9 s',
      'S: b2 OK completed\r\n', 'C: b3 LOGIN test@example.com secret\r\n', 'S: b3 OK LOGIN completed\r\n'],
    attempts: ['1', '1', '2'],
  },
  pop3: {
    refusals: [{ message: 'Invalid login or password' }, { message: 'Try later', wait: 1 }],
    refused: async (t) => { await t.cmd('USER test@example.com\r\n'); await t.send('PASS wrong\r\n'); },
    // After a refusal with Auth-Wait, USER is needed again: the pipelined PASS is invalid.
    refusedPipelined: async (t) => { await t.cmd('USER test@example.com\r\n'); await t.send('PASS wrong\r\nPASS again\r\n'); },
    retry: (t) => dialogue(t, ['USER test@example.com', 'PASS secret']),
    closedAfter: ['closed after: "-ERR Invalid login or password\\r\\n"'],
    waitedFrom: 4,
    waited: ['S: -ERR Try later\r\n', 'note: waited >= 0.9 s', 'S: -ERR invalid command\r\n',
      'C: USER test@example.com\r\n', 'S: +OK\r\n', 'C: PASS secret\r\n', 'S: +OK logged in\r\n'],
    attempts: ['1', '1', '2'],
  },
  smtp: {
    // The default reply is 535 5.7.0; Auth-Error-Code replaces it.
    refusals: [{ message: 'Invalid login or password' }, { message: 'Temporary problem', code: '451 4.3.0' },
      { message: 'Slow down', wait: 1, code: '454 4.7.0' }],
    refused: (t) => t.send(`AUTH PLAIN ${plain('test@example.com', 'wrong')}\r\n`),
    refusedPipelined: (t) => t.send(`AUTH PLAIN ${plain('test@example.com', 'wrong')}\r\nNOOP\r\n`),
    retry: (t) => dialogue(t, [`AUTH PLAIN ${plain('test@example.com', 'secret')}`]),
    closedAfter: ['closed after: "535 5.7.0 Invalid login or password\\r\\n"', 'closed after: "451 4.3.0 Temporary problem\\r\\n"'],
    waitedFrom: 2,
    waited: ['S: 454 4.7.0 Slow down\r\n', 'note: waited >= 0.9 s', 'S: 250 2.0.0 OK\r\n',
      `C: AUTH PLAIN ${plain('test@example.com', 'secret')}\r\n`, 'S: 235 2.0.0 OK\r\n'],
    attempts: ['1', '1', '1', '2'],
  },
}, async (pair, p, d) => {
  // Each refusal answers one request, in order; then every request is accepted.
  const handler = (env: PairEnv): AuthHandler =>
    d.refusals.reduceRight<AuthHandler>((then, f) => firstThen(1, refusal(f.message, f.wait, f.code), then), ok(env.backends[p.protocol]!));
  const r = await pair.run({ logLevels: ['info', 'error'], auth: handler }, async (ports) => {
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
    t.note(Date.now() - started >= 900 ? 'waited >= 0.9 s' : 'less than 0.9 s');
    await t.line();
    await d.retry(t);
    t.close();
    logs.push(t.log);
    return logs;
  });
  const n = r.nginx;
  d.closedAfter.forEach((line, i) => assert.equal(n.transcript[i]!.at(-1), line));
  assert.deepEqual(n.transcript.at(-1)!.slice(d.waitedFrom), d.waited);
  assert.deepEqual(n.authRequests.map((q) => /Auth-Login-Attempt: (\d)/.exec(q)![1]), d.attempts);
  const failed = `client login failed: "${d.refusals[0]!.message}"`;
  assert.ok(n.errorLog.some((l) => l.includes(failed)), n.errorLog.join('\n'));
  assertSame(r);
});

// ---------------------------------------------------------- credential override

const credentialOverride = row<{ user: string; pass: string; login: string[]; received: string }>(
  (p) => `${p.label} Auth-User and Auth-Pass from the auth server replace the client credentials`, {
    imap: { user: 'other user', pass: 'p{3}', login: ['a1 LOGIN test@example.com secret'], received: 'a1 LOGIN {10}\r\nother user {4}\r\np{3}\r\n' },
    pop3: { user: 'real@example.com', pass: 'real pass', login: ['USER test@example.com', 'PASS secret'],
      received: 'USER real@example.com\r\nPASS real pass\r\n' },
  }, async (pair, p, d) => {
    const r = await pair.run({ logLevels: ['info'], auth: okToBackend(p.protocol, [['Auth-User', d.user], ['Auth-Pass', d.pass]]) }, async (ports) => {
      const t = await greet(ports[p.protocol]!);
      await dialogue(t, d.login);
      t.close();
      return t.log;
    });
    assert.deepEqual(r.nginx.backendReceived[p.protocol], [d.received]);
    const loggedIn = `client logged in, client: 127.0.0.1, server: 127.0.0.1:<port:${p.protocol}>, login: "${d.user}"`;
    assert.ok(r.nginx.errorLog.some((l) => l.includes(loggedIn)), r.nginx.errorLog.join('\n'));
    assertSame(r);
  });

// ------------------------------------------------------- auth service failures

const authServiceFailures = row<{ garbage: string; badServer: string; logged: RegExp[] }>(
  (p) => `${p.label} auth service failures: down, slow, garbage, bad Auth-Server; the next client is served`, {
    imap: {
      garbage: 'HTTP/1.0 200 OK\r\nAuth_Status: OK\r\n\r\n',
      badServer: 'localhost',
      logged: [
        /<connect\|recv>\(\) failed \(111: Connection refused\) while in http auth state, client: 127\.0\.0\.1, server: 127\.0\.0\.1:<port:authDown>, login: "test@example\.com"/,
        /auth http server 127\.0\.0\.1:<auth-port> timed out \(110: Connection timed out\) while in http auth state/,
        /auth http server 127\.0\.0\.1:<auth-port> sent invalid header in response while in http auth state/,
        /auth http server 127\.0\.0\.1:<auth-port> sent invalid server address:"localhost" while in http auth state/,
      ],
    },
    pop3: {
      garbage: 'HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 0\r\n\r\n',
      badServer: 'localhost',
      logged: [
        /<connect\|recv>\(\) failed \(111: Connection refused\) while in http auth state/,
        /auth http server 127\.0\.0\.1:<auth-port> timed out/,
        /auth http server 127\.0\.0\.1:<auth-port> sent invalid server port:"0"/,
        /sent invalid server address:"localhost"/,
      ],
    },
    smtp: {
      garbage: 'garbage without headers\r\n\r\n',
      badServer: 'mx.example.test',
      logged: [
        /<connect\|recv>\(\) failed \(111: Connection refused\) while in http auth state/,
        /auth http server 127\.0\.0\.1:<auth-port> timed out/,
        /sent invalid server address:"mx\.example\.test"/,
      ],
    },
  }, async (pair, p, d) => {
    const r = await pair.run({
      logLevels: ['error'],
      auth: (env) => {
        let n = 0;
        return (req) => {
          // Requests come from the scenario in order; every second one is the "normal" client.
          const i = n++;
          if (i % 2 === 1) return ok(env.backends[p.protocol]!)(req);
          if (i === 0) return { headers: [['Auth-Status', 'OK']], delayMs: 1000 };
          if (i === 2) return d.garbage;
          return { headers: [['Auth-Status', 'OK'], ['Auth-Server', d.badServer], ['Auth-Port', String(env.backends[p.protocol])]] };
        };
      },
    }, async (ports) => {
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
    });
    const n = r.nginx;
    for (const i of [0, 1, 3, 5]) assert.equal(n.transcript[i]!.at(-1), p.internal, String(i));
    for (const i of [2, 4, 6]) assert.equal(n.transcript[i]![p.served[0]], p.served[1]);
    const log = n.errorLog.join('\n');
    for (const re of d.logged) assert.match(log, re);
    assertSame(r);
  });

// ------------------------------------------------------------ backend failures

const backendFailures = row<{ rejectingReceived: string; logged: RegExp[] }>(
  (p) => `${p.label} backend failures: down, never greeting, closing during login, rejecting, garbage; the next client is served`, {
    imap: {
      rejectingReceived: 'a1 LOGIN {16}\r\ntest@example.com {6}\r\nsecret\r\n',
      logged: [
        /<connect\|recv>\(\) failed \(111: Connection refused\) while <connecting to\|reading response from> upstream, .*upstream: 127\.0\.0\.1:<closed-port:backendDown>/,
        /upstream timed out \(110: Connection timed out\) while connecting to upstream, .*<backend-port:noGreet>/,
        /upstream sent invalid response: "NO \[AUTHENTICATIONFAILED\] invalid credentials"/,
        /upstream sent invalid response: "garbage"/,
      ],
    },
    pop3: {
      rejectingReceived: 'USER test@example.com\r\nPASS secret\r\n',
      logged: [/upstream sent invalid response: "-ERR \[AUTH\] invalid credentials"/],
    },
    smtp: {
      rejectingReceived: `HELO mx.example.test\r\nAUTH PLAIN ${plain('test@example.com', 'secret')}\r\n`,
      logged: [/upstream sent invalid response: "535 5\.7\.8 Authentication failed"/],
    },
  }, async (pair, p, d) => {
    const order = ['backendDown', 'noGreet', 'closing', 'rejecting', 'garbage'];
    const r = await pair.run({
      logLevels: ['info', 'error'],
      auth: (env) => {
        let n = 0;
        return (req) => {
          const i = n++;
          if (i % 2 === 1) return ok(env.backends[p.protocol]!)(req);
          const name = order[i / 2]!;
          return ok(name === 'backendDown' ? env.closed.backendDown! : env.backends[name]!)(req);
        };
      },
    }, async (ports) => {
      const logs: string[][] = [];
      for (let i = 0; i < order.length; i++) {
        const t = await greet(ports.short!);
        await p.sendLogin(t);
        await t.closed(3000);
        logs.push(t.log, await p.normalClient(ports.short!));
      }
      return logs;
    });
    const n = r.nginx;
    for (let i = 0; i < order.length; i++) {
      assert.equal(n.transcript[2 * i]!.at(-1), p.internal, order[i]);
      assert.equal(n.transcript[2 * i + 1]![p.served[0]], p.served[1], order[i]);
    }
    // The backend that never greets is sent nothing.
    assert.deepEqual(n.backendReceived.noGreet, ['']);
    assert.deepEqual(n.backendReceived.rejecting, [d.rejectingReceived]);
    const log = n.errorLog.join('\n');
    for (const re of d.logged) assert.match(log, re);
    assertSame(r);
  });

// ------------------------------------------------------ proxy_pass_error_message

const passErrorMessage = row<{ closedAfter: string }>(
  (p) => `${p.label} proxy_pass_error_message on: the backend refusal reaches the client`, {
    imap: { closedAfter: 'closed after: "a1 NO [AUTHENTICATIONFAILED] invalid credentials\\r\\n"' },
    pop3: { closedAfter: 'closed after: "-ERR [AUTH] invalid credentials\\r\\n"' },
    smtp: { closedAfter: 'closed after: "535 5.7.8 Authentication failed\\r\\n"' },
  }, async (pair, p, d) => {
    const r = await pair.run({
      logLevels: ['info', 'error'],
      auth: (env) => firstThen(1, ok(env.backends.rejecting!), ok(env.backends[p.protocol]!)),
    }, async (ports) => {
      const t = await greet(ports.passError!);
      await p.sendLogin(t);
      await t.closed();
      return [t.log, await p.normalClient(ports.passError!)];
    });
    assert.equal(r.nginx.transcript[0]!.at(-1), d.closedAfter);
    // With the message passed on, the refusal is no error: nginx logs it at info.
    const logged = `upstream sent invalid response: "${p.backendRefusal}" while reading response from upstream`;
    assert.ok(r.nginx.errorLog.some((l) => l.includes('[info]') && l.includes(logged)), r.nginx.errorLog.join('\n'));
    assertSame(r);
  });

// ------------------------------------------------------------------ pipelining

const pipelining = row<{
  /** Several commands in one packet; `readBatch` reads up to the close. */
  batch: string;
  readBatch: (t: Talk) => Promise<void>;
  /** The transcript of the batch session after the greeting and the batch. */
  batchReplies: string[];
  /** One command split across packets (sent 50 ms apart), then the replies read by `readParts`. */
  parts: string[];
  readParts: (t: Talk) => Promise<void>;
  /** What the main backend received, per session. */
  received: string[];
}>((p) => `${p.label} pipelining: several commands in one packet, one command split across packets`, {
  imap: {
    batch: 'a1 CAPABILITY\r\na2 NOOP\r\na3 LOGIN test@example.com secret\r\na4 SELECT INBOX\r\na5 LOGOUT\r\n',
    readBatch: async (t) => { await t.until(/a2 .*\r\n/); await t.line(); await t.closed(); },
    batchReplies: [
      'S: * CAPABILITY IMAP4 IMAP4rev1 UIDPLUS AUTH=PLAIN AUTH=LOGIN AUTH=CRAM-MD5\r\na1 OK completed\r\na2 OK completed\r\n',
      'S: a3 OK LOGIN completed\r\n',
      'closed after: "* 1 EXISTS\\r\\na4 OK [READ-WRITE] SELECT completed\\r\\n* BYE fake imap\\r\\na5 OK LOGOUT completed\\r\\n"'],
    parts: ['b1 LO', 'GIN test@exa', 'mple.com "sec', 'ret"\r', '\nb2 NOOP\r\n'],
    readParts: async (t) => { await t.line(); await t.line(); },
    received: ['a3 LOGIN {16}\r\ntest@example.com {6}\r\nsecret\r\na4 SELECT INBOX\r\na5 LOGOUT\r\n',
      'b1 LOGIN {16}\r\ntest@example.com {6}\r\nsecret\r\nb2 NOOP\r\n'],
  },
  pop3: {
    batch: 'CAPA\r\nNOOP\r\nUSER test@example.com\r\nPASS secret\r\nSTAT\r\nQUIT\r\n',
    readBatch: async (t) => { await t.closed(); },
    batchReplies: ['closed after: "+OK Capability list follows\\r\\nTOP\\r\\nUSER\\r\\nUIDL\\r\\nSASL PLAIN LOGIN CRAM-MD5 EXTERNAL\\r\\n.\\r\\n+OK\\r\\n+OK\\r\\n+OK logged in\\r\\n+OK 1 24\\r\\n+OK bye\\r\\n"'],
    parts: ['US', 'ER test@exam', 'ple.com\r', '\nPASS sec', 'ret\r\nSTAT\r\n'],
    readParts: async (t) => { await t.line(); await t.line(); await t.line(); },
    received: ['USER test@example.com\r\nPASS secret\r\nSTAT\r\nQUIT\r\n', 'USER test@example.com\r\nPASS secret\r\nSTAT\r\n'],
  },
  smtp: {
    batch: `EHLO client.example\r\nNOOP\r\nAUTH PLAIN ${plain('test@example.com', 'secret')}\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nQUIT\r\n`,
    readBatch: async (t) => { await t.closed(); },
    batchReplies: ['closed after: "250-mx.example.test\\r\\n250 AUTH PLAIN LOGIN CRAM-MD5\\r\\n250 2.0.0 OK\\r\\n235 2.0.0 OK\\r\\n250 2.1.0 Ok\\r\\n250 2.1.5 Ok\\r\\n221 2.0.0 Bye\\r\\n"'],
    parts: ['EH', 'LO c.example\r', '\nAUTH PL', `AIN ${plain('test@example.com', 'secret')}\r\n`, 'NOOP\r\n'],
    readParts: async (t) => { await smtpReply(t); await t.line(); await t.line(); },
    received: ['EHLO mx.example.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nQUIT\r\n', 'EHLO mx.example.test\r\nNOOP\r\n'],
  },
}, async (pair, p, d) => {
  const r = await pair.run({}, async (ports) => {
    const a = await greet(ports[p.protocol]!);
    await a.send(d.batch);
    await d.readBatch(a);
    const b = await greet(ports[p.protocol]!);
    for (const part of d.parts) {
      await b.send(part);
      await sleep(50);
    }
    await d.readParts(b);
    b.close();
    return [a.log, b.log];
  });
  assert.deepEqual(r.nginx.transcript[0]!.slice(2), d.batchReplies);
  assert.deepEqual(r.nginx.backendReceived[p.protocol], d.received);
  assertSame(r);
});

// ------------------------------------------------------------------ max_errors

const maxErrors = row<{
  /** Invalid (or refused) commands, one at a time, and their replies; then the close. */
  lines: string[];
  replies: string[];
  /** Invalid commands in one packet, and all the client reads before the close. */
  pipelined?: { send: string; closedAfter: string };
  logged?: string;
}>((p) => `${p.label} max_errors 3: error replies, then close${p.protocol === 'imap' ? ' (also when pipelined)' : ''}`, {
  imap: {
    lines: ['a1 FOO', 'a2 LOGIN onlyone', 'a%3 NOOP', ''],
    replies: ['a1 BAD invalid command', 'a2 BAD invalid command', '* BAD invalid command', '* BAD invalid command'],
    pipelined: { send: 'b1 X\r\nb2 Y\r\nb3 Z\r\nb4 NOOP\r\n', closedAfter: 'closed after: "b1 BAD invalid command\\r\\nb2 BAD invalid command\\r\\nb3 BAD invalid command\\r\\n"' },
  },
  pop3: {
    lines: ['STAT', 'PASS x', 'NOOP a b c d', 'LISTX'],
    replies: ['-ERR invalid command', '-ERR invalid command', '-ERR invalid command', '-ERR invalid command'],
  },
  smtp: {
    // Semantic errors (501 for HELO without a name, 530 before AUTH) are not counted.
    lines: ['VRFY x', 'HELO', 'MAIL FROM:<a@example.com>', 'DATA', 'XCLIENT ADDR=1.2.3.4', 'FOOBAR'],
    replies: ['500 5.5.1 Invalid command', '501 5.5.4 Invalid argument', '530 5.7.1 Authentication required',
      '500 5.5.1 Invalid command', '500 5.5.1 Invalid command', '500 5.5.1 Invalid command'],
    logged: 'client was rejected: "MAIL FROM:<a@example.com>__" while in auth state',
  },
}, async (pair, p, d) => {
  const r = await pair.run({ logLevels: ['info'] }, async (ports) => {
    const a = await greet(ports.limits!);
    await dialogue(a, d.lines);
    await a.closed();
    const logs = [a.log];
    if (d.pipelined) {
      const b = await greet(ports.limits!);
      await b.send(d.pipelined.send);
      await b.closed();
      logs.push(b.log);
    }
    return logs;
  });
  const n = r.nginx;
  assert.deepEqual(n.transcript[0], [...exchange(p.greeting, d.lines, d.replies), 'closed after: ""']);
  if (d.pipelined) assert.equal(n.transcript[1]!.at(-1), d.pipelined.closedAfter);
  assert.equal(n.errorLog.filter((l) => l.includes('client sent too many invalid commands')).length, n.transcript.length);
  if (d.logged) assert.ok(n.errorLog.some((l) => l.includes(d.logged!)), n.errorLog.join('\n'));
  assertSame(r);
});

// ------------------------------------------------------------ too long command

const tooLong = row<{
  /** Per session: commands that still fit (with their replies), then the command that fills the buffer. */
  sessions: Array<{ lines?: string[]; replies?: string[]; overlong: string; closedAfter: string }>;
  logged: string;
}>((p) => `${p.label} too long command: error reply and close${p.protocol === 'imap' ? ', with and without a tag read' : ''}`, {
  imap: {
    sessions: [
      { overlong: `a1 LOGIN ${'x'.repeat(256 - 9)}`, closedAfter: 'closed after: "a1 BAD invalid command\\r\\n"' },
      { overlong: 'y'.repeat(256), closedAfter: 'closed after: "* BAD invalid command\\r\\n"' },
    ],
    logged: 'client sent too long command "a1 LOGIN xxx',
  },
  pop3: {
    // The command buffer is a fixed 128 bytes: a USER line of 128 bytes with its CRLF fits; 128 bytes without a line end fill it.
    sessions: [{ lines: [`USER ${'u'.repeat(128 - 7)}`], replies: ['+OK'], overlong: `USER ${'u'.repeat(128 - 5)}`,
      closedAfter: 'closed after: "-ERR invalid command\\r\\n"' }],
    logged: 'client sent too long command "USER uuu',
  },
  smtp: {
    sessions: [{ overlong: `HELO ${'h'.repeat(256 - 5)}`, closedAfter: 'closed after: "500 5.5.1 Invalid command\\r\\n"' }],
    logged: 'client sent too long command "HELO hhh',
  },
}, async (pair, p, d) => {
  const r = await pair.run({ logLevels: ['info'] }, async (ports) => {
    const logs: string[][] = [];
    for (const s of d.sessions) {
      const t = await greet(ports.limits!);
      await dialogue(t, s.lines ?? []);
      await t.send(s.overlong);
      await t.closed();
      logs.push(t.log);
    }
    return logs;
  });
  d.sessions.forEach((s, i) => assert.deepEqual(r.nginx.transcript[i],
    [...exchange(p.greeting, s.lines ?? [], s.replies ?? []), `C: ${s.overlong}`, s.closedAfter]));
  assert.ok(r.nginx.errorLog.some((l) => l.includes(d.logged)), r.nginx.errorLog.join('\n'));
  // Postern quotes a too long authentication command (LOGIN, USER) by its tag and name only.
  assert.deepEqual(posternRecord(r), tooLongByName(r.nginx));
});

// --------------------------------------------------------------------- timeout

const timeoutDeadline = row<{ noop: (i: number) => string; firstReply: string }>(
  (p) => `${p.label} timeout 1s is a deadline from the greeting, not extended by NOOPs`, {
    imap: { noop: (i) => `t${i} NOOP\r\n`, firstReply: 'S: t0 OK completed\r\n' },
    pop3: { noop: () => 'NOOP\r\n', firstReply: 'S: +OK\r\n' },
    smtp: { noop: () => 'NOOP\r\n', firstReply: 'S: 250 2.0.0 OK\r\n' },
  }, async (pair, p, d) => {
    const r = await pair.run({ logLevels: ['info'] }, async (ports) => {
      const t = await Talk.open(ports.short!);
      await t.line();
      const started = Date.now();
      for (let i = 0; i < 10 && !t.client.closed; i++) {
        await t.send(d.noop(i));
        await t.line().catch(() => undefined);
        await sleep(300);
      }
      await t.closed(3000);
      const ms = Date.now() - started;
      // Transcripts: only NOOP exchanges before the close, whose count depends on timing; keep the end.
      return { closedBetween: ms >= 900 && ms < 1900 ? '0.9 s and 1.9 s' : `${ms} ms`, last: t.log.at(-1), firstReply: t.log[2] };
    });
    assert.deepEqual(r.nginx.transcript, { closedBetween: '0.9 s and 1.9 s', last: 'closed after: ""', firstReply: d.firstReply });
    assert.ok(r.nginx.errorLog.some((l) => l.includes('client timed out (110: Connection timed out) while in auth state')), r.nginx.errorLog.join('\n'));
    assertSame(r);
  });

// -------------------------------------------------------------- PROXY protocol

const proxyProtocol = row<{
  header: string;
  /** Commands after the greeting, each with one reply line. */
  lines: string[];
  clientIp: RegExp;
  /** The PROXY header the backend gets: the client from the header, the proxy's own address. */
  toBackend: string;
  received?: string;
}>((p) => `${p.label} PROXY protocol listen with set_real_ip_from, and proxy_protocol to the backend`, {
  imap: {
    header: 'PROXY TCP4 192.0.2.10 198.51.100.5 51000 143\r\n',
    lines: ['a1 LOGIN test@example.com secret', 'a2 NOOP'],
    clientIp: /\r\nClient-IP: 192\.0\.2\.10\r\nProxy-Protocol-Addr: 192\.0\.2\.10\r\nProxy-Protocol-Port: 51000\r\nProxy-Protocol-Server-Addr: 198\.51\.100\.5\r\nProxy-Protocol-Server-Port: 143\r\n/,
    toBackend: 'PROXY TCP4 192.0.2.10 127.0.0.1 51000 <port:pp>\r\n',
    received: 'a1 LOGIN {16}\r\ntest@example.com {6}\r\nsecret\r\na2 NOOP\r\n',
  },
  pop3: {
    header: 'PROXY TCP6 2001:db8::1 2001:db8::2 40000 110\r\n',
    lines: ['USER test@example.com', 'PASS secret', 'NOOP'],
    clientIp: /\r\nClient-IP: 2001:db8::1\r\nProxy-Protocol-Addr: 2001:db8::1\r\nProxy-Protocol-Port: 40000\r\nProxy-Protocol-Server-Addr: 2001:db8::2\r\nProxy-Protocol-Server-Port: 110\r\n/,
    toBackend: 'PROXY TCP6 2001:db8::1 127.0.0.1 40000 <port:pp>\r\n',
  },
  smtp: {
    // With xclient on, the client address also reaches the backend as XCLIENT ADDR.
    header: 'PROXY TCP4 192.0.2.10 198.51.100.5 51000 25\r\n',
    lines: ['HELO client.example', `AUTH PLAIN ${plain('test@example.com', 'secret')}`, 'NOOP'],
    clientIp: /\r\nClient-IP: 192\.0\.2\.10\r\nClient-Host: \[UNAVAILABLE\]\r\nProxy-Protocol-Addr: 192\.0\.2\.10\r\n/,
    toBackend: 'PROXY TCP4 192.0.2.10 127.0.0.1 51000 <port:pp>\r\n',
    received: 'EHLO mx.example.test\r\nXCLIENT ADDR=192.0.2.10 LOGIN=test@example.com NAME=[UNAVAILABLE]\r\nHELO client.example\r\nNOOP\r\n',
  },
}, async (pair, p, d) => {
  const r = await pair.run({ logLevels: ['info'], auth: okToBackend('pp') }, async (ports) => {
    const t = await Talk.open(ports.pp!);
    await t.send(d.header);
    await t.line();
    await dialogue(t, d.lines);
    t.close();
    return t.log;
  });
  const n = r.nginx;
  assert.match(n.authRequests[0]!, d.clientIp);
  assert.deepEqual(n.proxyHeaders.pp, [d.toBackend]);
  if (d.received) assert.equal(n.backendReceived.pp![0], d.received);
  const clientIp = /^PROXY TCP\d (\S+) /.exec(d.header)![1]!;
  const loggedIn = `client logged in, client: ${clientIp}, server: 127.0.0.1:<port:pp>`;
  assert.ok(n.errorLog.some((l) => l.includes(loggedIn)), n.errorLog.join('\n'));
  assertSame(r);
});

// ------------------------------------------- log context of a refused attempt

const refusedLoginContext = row<{ refused: string; badBase64: string }>(
  (p) => `${p.label} log context keeps the login of a refused attempt (Auth-Wait) for later session lines`, {
    imap: { refused: 'a1 LOGIN someone wrong', badBase64: 'a2 AUTHENTICATE PLAIN !!!' },
    smtp: { refused: `AUTH PLAIN ${plain('someone', 'wrong')}`, badBase64: 'AUTH PLAIN !!!' },
  }, async (pair, p, d) => {
    const r = await pair.run({ logLevels: ['info'], auth: () => refusal('No way', 1) }, async (ports) => {
      const t = await greet(ports.limits!);
      await dialogue(t, [d.refused], 3000);
      await dialogue(t, [d.badBase64]);
      await t.send('x'.repeat(256));
      await t.closed();
      return t.log;
    });
    const log = r.nginx.errorLog.join('\n');
    assert.match(log, /client sent invalid base64 encoding in AUTH PLAIN command while in auth state, client: 127\.0\.0\.1, server: 127\.0\.0\.1:<port:limits>, login: "someone"/);
    assert.match(log, /client sent too long command "x+" while in auth state, client: 127\.0\.0\.1, server: 127\.0\.0\.1:<port:limits>, login: "someone"/);
    assertSame(r);
  });

// ------------------------------------------- EXTERNAL with an initial response

const externalNeedsConfig = row<{ port: string; lines: string[]; authRequest: RegExp; posternReplies: string[] }>(
  (p) => `Postern is stricter: ${p.label} ${p.protocol === 'imap' ? 'AUTHENTICATE' : 'AUTH'} EXTERNAL with an initial response needs ${p.protocol}_auth external`, {
    // imap_auth (plain login cram-md5) and the short POP3 server (no pop3_auth) leave EXTERNAL out.
    imap: {
      port: 'imap',
      lines: [`a1 AUTHENTICATE EXTERNAL ${b64('test@example.com')}`, 'a2 NOOP'],
      authRequest: /^Auth-Method: external\r\nAuth-User: test@example\.com\r\nAuth-Pass: \r\n/m,
      posternReplies: ['a1 BAD invalid command', 'a2 OK completed'],
    },
    pop3: {
      port: 'short',
      lines: [`AUTH EXTERNAL ${b64('test@example.com')}`, 'NOOP'],
      authRequest: /^Auth-Method: external\r\n/m,
      posternReplies: ['-ERR invalid command', '+OK'],
    },
  }, async (pair, p, d) => {
    const r = await pair.run({}, async (ports) => {
      const t = await greet(ports[d.port]!);
      await t.cmd(`${d.lines[0]}\r\n`);
      await t.cmd(`${d.lines[1]}\r\n`).catch(() => undefined);
      t.close();
      return t.log;
    });
    // nginx 1.22.1 (and latest) start auth_http with Auth-Method external.
    assert.match(r.nginx.authRequests[0]!, d.authRequest);
    const pr = posternRecord(r);
    assert.deepEqual(pr.transcript, exchange(p.greeting, d.lines, d.posternReplies));
    assert.deepEqual(pr.authRequests, []);
  });

/** The table: one row per scenario, in the order the per-protocol files had them. */
const ROWS: Row[] = [
  authRefusal, credentialOverride, authServiceFailures, backendFailures, passErrorMessage, pipelining,
  maxErrors, tooLong, timeoutDeadline, proxyProtocol, refusedLoginContext, externalNeedsConfig,
];

for (const protocol of MATRIX_PROTOCOLS) {
  describe(protocol.label, () => {
    let pair: Pair;
    // One pair per protocol, started and stopped around its rows: at most two proxies run at a time.
    before(async () => { pair = await Pair.start(protocol.setup); });
    after(async () => { await pair?.stop(); });
    for (const r of ROWS.filter((x) => x.protocols.includes(protocol.protocol))) {
      test(r.title(protocol), () => r.run(pair, protocol));
    }
  });
}

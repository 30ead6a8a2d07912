/**
 * POP3 end to end (nginx-tests mail_pop3.t, mail_max_errors.t, mail_proxy_protocol.t):
 * each scenario runs against nginx 1.22.1 and Postern with the same config, fake auth
 * server and fake backends; records must be equal except where named differences apply.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { certs } from '../../support/certs.js';
import { makeMessage } from '../../support/fake-backend.js';
import { assertSame, Pair, posternRecord, sleep, tooLongByName } from './pair.js';
import { b64, cramDigest, firstThen, ok, okToBackend, refusal, Talk } from './talk.js';

const BIG = 4 * 1024 * 1024;

let pair: Pair;

before(async () => {
  const pki = certs();
  pair = await Pair.start({
    listen: ['pop3', 'short', 'limits', 'authDown', 'slowAuth', 'passError', 'pp', 'stls'],
    closed: ['backendDown', 'authDown'],
    backends: {
      pop3: { protocol: 'pop3' },
      big: { protocol: 'pop3', options: { message: BIG } },
      noGreet: { protocol: 'pop3', options: { neverGreet: true } },
      closing: { protocol: 'pop3', options: { closeDuringLogin: true } },
      rejecting: { protocol: 'pop3', options: { accept: false } },
      garbage: { protocol: 'pop3', options: { garbage: 'garbage\r\n' } },
      pp: { protocol: 'pop3', proxyProtocol: true },
    },
    auth: okToBackend('pop3'),
    config: ({ ports, authUrl, closed }) => `
      auth_http ${authUrl};
      server { listen 127.0.0.1:${ports.pop3}; protocol pop3; server_name pop.example.test;
               pop3_auth plain apop cram-md5 external; }
      server { listen 127.0.0.1:${ports.short}; protocol pop3; timeout 1s; }
      server { listen 127.0.0.1:${ports.limits}; protocol pop3; max_errors 3; }
      server { listen 127.0.0.1:${ports.authDown}; protocol pop3; auth_http 127.0.0.1:${closed.authDown}/auth; }
      server { listen 127.0.0.1:${ports.slowAuth}; protocol pop3; auth_http_timeout 500ms; }
      server { listen 127.0.0.1:${ports.passError}; protocol pop3; proxy_pass_error_message on; }
      server { listen 127.0.0.1:${ports.pp} proxy_protocol; protocol pop3; set_real_ip_from 127.0.0.1;
               proxy_protocol on; }
      server { listen 127.0.0.1:${ports.stls}; protocol pop3; starttls only; pop3_capabilities TOP USER UIDL;
               ssl_protocols TLSv1.2 TLSv1.3; ssl_certificate ${pki.serverRsa.cert}; ssl_certificate_key ${pki.serverRsa.key}; }
    `,
  });
});

after(async () => {
  await pair?.stop();
});

async function greet(port: number): Promise<Talk> {
  const t = await Talk.open(port);
  await t.line();
  return t;
}

/** USER/PASS, STAT, QUIT: the "served normally" check after a failure. */
async function normalClient(port: number): Promise<string[]> {
  const t = await greet(port);
  await t.cmd('USER test@example.com\r\n');
  await t.cmd('PASS secret\r\n');
  await t.cmd('STAT\r\n');
  await t.send('QUIT\r\n');
  await t.closed();
  return t.log;
}

const internal = 'closed after: "-ERR internal server error\\r\\n"';

test('POP3 USER/PASS login, CAPA, AUTH list, data relayed both ways', async () => {
  const r = await pair.run({ logLevels: ['info'] }, async (ports) => {
    const t = await greet(ports.pop3!);
    await t.send('CAPA\r\n');
    await t.until(/^\.\r\n/m);
    await t.send('AUTH\r\n');
    await t.until(/^\.\r\n/m);
    await t.cmd('USER test@example.com\r\n');
    await t.cmd('PASS  sec ret \r\n');
    await t.cmd('STAT\r\n');
    await t.send('RETR 1\r\n');
    await t.until(/^\.\r\n/m);
    await t.send('QUIT\r\n');
    await t.closed();
    return t.log;
  });
  const n = r.nginx;
  assert.match(n.transcript[0]!, /^S: \+OK POP3 ready <SALT@pop\.example\.test>\r\n$/);
  assert.equal(n.transcript[2], 'S: +OK Capability list follows\r\nTOP\r\nUSER\r\nUIDL\r\nSASL PLAIN LOGIN CRAM-MD5 EXTERNAL\r\n.\r\n');
  assert.equal(n.transcript[4], 'S: +OK methods supported:\r\nPLAIN\r\nLOGIN\r\nCRAM-MD5\r\nEXTERNAL\r\n.\r\n');
  assert.equal(n.transcript[8], 'S: +OK logged in\r\n');
  assert.match(n.authRequests[0]!, /^Auth-Method: plain\r\nAuth-User: test@example\.com\r\nAuth-Pass: sec%20ret%20\r\nAuth-Protocol: pop3\r\n/m);
  assert.deepEqual(n.backendReceived.pop3, ['USER test@example.com\r\nPASS sec ret \r\nSTAT\r\nRETR 1\r\nQUIT\r\n']);
  assertSame(r);
});

test('POP3 APOP, AUTH PLAIN/LOGIN with and without initial response, AUTH CRAM-MD5', async () => {
  const plain = b64('\0test@example.com\0secret');
  const r = await pair.run({}, async (ports) => {
    const logs: string[][] = [];
    const session = async (steps: (t: Talk, salt: string) => Promise<void>): Promise<void> => {
      const t = await Talk.open(ports.pop3!);
      const salt = /<[^>]+>/.exec(await t.line())![0];
      await steps(t, salt);
      await t.cmd('STAT\r\n');
      t.close();
      logs.push(t.log);
    };
    await session(async (t, salt) => {
      await t.cmd(`APOP test@example.com ${createHash('md5').update(salt + 'secret').digest('hex')}\r\n`);
    });
    await session(async (t) => { await t.cmd('AUTH PLAIN\r\n'); await t.cmd(`${plain}\r\n`); });
    await session(async (t) => { await t.cmd(`auth plain ${plain}\r\n`); });
    await session(async (t) => {
      await t.cmd('AUTH LOGIN\r\n');
      await t.cmd(`${b64('test@example.com')}\r\n`);
      await t.cmd(`${b64('secret')}\r\n`);
    });
    await session(async (t) => { await t.cmd(`AUTH LOGIN ${b64('test@example.com')}\r\n`); await t.cmd(`${b64('secret')}\r\n`); });
    await session(async (t, salt) => {
      const challenge = await t.cmd('AUTH CRAM-MD5\r\n');
      assert.equal(Buffer.from(challenge.slice(2), 'base64').toString('latin1'), salt);
      await t.cmd(`${b64(`test@example.com ${cramDigest('secret', salt)}`)}\r\n`);
    });
    return logs;
  });
  const n = r.nginx;
  assert.deepEqual(n.authRequests.map((q) => /Auth-Method: (\S+)/.exec(q)![1]), ['apop', 'plain', 'plain', 'plain', 'plain', 'cram-md5']);
  assert.match(n.authRequests[0]!, /^Auth-User: test@example\.com\r\nAuth-Pass: <digest>\r\nAuth-Salt: <SALT@pop\.example\.test>\r\n/m);
  assert.deepEqual(n.backendReceived.pop3, Array(6).fill('USER test@example.com\r\nPASS secret\r\nSTAT\r\n'));
  assert.equal(n.transcript[1]![2], 'S: + \r\n');
  assert.equal(n.transcript[3]![2], 'S: + VXNlcm5hbWU6\r\n');
  for (const log of n.transcript) assert.equal(log.at(-1), 'S: +OK 1 24\r\n');
  assertSame(r);
});

test('POP3 auth refusal: without Auth-Wait the session ends; with Auth-Wait USER is needed again', async () => {
  const r = await pair.run({
    logLevels: ['info'],
    auth: (env) => firstThen(1, refusal('Invalid login or password'), firstThen(1, refusal('Try later', 1), ok(env.backends.pop3!))),
  }, async (ports) => {
    const a = await greet(ports.pop3!);
    await a.cmd('USER test@example.com\r\n');
    await a.send('PASS wrong\r\n');
    await a.closed();
    const b = await greet(ports.pop3!);
    await b.cmd('USER test@example.com\r\n');
    const started = Date.now();
    await b.send('PASS wrong\r\nPASS again\r\n');
    await b.line(3000);
    b.note(Date.now() - started >= 900 ? 'waited >= 0.9 s' : 'no wait');
    await b.line();
    await b.cmd('USER test@example.com\r\n');
    await b.cmd('PASS secret\r\n');
    b.close();
    return [a.log, b.log];
  });
  assert.equal(r.nginx.transcript[0]!.at(-1), 'closed after: "-ERR Invalid login or password\\r\\n"');
  assert.deepEqual(r.nginx.transcript[1]!.slice(4), ['S: -ERR Try later\r\n', 'note: waited >= 0.9 s', 'S: -ERR invalid command\r\n',
    'C: USER test@example.com\r\n', 'S: +OK\r\n', 'C: PASS secret\r\n', 'S: +OK logged in\r\n']);
  assertSame(r);
});

test('POP3 Auth-User/Auth-Pass override the client credentials', async () => {
  const r = await pair.run({ auth: okToBackend('pop3', [['Auth-User', 'real@example.com'], ['Auth-Pass', 'real pass']]) }, async (ports) => {
    const t = await greet(ports.pop3!);
    await t.cmd('USER test@example.com\r\n');
    await t.cmd('PASS secret\r\n');
    t.close();
    return t.log;
  });
  assert.deepEqual(r.nginx.backendReceived.pop3, ['USER real@example.com\r\nPASS real pass\r\n']);
  assertSame(r);
});

test('POP3 auth service failures: down, slow, garbage, bad Auth-Server; the next client is served', async () => {
  const r = await pair.run({
    logLevels: ['error'],
    auth: (env) => {
      let n = 0;
      return (req) => {
        const i = n++;
        if (i % 2 === 1) return ok(env.backends.pop3!)(req);
        if (i === 0) return { headers: [['Auth-Status', 'OK']], delayMs: 1000 };
        if (i === 2) return 'HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\nAuth-Port: 0\r\n\r\n';
        return { headers: [['Auth-Status', 'OK'], ['Auth-Server', 'localhost'], ['Auth-Port', String(env.backends.pop3)]] };
      };
    },
  }, async (ports) => {
    const logs: string[][] = [];
    const down = await greet(ports.authDown!);
    await down.cmd('USER test@example.com\r\n');
    await down.send('PASS secret\r\n');
    await down.closed();
    logs.push(down.log);
    for (let i = 0; i < 3; i++) {
      const t = await greet(ports.slowAuth!);
      await t.cmd('USER test@example.com\r\n');
      await t.send('PASS secret\r\n');
      await t.closed(3000);
      logs.push(t.log, await normalClient(ports.slowAuth!));
    }
    return logs;
  });
  const n = r.nginx;
  for (const i of [0, 1, 3, 5]) assert.equal(n.transcript[i]!.at(-1), internal);
  for (const i of [2, 4, 6]) assert.equal(n.transcript[i]![4], 'S: +OK logged in\r\n');
  const log = n.errorLog.join('\n');
  assert.match(log, /<connect\|recv>\(\) failed \(111: Connection refused\) while in http auth state/);
  assert.match(log, /auth http server 127\.0\.0\.1:<auth-port> timed out/);
  assert.match(log, /auth http server 127\.0\.0\.1:<auth-port> sent invalid server port:"0"/);
  assert.match(log, /sent invalid server address:"localhost"/);
  assertSame(r);
});

test('POP3 backend failures: down, never greeting, closing during login, rejecting, garbage; the next client is served', async () => {
  const order = ['backendDown', 'noGreet', 'closing', 'rejecting', 'garbage'];
  const r = await pair.run({
    logLevels: ['info', 'error'],
    auth: (env) => {
      let n = 0;
      return (req) => {
        const i = n++;
        if (i % 2 === 1) return ok(env.backends.pop3!)(req);
        const name = order[i / 2]!;
        return ok(name === 'backendDown' ? env.closed.backendDown! : env.backends[name]!)(req);
      };
    },
  }, async (ports) => {
    const logs: string[][] = [];
    for (let i = 0; i < order.length; i++) {
      const t = await greet(ports.short!);
      await t.cmd('USER test@example.com\r\n');
      await t.send('PASS secret\r\n');
      await t.closed(3000);
      logs.push(t.log, await normalClient(ports.short!));
    }
    return logs;
  });
  const n = r.nginx;
  for (let i = 0; i < order.length; i++) {
    assert.equal(n.transcript[2 * i]!.at(-1), internal, order[i]);
    assert.equal(n.transcript[2 * i + 1]![4], 'S: +OK logged in\r\n', order[i]);
  }
  assert.deepEqual(n.backendReceived.rejecting, ['USER test@example.com\r\nPASS secret\r\n']);
  assert.match(n.errorLog.join('\n'), /upstream sent invalid response: "-ERR \[AUTH\] invalid credentials"/);
  assertSame(r);
});

test('POP3 proxy_pass_error_message on: the backend refusal reaches the client', async () => {
  const r = await pair.run({
    logLevels: ['info', 'error'],
    auth: (env) => firstThen(1, ok(env.backends.rejecting!), ok(env.backends.pop3!)),
  }, async (ports) => {
    const t = await greet(ports.passError!);
    await t.cmd('USER test@example.com\r\n');
    await t.send('PASS secret\r\n');
    await t.closed();
    return [t.log, await normalClient(ports.passError!)];
  });
  assert.equal(r.nginx.transcript[0]!.at(-1), 'closed after: "-ERR [AUTH] invalid credentials\\r\\n"');
  assertSame(r);
});

test('POP3 pipelining: commands in one packet, a command split across packets', async () => {
  const r = await pair.run({}, async (ports) => {
    const a = await greet(ports.pop3!);
    await a.send('CAPA\r\nNOOP\r\nUSER test@example.com\r\nPASS secret\r\nSTAT\r\nQUIT\r\n');
    await a.closed();
    const b = await greet(ports.pop3!);
    for (const part of ['US', 'ER test@exam', 'ple.com\r', '\nPASS sec', 'ret\r\nSTAT\r\n']) {
      await b.send(part);
      await sleep(50);
    }
    await b.line();
    await b.line();
    await b.line();
    b.close();
    return [a.log, b.log];
  });
  assert.equal(r.nginx.transcript[0]!.at(-1), 'closed after: "+OK Capability list follows\\r\\nTOP\\r\\nUSER\\r\\nUIDL\\r\\nSASL PLAIN LOGIN CRAM-MD5 EXTERNAL\\r\\n.\\r\\n+OK\\r\\n+OK\\r\\n+OK logged in\\r\\n+OK 1 24\\r\\n+OK bye\\r\\n"');
  assert.deepEqual(r.nginx.backendReceived.pop3, ['USER test@example.com\r\nPASS secret\r\nSTAT\r\nQUIT\r\n', 'USER test@example.com\r\nPASS secret\r\nSTAT\r\n']);
  assertSame(r);
});

test('POP3 max_errors 3 and the fixed 128-byte command buffer', async () => {
  const r = await pair.run({ logLevels: ['info'] }, async (ports) => {
    const a = await greet(ports.limits!);
    await a.cmd('STAT\r\n');
    await a.cmd('PASS x\r\n');
    await a.cmd('NOOP a b c d\r\n');
    await a.cmd('LISTX\r\n');
    await a.closed();
    const b = await greet(ports.limits!);
    await b.cmd(`USER ${'u'.repeat(128 - 7)}\r\n`);
    await b.send(`USER ${'u'.repeat(128 - 5)}`);
    await b.closed();
    return [a.log, b.log];
  });
  assert.deepEqual(r.nginx.transcript[0], ['S: +OK POP3 ready\r\n', 'C: STAT\r\n', 'S: -ERR invalid command\r\n',
    'C: PASS x\r\n', 'S: -ERR invalid command\r\n', 'C: NOOP a b c d\r\n', 'S: -ERR invalid command\r\n',
    'C: LISTX\r\n', 'S: -ERR invalid command\r\n', 'closed after: ""']);
  assert.equal(r.nginx.transcript[1]![2], 'S: +OK\r\n');
  assert.equal(r.nginx.transcript[1]!.at(-1), 'closed after: "-ERR invalid command\\r\\n"');
  assert.ok(r.nginx.errorLog.some((l) => l.includes('client sent too long command "USER uuu')), r.nginx.errorLog.join('\n'));
  // Postern quotes a too long USER by its name only
  assert.deepEqual(posternRecord(r), tooLongByName(r.nginx));
});

test('POP3 timeout 1s: a deadline from the greeting', async () => {
  const r = await pair.run({ logLevels: ['info'] }, async (ports) => {
    const t = await Talk.open(ports.short!);
    await t.line();
    const started = Date.now();
    for (let i = 0; i < 10 && !t.client.closed; i++) {
      await t.send('NOOP\r\n');
      await t.line().catch(() => undefined);
      await sleep(300);
    }
    await t.closed(3000);
    const ms = Date.now() - started;
    return { closedBetween: ms >= 900 && ms < 1900 ? '0.9 s and 1.9 s' : `${ms} ms`, last: t.log.at(-1) };
  });
  assert.deepEqual(r.nginx.transcript, { closedBetween: '0.9 s and 1.9 s', last: 'closed after: ""' });
  assertSame(r);
});

test('POP3 PROXY protocol listen with set_real_ip_from, and proxy_protocol to the backend', async () => {
  const r = await pair.run({ logLevels: ['info'], auth: okToBackend('pp') }, async (ports) => {
    const t = await Talk.open(ports.pp!);
    await t.send('PROXY TCP6 2001:db8::1 2001:db8::2 40000 110\r\n');
    await t.line();
    await t.cmd('USER test@example.com\r\n');
    await t.cmd('PASS secret\r\n');
    await t.cmd('NOOP\r\n');
    t.close();
    return t.log;
  });
  const n = r.nginx;
  assert.match(n.authRequests[0]!, /\r\nClient-IP: 2001:db8::1\r\nProxy-Protocol-Addr: 2001:db8::1\r\nProxy-Protocol-Port: 40000\r\nProxy-Protocol-Server-Addr: 2001:db8::2\r\nProxy-Protocol-Server-Port: 110\r\n/);
  assert.deepEqual(n.proxyHeaders.pp, ['PROXY TCP6 2001:db8::1 127.0.0.1 40000 <port:pp>\r\n']);
  assertSame(r);
});

test('POP3: a 4 MB RETR arrives byte-exact', async () => {
  const message = makeMessage(BIG);
  const r = await pair.run({ auth: okToBackend('big') }, async (ports) => {
    const t = await greet(ports.pop3!);
    await t.cmd('USER test@example.com\r\n');
    await t.cmd('PASS secret\r\n');
    await t.client.send('RETR 1\r\n');
    const data = await t.client.read(/\r\n\.\r\n/, 20000);
    t.close();
    return { exact: data === `+OK ${BIG} octets\r\n${message}.\r\n`, log: t.log };
  });
  assert.equal(r.nginx.transcript.exact, true);
  assertSame(r);
});

test('latest nginx (1.29.7): Auth-Salt only for apop and cram-md5, not for EXTERNAL on an APOP server', async () => {
  const r = await pair.run({}, async (ports) => {
    const t = await greet(ports.pop3!);
    await t.cmd(`AUTH EXTERNAL ${b64('test@example.com')}\r\n`);
    t.close();
    return t.log;
  });
  assert.match(r.nginx.authRequests[0]!, /^Auth-Method: external\r\nAuth-User: test@example\.com\r\nAuth-Pass: \r\nAuth-Salt: <SALT@pop\.example\.test>\r\nAuth-Protocol: pop3\r\n/m);
  const p = posternRecord(r);
  assert.equal(p.authRequests.length, 1);
  assert.equal(p.authRequests[0], r.nginx.authRequests[0]!.replace(/Auth-Salt: .*\r\n/, ''));
  assert.deepEqual(p.transcript, r.nginx.transcript);
  assert.deepEqual(p.backendReceived, r.nginx.backendReceived);
});

test('Postern is stricter: AUTH EXTERNAL with an initial response needs pop3_auth external', async () => {
  const r = await pair.run({}, async (ports) => {
    const t = await greet(ports.short!);
    await t.cmd(`AUTH EXTERNAL ${b64('test@example.com')}\r\n`);
    await t.cmd('NOOP\r\n').catch(() => undefined);
    t.close();
    return t.log;
  });
  assert.match(r.nginx.authRequests[0]!, /^Auth-Method: external\r\n/m);
  const p = posternRecord(r);
  assert.deepEqual(p.transcript, ['S: +OK POP3 ready\r\n', `C: AUTH EXTERNAL ${b64('test@example.com')}\r\n`,
    'S: -ERR invalid command\r\n', 'C: NOOP\r\n', 'S: +OK\r\n']);
  assert.deepEqual(p.authRequests, []);
});

test('POP3 command edge cases: USER state fallback, PASS first, APOP arity, bad SASL steps', async () => {
  const r = await pair.run({ logLevels: ['info'] }, async (ports) => {
    const t = await greet(ports.pop3!);
    for (const line of ['PASS secret', 'USER a b', 'USER test@example.com', 'NOOP', 'PASS secret', 'USER test@example.com',
      'CAPA', 'STAT', 'PASS secret', 'APOP onlyuser', 'AUTH PLAIN', '!!!', `AUTH PLAIN ${b64('no nul')}`,
      'AUTH CRAM-MD5 eA==', 'AUTH LOGIN', '*', 'AUTH DIGEST-MD5', 'STLS', 'user  spaced  name ']) {
      await t.send(`${line}\r\n`);
      await (line === 'CAPA' ? t.until(/^\.\r\n/m) : t.line());
    }
    await t.send('QUIT\r\n');
    await t.closed();
    return t.log;
  });
  const replies = r.nginx.transcript.filter((l) => l.startsWith('S:'));
  // `USER a b` is one argument; USER again in the USER state is invalid and returns to the start state.
  assert.deepEqual(replies.slice(1, 6), ['S: -ERR invalid command\r\n', 'S: +OK\r\n', 'S: -ERR invalid command\r\n', 'S: +OK\r\n', 'S: -ERR invalid command\r\n']);
  assert.equal(r.nginx.authRequests.length, 0);
  assertSame(r);
});

test('POP3 starttls only: CAPA without USER/SASL, USER refused, pipelined bytes after STLS dropped, login over TLS', async () => {
  const r = await pair.run({ logLevels: ['info'] }, async (ports) => {
    const t = await greet(ports.stls!);
    await t.send('CAPA\r\n');
    await t.until(/^\.\r\n/m);
    await t.cmd('USER test@example.com\r\n');
    await t.cmd('STLS\r\nNOOP\r\n');
    await t.startTls();
    await t.send('CAPA\r\n');
    await t.until(/^\.\r\n/m);
    await t.cmd('USER test@example.com\r\n');
    await t.cmd('PASS secret\r\n');
    await t.cmd('STAT\r\n');
    t.close();
    return t.log;
  });
  const n = r.nginx;
  assert.deepEqual(n.transcript.filter((l) => l.startsWith('S:')), ['S: +OK POP3 ready\r\n',
    'S: +OK Capability list follows\r\nTOP\r\nUIDL\r\nSTLS\r\n.\r\n', 'S: -ERR invalid command\r\n', 'S: +OK\r\n',
    'S: +OK Capability list follows\r\nTOP\r\nUSER\r\nUIDL\r\nSASL PLAIN LOGIN\r\n.\r\n', 'S: +OK\r\n', 'S: +OK logged in\r\n', 'S: +OK 1 24\r\n']);
  assert.match(n.authRequests[0]!, /\r\nAuth-SSL: on\r\nAuth-SSL-Protocol: TLSv1\.3\r\nAuth-SSL-Cipher: TLS_AES_256_GCM_SHA384\r\n\r\n$/);
  assert.deepEqual(n.backendReceived.pop3, ['USER test@example.com\r\nPASS secret\r\nSTAT\r\n']);
  assertSame(r);
});

test('POP3 APOP with Auth-Status WAIT: the repeated request has the same salt and attempt, and an empty Auth-Pass', async () => {
  const r = await pair.run({
    auth: (env) => firstThen(1, () => ({ headers: [['Auth-Status', 'WAIT'], ['Auth-Wait', '1']] }), okToBackend('pop3')(env)),
  }, async (ports) => {
    const t = await Talk.open(ports.pop3!);
    const salt = /<[^>]+>/.exec(await t.line())![0];
    await t.cmd(`APOP test@example.com ${createHash('md5').update(salt + 'secret').digest('hex')}\r\n`, 3000);
    await t.cmd('STAT\r\n');
    t.close();
    return t.log;
  });
  const [first, second] = r.nginx.authRequests;
  assert.match(first!, /^Auth-Method: apop\r\nAuth-User: test@example\.com\r\nAuth-Pass: <digest>\r\nAuth-Salt: <SALT@pop\.example\.test>\r\n/m);
  assert.equal(second, first!.replace('Auth-Pass: <digest>', 'Auth-Pass: '));
  assert.equal(r.nginx.transcript.at(-1), 'S: +OK 1 24\r\n');
  assertSame(r);
});

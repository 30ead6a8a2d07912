/**
 * SMTP end to end (nginx-tests mail_smtp.t, mail_smtp_xclient.t, mail_max_errors.t,
 * mail_proxy_protocol.t): each scenario runs against nginx 1.22.1 and Postern with the
 * same config, fake auth server and fake backends; records must be equal except where
 * latest nginx or Postern deliberately differ (named in the test).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { certs } from '../../support/certs.js';
import { makeMessage } from '../../support/fake-backend.js';
import { assertSame, digestLong, Pair, posternRecord, sleep } from './pair.js';
import { b64, cramDigest, firstThen, ok, okToBackend, refusal, Talk } from './talk.js';

const BIG = 5 * 1024 * 1024;

let pair: Pair;

before(async () => {
  const pki = certs();
  pair = await Pair.start({
    listen: ['smtp', 'xclient', 'psa', 'none', 'short', 'limits', 'authDown', 'slowAuth', 'passError', 'pp', 'tlsOnly', 'delay'],
    closed: ['backendDown', 'authDown'],
    backends: {
      smtp: { protocol: 'smtp' },
      rcpt550: { protocol: 'smtp', options: { rcptReply: '550 5.1.1 no such user' } },
      noGreet: { protocol: 'smtp', options: { neverGreet: true } },
      closing: { protocol: 'smtp', options: { closeDuringLogin: true } },
      rejecting: { protocol: 'smtp', options: { accept: false } },
      garbage: { protocol: 'smtp', options: { garbage: 'garbage\r\n' } },
      pp: { protocol: 'smtp', proxyProtocol: true },
    },
    auth: okToBackend('smtp'),
    config: ({ ports, authUrl, closed }) => `
      auth_http ${authUrl};
      server_name mx.example.test;
      smtp_auth plain login cram-md5;
      xclient off;
      server { listen 127.0.0.1:${ports.smtp}; protocol smtp; }
      server { listen 127.0.0.1:${ports.xclient}; protocol smtp; xclient on; }
      server { listen 127.0.0.1:${ports.psa}; protocol smtp; proxy_smtp_auth on; }
      server { listen 127.0.0.1:${ports.none}; protocol smtp; smtp_auth none plain; xclient on; }
      server { listen 127.0.0.1:${ports.short}; protocol smtp; timeout 1s; proxy_smtp_auth on; }
      server { listen 127.0.0.1:${ports.limits}; protocol smtp; max_errors 3; smtp_client_buffer 256; }
      server { listen 127.0.0.1:${ports.authDown}; protocol smtp; auth_http 127.0.0.1:${closed.authDown}/auth; }
      server { listen 127.0.0.1:${ports.slowAuth}; protocol smtp; auth_http_timeout 500ms; }
      server { listen 127.0.0.1:${ports.passError}; protocol smtp; proxy_pass_error_message on; proxy_smtp_auth on; }
      server { listen 127.0.0.1:${ports.pp} proxy_protocol; protocol smtp; set_real_ip_from 127.0.0.1;
               proxy_protocol on; xclient on; }
      server { listen 127.0.0.1:${ports.tlsOnly}; protocol smtp; starttls only; smtp_auth none plain;
               ssl_certificate ${pki.serverRsa.cert}; ssl_certificate_key ${pki.serverRsa.key}; }
      server { listen 127.0.0.1:${ports.delay}; protocol smtp; smtp_greeting_delay 500ms; }
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

/** Reads a (possibly multi-line) SMTP reply. */
function reply(t: Talk): Promise<string> {
  return t.until(/^\d{3} .*\r\n/m);
}

/** EHLO, AUTH PLAIN, a message, QUIT: the "served normally" check after a failure. */
async function normalClient(port: number): Promise<string[]> {
  const t = await greet(port);
  await t.send('EHLO client.example\r\n');
  await reply(t);
  await t.cmd(`AUTH PLAIN ${b64('\0test@example.com\0secret')}\r\n`);
  await t.cmd('MAIL FROM:<a@example.com>\r\n');
  await t.send('QUIT\r\n');
  await t.closed();
  return t.log;
}

/** Sends one message after authentication and quits. */
async function sendMessage(t: Talk): Promise<void> {
  await t.cmd('MAIL FROM:<a@example.com>\r\n');
  await t.cmd('RCPT TO:<b@example.com>\r\n');
  await t.cmd('DATA\r\n');
  await t.cmd('Subject: hi\r\n\r\n..dot line\r\n.\r\n');
  await t.send('QUIT\r\n');
  await t.closed();
}

const internal = 'closed after: "451 4.3.2 Internal server error\\r\\n"';

test('SMTP AUTH PLAIN, LOGIN and CRAM-MD5 with and without initial response, xclient off; message relayed', async () => {
  const plain = b64('\0test@example.com\0secret');
  const r = await pair.run({ logLevels: ['info'] }, async (ports) => {
    const logs: string[][] = [];
    const session = async (steps: (t: Talk) => Promise<void>): Promise<void> => {
      const t = await greet(ports.smtp!);
      await t.send('EHLO client.example\r\n');
      await reply(t);
      await steps(t);
      await sendMessage(t);
      logs.push(t.log);
    };
    await session(async (t) => { await t.cmd('AUTH PLAIN\r\n'); await t.cmd(`${plain}\r\n`); });
    await session(async (t) => { await t.cmd(`auth plain ${plain}\r\n`); });
    await session(async (t) => {
      await t.cmd('AUTH LOGIN\r\n');
      await t.cmd(`${b64('test@example.com')}\r\n`);
      await t.cmd(`${b64('secret')}\r\n`);
    });
    await session(async (t) => { await t.cmd(`AUTH LOGIN ${b64('test@example.com')}\r\n`); await t.cmd(`${b64('secret')}\r\n`); });
    await session(async (t) => {
      const challenge = Buffer.from((await t.cmd('AUTH CRAM-MD5\r\n')).slice(4), 'base64').toString('latin1');
      await t.cmd(`${b64(`test@example.com ${cramDigest('secret', challenge)}`)}\r\n`);
    });
    return logs;
  });
  const n = r.nginx;
  assert.equal(n.transcript[0]![0], 'S: 220 mx.example.test ESMTP ready\r\n');
  assert.equal(n.transcript[0]![2], 'S: 250-mx.example.test\r\n250 AUTH PLAIN LOGIN CRAM-MD5\r\n');
  assert.deepEqual(n.transcript[0]!.slice(3, 7), ['C: AUTH PLAIN\r\n', 'S: 334 \r\n', `C: ${plain}\r\n`, 'S: 235 2.0.0 OK\r\n']);
  assert.match(n.transcript[4]![4]!, /^S: 334 <base64 salt@mx\.example\.test>\r\n$/);
  assert.deepEqual(n.authRequests.map((q) => /Auth-Method: (\S+)/.exec(q)![1]), ['plain', 'plain', 'plain', 'plain', 'cram-md5']);
  assert.match(n.authRequests[0]!, /\r\nAuth-Protocol: smtp\r\nAuth-Login-Attempt: 1\r\nClient-IP: 127\.0\.0\.1\r\nClient-Host: \[UNAVAILABLE\]\r\n\r\n$/);
  const expected = 'EHLO mx.example.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nSubject: hi\r\n\r\n..dot line\r\n.\r\nQUIT\r\n';
  assert.deepEqual(n.backendReceived.smtp, Array(5).fill(expected));
  assertSame(r);
});

test('SMTP xclient on: XCLIENT with ADDR, LOGIN and NAME, then the client HELO/EHLO', async () => {
  const r = await pair.run({}, async (ports) => {
    const a = await greet(ports.xclient!);
    await a.send('EHLO client.example\r\n');
    await reply(a);
    await a.cmd(`AUTH PLAIN ${b64('\0test@example.com\0secret')}\r\n`);
    await sendMessage(a);
    const b = await greet(ports.xclient!);
    await b.cmd('HELO old.example\r\n');
    await b.cmd(`AUTH PLAIN ${b64('\0test@example.com\0secret')}\r\n`);
    await b.cmd('NOOP\r\n');
    b.close();
    const c = await greet(ports.xclient!);
    await c.cmd(`AUTH PLAIN ${b64('\0test@example.com\0secret')}\r\n`);
    await c.cmd('NOOP\r\n');
    c.close();
    return [a.log, b.log, c.log];
  });
  assert.deepEqual(r.nginx.backendReceived.smtp!.map((s) => s.split('\r\n').slice(0, 3).join('|')), [
    'EHLO mx.example.test|XCLIENT ADDR=127.0.0.1 LOGIN=test@example.com NAME=[UNAVAILABLE]|EHLO client.example',
    'EHLO mx.example.test|XCLIENT ADDR=127.0.0.1 LOGIN=test@example.com NAME=[UNAVAILABLE]|HELO old.example',
    'EHLO mx.example.test|XCLIENT ADDR=127.0.0.1 LOGIN=test@example.com NAME=[UNAVAILABLE]|NOOP',
  ]);
  assertSame(r);
});

test('SMTP xclient on with Auth-User: XCLIENT LOGIN carries the override; none without HELO', async () => {
  const r = await pair.run({
    auth: (env) => firstThen(1, ok(env.backends.smtp!, [['Auth-User', 'real@example.com']]), ok(env.backends.smtp!)),
  }, async (ports) => {
    const a = await greet(ports.xclient!);
    await a.cmd(`AUTH LOGIN ${b64('test@example.com')}\r\n`);
    await a.cmd(`${b64('secret')}\r\n`);
    await a.cmd('NOOP\r\n');
    a.close();
    const b = await greet(ports.none!);
    await b.cmd('MAIL FROM:<>\r\n');
    await b.cmd('RCPT TO:<b@example.com>\r\n');
    b.close();
    return [a.log, b.log];
  });
  assert.deepEqual(r.nginx.backendReceived.smtp, [
    'EHLO mx.example.test\r\nXCLIENT ADDR=127.0.0.1 LOGIN=real@example.com NAME=[UNAVAILABLE]\r\nNOOP\r\n',
    'EHLO mx.example.test\r\nXCLIENT ADDR=127.0.0.1 NAME=[UNAVAILABLE]\r\nMAIL FROM:<>\r\nRCPT TO:<b@example.com>\r\n',
  ]);
  assert.match(r.nginx.authRequests[1]!, /\r\nAuth-SMTP-Helo: \r\nAuth-SMTP-From: MAIL FROM:<>\r\nAuth-SMTP-To: RCPT TO:<b@example\.com>\r\n\r\n$/);
  assertSame(r);
});

test('SMTP proxy_smtp_auth on: AUTH PLAIN to the backend, with Auth-User/Auth-Pass overrides', async () => {
  const r = await pair.run({
    auth: (env) => firstThen(1, okToBackend('smtp')(env), okToBackend('smtp', [['Auth-User', 'real@example.com'], ['Auth-Pass', 'real pass']])(env)),
  }, async (ports) => {
    const logs: string[][] = [];
    for (let i = 0; i < 2; i++) {
      const t = await greet(ports.psa!);
      await t.cmd('HELO client.example\r\n');
      await t.cmd(`AUTH PLAIN ${b64('\0test@example.com\0secret')}\r\n`);
      await t.cmd('NOOP\r\n');
      t.close();
      logs.push(t.log);
    }
    return logs;
  });
  assert.deepEqual(r.nginx.backendReceived.smtp, [
    `HELO mx.example.test\r\nAUTH PLAIN ${b64('\0test@example.com\0secret')}\r\nNOOP\r\n`,
    `HELO mx.example.test\r\nAUTH PLAIN ${b64('\0real@example.com\0real pass')}\r\nNOOP\r\n`,
  ]);
  assertSame(r);
});

test('SMTP smtp_auth none: MAIL/RCPT start auth, the backend RCPT reply is relayed, pipelined RCPT follows', async () => {
  const r = await pair.run({
    auth: (env) => firstThen(1, ok(env.backends.smtp!), ok(env.backends.rcpt550!)),
  }, async (ports) => {
    const a = await greet(ports.none!);
    await a.send('EHLO client.example\r\n');
    await reply(a);
    await a.cmd('MAIL FROM:<a@example.com> SIZE=10\r\n');
    await a.cmd('RCPT TO:<b@example.com>\r\n');
    await a.cmd('DATA\r\n');
    await a.cmd('Subject: x\r\n\r\nbody\r\n.\r\n');
    await a.send('QUIT\r\n');
    await a.closed();
    const b = await greet(ports.none!);
    await b.cmd('MAIL FROM:<a@example.com>\r\n');
    await b.send('RCPT TO:<nobody@example.com>\r\nRCPT TO:<second@example.com>\r\n');
    await b.line();
    await b.line();
    b.close();
    return [a.log, b.log];
  });
  const n = r.nginx;
  assert.equal(n.transcript[0]![2], 'S: 250-mx.example.test\r\n250 AUTH PLAIN\r\n');
  assert.deepEqual(n.transcript[0]!.slice(3, 7), ['C: MAIL FROM:<a@example.com> SIZE=10\r\n', 'S: 250 2.0.0 OK\r\n',
    'C: RCPT TO:<b@example.com>\r\n', 'S: 250 2.1.5 Ok\r\n']);
  assert.match(n.authRequests[0]!, /^Auth-Method: none\r\nAuth-User: \r\nAuth-Pass: \r\nAuth-Protocol: smtp\r\nAuth-Login-Attempt: 1\r\nClient-IP: 127\.0\.0\.1\r\nClient-Host: \[UNAVAILABLE\]\r\nAuth-SMTP-Helo: client\.example\r\nAuth-SMTP-From: MAIL FROM:<a@example\.com> SIZE=10\r\nAuth-SMTP-To: RCPT TO:<b@example\.com>\r\n\r\n$/m);
  assert.equal(n.backendReceived.smtp![0], 'EHLO mx.example.test\r\nXCLIENT ADDR=127.0.0.1 NAME=[UNAVAILABLE]\r\nEHLO client.example\r\nMAIL FROM:<a@example.com> SIZE=10\r\nRCPT TO:<b@example.com>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n');
  assert.deepEqual(n.transcript[1]!.slice(3), ['C: RCPT TO:<nobody@example.com>\r\nRCPT TO:<second@example.com>\r\n',
    'S: 550 5.1.1 no such user\r\n', 'S: 550 5.1.1 no such user\r\n']);
  assert.equal(n.backendReceived.rcpt550![0], 'EHLO mx.example.test\r\nXCLIENT ADDR=127.0.0.1 NAME=[UNAVAILABLE]\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<nobody@example.com>\r\nRCPT TO:<second@example.com>\r\n');
  assertSame(r);
});

test('SMTP auth refusal: default 535 5.7.0, Auth-Error-Code, Auth-Wait then a successful retry', async () => {
  const r = await pair.run({
    logLevels: ['info'],
    auth: (env) => firstThen(1, refusal('Invalid login or password'),
      firstThen(1, refusal('Temporary problem', undefined, '451 4.3.0'), firstThen(1, refusal('Slow down', 1, '454 4.7.0'), ok(env.backends.smtp!)))),
  }, async (ports) => {
    const logs: string[][] = [];
    for (let i = 0; i < 2; i++) {
      const t = await greet(ports.smtp!);
      await t.send(`AUTH PLAIN ${b64('\0test@example.com\0wrong')}\r\n`);
      await t.closed();
      logs.push(t.log);
    }
    const t = await greet(ports.smtp!);
    const started = Date.now();
    await t.send(`AUTH PLAIN ${b64('\0test@example.com\0wrong')}\r\nNOOP\r\n`);
    await t.line(3000);
    t.note(Date.now() - started >= 900 ? 'waited >= 0.9 s' : 'no wait');
    await t.line();
    await t.cmd(`AUTH PLAIN ${b64('\0test@example.com\0secret')}\r\n`);
    t.close();
    logs.push(t.log);
    return logs;
  });
  const n = r.nginx;
  assert.equal(n.transcript[0]!.at(-1), 'closed after: "535 5.7.0 Invalid login or password\\r\\n"');
  assert.equal(n.transcript[1]!.at(-1), 'closed after: "451 4.3.0 Temporary problem\\r\\n"');
  assert.deepEqual(n.transcript[2]!.slice(2), ['S: 454 4.7.0 Slow down\r\n', 'note: waited >= 0.9 s', 'S: 250 2.0.0 OK\r\n',
    `C: AUTH PLAIN ${b64('\0test@example.com\0secret')}\r\n`, 'S: 235 2.0.0 OK\r\n']);
  assert.match(n.authRequests[3]!, /Auth-Login-Attempt: 2\r\n/);
  assertSame(r);
});

test('SMTP auth service failures: down, slow, garbage, bad Auth-Server; the next client is served', async () => {
  const r = await pair.run({
    logLevels: ['error'],
    auth: (env) => {
      let n = 0;
      return (req) => {
        const i = n++;
        if (i % 2 === 1) return ok(env.backends.smtp!)(req);
        if (i === 0) return { headers: [['Auth-Status', 'OK']], delayMs: 1000 };
        if (i === 2) return 'garbage without headers\r\n\r\n';
        return { headers: [['Auth-Status', 'OK'], ['Auth-Server', 'mx.example.test'], ['Auth-Port', String(env.backends.smtp)]] };
      };
    },
  }, async (ports) => {
    const logs: string[][] = [];
    const down = await greet(ports.authDown!);
    await down.send(`AUTH PLAIN ${b64('\0test@example.com\0secret')}\r\n`);
    await down.closed();
    logs.push(down.log);
    for (let i = 0; i < 3; i++) {
      const t = await greet(ports.slowAuth!);
      await t.send(`AUTH PLAIN ${b64('\0test@example.com\0secret')}\r\n`);
      await t.closed(3000);
      logs.push(t.log, await normalClient(ports.slowAuth!));
    }
    return logs;
  });
  const n = r.nginx;
  for (const i of [0, 1, 3, 5]) assert.equal(n.transcript[i]!.at(-1), internal, String(i));
  for (const i of [2, 4, 6]) assert.equal(n.transcript[i]![4], 'S: 235 2.0.0 OK\r\n');
  const log = n.errorLog.join('\n');
  assert.match(log, /<connect\|recv>\(\) failed \(111: Connection refused\) while in http auth state/);
  assert.match(log, /auth http server 127\.0\.0\.1:<auth-port> timed out/);
  assert.match(log, /sent invalid server address:"mx\.example\.test"/);
  assertSame(r);
});

test('SMTP backend failures: down, never greeting, closing during login, rejecting AUTH, garbage; the next client is served', async () => {
  const order = ['backendDown', 'noGreet', 'closing', 'rejecting', 'garbage'];
  const r = await pair.run({
    logLevels: ['info', 'error'],
    auth: (env) => {
      let n = 0;
      return (req) => {
        const i = n++;
        if (i % 2 === 1) return ok(env.backends.smtp!)(req);
        const name = order[i / 2]!;
        return ok(name === 'backendDown' ? env.closed.backendDown! : env.backends[name]!)(req);
      };
    },
  }, async (ports) => {
    const logs: string[][] = [];
    for (let i = 0; i < order.length; i++) {
      const t = await greet(ports.short!);
      await t.send(`AUTH PLAIN ${b64('\0test@example.com\0secret')}\r\n`);
      await t.closed(3000);
      logs.push(t.log, await normalClient(ports.short!));
    }
    return logs;
  });
  const n = r.nginx;
  for (let i = 0; i < order.length; i++) {
    assert.equal(n.transcript[2 * i]!.at(-1), internal, order[i]);
    assert.equal(n.transcript[2 * i + 1]![4], 'S: 235 2.0.0 OK\r\n', order[i]);
  }
  assert.deepEqual(n.backendReceived.rejecting, [`HELO mx.example.test\r\nAUTH PLAIN ${b64('\0test@example.com\0secret')}\r\n`]);
  assert.match(n.errorLog.join('\n'), /upstream sent invalid response: "535 5\.7\.8 Authentication failed"/);
  assertSame(r);
});

test('SMTP proxy_pass_error_message on: the backend refusal reaches the client', async () => {
  const r = await pair.run({
    logLevels: ['info', 'error'],
    auth: (env) => firstThen(1, ok(env.backends.rejecting!), ok(env.backends.smtp!)),
  }, async (ports) => {
    const t = await greet(ports.passError!);
    await t.send(`AUTH PLAIN ${b64('\0test@example.com\0secret')}\r\n`);
    await t.closed();
    return [t.log, await normalClient(ports.passError!)];
  });
  assert.equal(r.nginx.transcript[0]!.at(-1), 'closed after: "535 5.7.8 Authentication failed\\r\\n"');
  assertSame(r);
});

test('SMTP pipelining: commands in one packet, a command split across packets', async () => {
  const r = await pair.run({}, async (ports) => {
    const a = await greet(ports.smtp!);
    await a.send(`EHLO client.example\r\nNOOP\r\nAUTH PLAIN ${b64('\0test@example.com\0secret')}\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nQUIT\r\n`);
    await a.closed();
    const b = await greet(ports.smtp!);
    for (const part of ['EH', 'LO c.example\r', '\nAUTH PL', `AIN ${b64('\0test@example.com\0secret')}\r\n`, 'NOOP\r\n']) {
      await b.send(part);
      await sleep(50);
    }
    await reply(b);
    await b.line();
    await b.line();
    b.close();
    return [a.log, b.log];
  });
  assert.equal(r.nginx.transcript[0]!.at(-1), 'closed after: "250-mx.example.test\\r\\n250 AUTH PLAIN LOGIN CRAM-MD5\\r\\n250 2.0.0 OK\\r\\n235 2.0.0 OK\\r\\n250 2.1.0 Ok\\r\\n250 2.1.5 Ok\\r\\n221 2.0.0 Bye\\r\\n"');
  assert.equal(r.nginx.backendReceived.smtp![0], 'EHLO mx.example.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nQUIT\r\n');
  assertSame(r);
});

test('SMTP max_errors 3, too long command, semantic errors not counted', async () => {
  const r = await pair.run({ logLevels: ['info'] }, async (ports) => {
    const a = await greet(ports.limits!);
    await a.cmd('VRFY x\r\n');
    await a.cmd('HELO\r\n');
    await a.cmd('MAIL FROM:<a@example.com>\r\n');
    await a.cmd('DATA\r\n');
    await a.cmd('XCLIENT ADDR=1.2.3.4\r\n');
    await a.cmd('FOOBAR\r\n');
    await a.closed();
    const b = await greet(ports.limits!);
    await b.send(`HELO ${'h'.repeat(256 - 5)}`);
    await b.closed();
    return [a.log, b.log];
  });
  assert.deepEqual(r.nginx.transcript[0]!.filter((l) => l.startsWith('S') || l.startsWith('closed')), [
    'S: 220 mx.example.test ESMTP ready\r\n', 'S: 500 5.5.1 Invalid command\r\n', 'S: 501 5.5.4 Invalid argument\r\n',
    'S: 530 5.7.1 Authentication required\r\n', 'S: 500 5.5.1 Invalid command\r\n', 'S: 500 5.5.1 Invalid command\r\n',
    'S: 500 5.5.1 Invalid command\r\n', 'closed after: ""']);
  assert.equal(r.nginx.transcript[1]!.at(-1), 'closed after: "500 5.5.1 Invalid command\\r\\n"');
  assert.ok(r.nginx.errorLog.some((l) => l.includes('client was rejected: "MAIL FROM:<a@example.com>__" while in auth state')), r.nginx.errorLog.join('\n'));
  assertSame(r);
});

test('SMTP timeout 1s: a deadline from the greeting', async () => {
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

test('SMTP PROXY protocol listen with set_real_ip_from: Client-IP and XCLIENT ADDR; proxy_protocol to the backend', async () => {
  const r = await pair.run({ logLevels: ['info'], auth: okToBackend('pp') }, async (ports) => {
    const t = await Talk.open(ports.pp!);
    await t.send('PROXY TCP4 192.0.2.10 198.51.100.5 51000 25\r\n');
    await t.line();
    await t.cmd('HELO client.example\r\n');
    await t.cmd(`AUTH PLAIN ${b64('\0test@example.com\0secret')}\r\n`);
    await t.cmd('NOOP\r\n');
    t.close();
    return t.log;
  });
  const n = r.nginx;
  assert.match(n.authRequests[0]!, /\r\nClient-IP: 192\.0\.2\.10\r\nClient-Host: \[UNAVAILABLE\]\r\nProxy-Protocol-Addr: 192\.0\.2\.10\r\n/);
  assert.deepEqual(n.proxyHeaders.pp, ['PROXY TCP4 192.0.2.10 127.0.0.1 51000 <port:pp>\r\n']);
  assert.equal(n.backendReceived.pp![0], 'EHLO mx.example.test\r\nXCLIENT ADDR=192.0.2.10 LOGIN=test@example.com NAME=[UNAVAILABLE]\r\nHELO client.example\r\nNOOP\r\n');
  assertSame(r);
});

test('SMTP: a 5 MB message reaches the backend byte-exact', async () => {
  const message = makeMessage(BIG);
  const r = await pair.run({}, async (ports) => {
    const t = await greet(ports.smtp!);
    await t.cmd(`AUTH PLAIN ${b64('\0test@example.com\0secret')}\r\n`);
    await t.cmd('MAIL FROM:<a@example.com>\r\n');
    await t.cmd('RCPT TO:<b@example.com>\r\n');
    await t.cmd('DATA\r\n');
    await t.client.send(`${message}.\r\n`);
    await t.line(20000);
    await t.send('QUIT\r\n');
    await t.closed();
    return t.log;
  });
  assert.equal(r.nginx.transcript.at(-3), 'S: 250 2.0.0 Ok: queued\r\n');
  assert.deepEqual(r.nginx.backendReceived.smtp, [digestLong(`HELO mx.example.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n${message}.\r\nQUIT\r\n`)]);
  assertSame(r);
});

test('latest nginx (1.29.2): XCLIENT LOGIN= is xtext-encoded (1.22.1 wrote it raw)', async () => {
  const r = await pair.run({}, async (ports) => {
    const t = await greet(ports.xclient!);
    await t.cmd(`AUTH PLAIN ${b64('\0us er+=x\0secret')}\r\n`);
    t.close();
    return t.log;
  });
  assert.equal(r.nginx.backendReceived.smtp![0], 'EHLO mx.example.test\r\nXCLIENT ADDR=127.0.0.1 LOGIN=us er+=x NAME=[UNAVAILABLE]\r\n');
  const p = posternRecord(r);
  assert.deepEqual(p.transcript, r.nginx.transcript);
  assert.deepEqual(p.backendReceived.smtp, ['EHLO mx.example.test\r\nXCLIENT ADDR=127.0.0.1 LOGIN=us+20er+2B+3Dx NAME=[UNAVAILABLE]\r\n']);
});

test('latest nginx (1.29.1): with smtp_auth none, MAIL FROM forgets credentials of a refused AUTH', async () => {
  const r = await pair.run({
    auth: (env) => firstThen(1, refusal('Invalid login or password', 1), ok(env.backends.smtp!)),
  }, async (ports) => {
    const t = await greet(ports.none!);
    await t.cmd(`AUTH PLAIN ${b64('\0test@example.com\0wrong')}\r\n`, 3000);
    await t.cmd('MAIL FROM:<a@example.com>\r\n');
    await t.cmd('RCPT TO:<b@example.com>\r\n');
    t.close();
    return t.log;
  });
  // 1.22.1 sends the refused login and password again with Auth-Method none.
  assert.match(r.nginx.authRequests[1]!, /^Auth-Method: none\r\nAuth-User: test@example\.com\r\nAuth-Pass: wrong\r\n/m);
  assert.match(r.nginx.backendReceived.smtp![0]!, /XCLIENT ADDR=127\.0\.0\.1 LOGIN=test@example\.com NAME/);
  const p = posternRecord(r);
  assert.deepEqual(p.transcript, r.nginx.transcript);
  assert.match(p.authRequests[1]!, /^Auth-Method: none\r\nAuth-User: \r\nAuth-Pass: \r\n/m);
  assert.deepEqual(p.backendReceived.smtp, ['EHLO mx.example.test\r\nXCLIENT ADDR=127.0.0.1 NAME=[UNAVAILABLE]\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n']);
});

test('Postern is stricter: starttls only also refuses MAIL/RCPT before STARTTLS; after TLS they work', async () => {
  const r = await pair.run({}, async (ports) => {
    const t = await greet(ports.tlsOnly!);
    await t.send('EHLO client.example\r\n');
    await reply(t);
    await t.cmd('MAIL FROM:<a@example.com>\r\n');
    await t.cmd('RSET\r\n');
    await t.cmd('STARTTLS\r\n');
    await t.startTls();
    await t.send('EHLO client.example\r\n');
    await reply(t);
    await t.cmd('MAIL FROM:<a@example.com>\r\n');
    await t.cmd('RCPT TO:<b@example.com>\r\n');
    t.close();
    return t.log;
  });
  const n = r.nginx.transcript;
  assert.deepEqual(n.slice(2, 5), ['S: 250-mx.example.test\r\n250 STARTTLS\r\n', 'C: MAIL FROM:<a@example.com>\r\n', 'S: 250 2.0.0 OK\r\n']);
  assert.deepEqual(n.slice(-2), ['C: RCPT TO:<b@example.com>\r\n', 'S: 250 2.1.5 Ok\r\n']);
  const p = posternRecord(r);
  // RFC 3207's reply for commands refused until STARTTLS (Postern's src/mail/smtp/replies.ts).
  assert.deepEqual(p.transcript, [...n.slice(0, 4), 'S: 530 5.7.0 Must issue a STARTTLS command first\r\n', ...n.slice(5)]);
  assert.deepEqual(p.authRequests.length, 1);
  assert.match(p.authRequests[0]!, /^Auth-SSL: on\r$/m);
});

test('SMTP command edge cases: HELO/EHLO arity, MAIL/RCPT sequence, RSET, AUTH errors, STARTTLS not offered', async () => {
  const r = await pair.run({ logLevels: ['info'] }, async (ports) => {
    const t = await greet(ports.none!);
    for (const line of ['HELO', 'EHLO a b', 'RCPT TO:<b@example.com>', 'MAIL', 'MAIL FROM:<a@example.com>', 'MAIL FROM:<c@example.com>',
      'RSET', 'RCPT TO:<b@example.com>', 'AUTH', 'AUTH DIGEST-MD5', 'AUTH CRAM-MD5', `AUTH PLAIN ${b64('no nul')}`, 'AUTH PLAIN !!!',
      'AUTH LOGIN', '*', 'STARTTLS', 'HELP', 'EXPN x', 'NOOP', 'helo lower.example']) {
      await t.send(`${line}\r\n`);
      await reply(t);
    }
    await t.send('QUIT\r\n');
    await t.closed();
    return t.log;
  });
  assert.deepEqual(r.nginx.transcript.filter((l) => l.startsWith('S:')).slice(1, 9), [
    'S: 501 5.5.4 Invalid argument\r\n', 'S: 501 5.5.4 Invalid argument\r\n', 'S: 503 5.5.1 Bad sequence of commands\r\n',
    'S: 501 5.5.4 Invalid argument\r\n', 'S: 250 2.0.0 OK\r\n', 'S: 503 5.5.1 Bad sequence of commands\r\n', 'S: 250 2.0.0 OK\r\n',
    'S: 503 5.5.1 Bad sequence of commands\r\n']);
  assert.equal(r.nginx.authRequests.length, 0);
  assertSame(r);
});

test('SMTP smtp_greeting_delay: a client talking first gets 503 and is closed; a patient one is served', async () => {
  const r = await pair.run({ logLevels: ['info'] }, async (ports) => {
    const a = await Talk.open(ports.delay!);
    await a.send('EHLO eager.example\r\n');
    await a.closed(3000);
    const b = await Talk.open(ports.delay!);
    const started = Date.now();
    await b.line(3000);
    b.note(Date.now() - started >= 400 ? 'greeting after >= 0.4 s' : 'greeting too early');
    await b.cmd(`AUTH PLAIN ${b64('\0test@example.com\0secret')}\r\n`);
    b.close();
    return [a.log, b.log];
  });
  assert.deepEqual(r.nginx.transcript[0], ['C: EHLO eager.example\r\n', 'closed after: "503 5.5.0 Improper use of SMTP command pipelining\\r\\n"']);
  assert.deepEqual(r.nginx.transcript[1]!.slice(0, 2), ['S: 220 mx.example.test ESMTP ready\r\n', 'note: greeting after >= 0.4 s']);
  assert.ok(r.nginx.errorLog.some((l) => l.includes('client was rejected before greeting: "EHLO eager.example__"')), r.nginx.errorLog.join('\n'));
  assertSame(r);
});

test('SMTP log context keeps the login of a refused attempt (Auth-Wait) for later session lines', async () => {
  const r = await pair.run({ logLevels: ['info'], auth: () => refusal('No way', 1) }, async (ports) => {
    const t = await greet(ports.limits!);
    await t.cmd(`AUTH PLAIN ${b64('\0someone\0wrong')}\r\n`, 3000);
    await t.cmd('AUTH PLAIN !!!\r\n');
    await t.send('x'.repeat(256));
    await t.closed();
    return t.log;
  });
  const log = r.nginx.errorLog.join('\n');
  assert.match(log, /client sent invalid base64 encoding in AUTH PLAIN command while in auth state, client: 127\.0\.0\.1, server: 127\.0\.0\.1:<port:limits>, login: "someone"/);
  assertSame(r);
});

test('SMTP smtp_auth none refused with Auth-Wait: the client keeps HELO and MAIL and simply sends another RCPT', async () => {
  const r = await pair.run({
    logLevels: ['info'],
    auth: (env) => firstThen(1, refusal('Recipient not allowed', 1, '550 5.7.1'), ok(env.backends.smtp!)),
  }, async (ports) => {
    const t = await greet(ports.none!);
    await t.cmd('HELO client.example\r\n');
    await t.cmd('MAIL FROM:<a@example.com>\r\n');
    await t.cmd('RCPT TO:<bad@example.com>\r\n', 3000);
    await t.cmd('RCPT TO:<good@example.com>\r\n');
    await t.cmd('RSET\r\n');
    t.close();
    return t.log;
  });
  assert.deepEqual(r.nginx.transcript.filter((l) => l.startsWith('S:')).slice(3), ['S: 550 5.7.1 Recipient not allowed\r\n',
    'S: 250 2.1.5 Ok\r\n', 'S: 250 2.0.0 Ok\r\n']);
  assert.match(r.nginx.authRequests[1]!, /\r\nAuth-SMTP-Helo: client\.example\r\nAuth-SMTP-From: MAIL FROM:<a@example\.com>\r\nAuth-SMTP-To: RCPT TO:<good@example\.com>\r\n\r\n$/);
  assert.equal(r.nginx.backendReceived.smtp![0], 'EHLO mx.example.test\r\nXCLIENT ADDR=127.0.0.1 NAME=[UNAVAILABLE]\r\nHELO client.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<good@example.com>\r\nRSET\r\n');
  assertSame(r);
});

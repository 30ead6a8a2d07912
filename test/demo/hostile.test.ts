/**
 * Hostile input to the demo mail backend, straight to its ports: lines past
 * the limits, literals too large for the command, malformed syntax, binary
 * bytes, out-of-range numbers, oversize messages, endless errors. Each gets
 * the protocol's error reply or a clean close, and the backend keeps
 * serving the next client.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { MailClient } from "../support/client.js";
import { type DemoBackend, startDemoBackend } from "../../src/demo/backend.js";
import { MAX_MESSAGE_BYTES } from "../../src/demo/mailbox.js";

const ANY = { host: "127.0.0.1", port: 0 };
let demo: DemoBackend;

before(async () => {
  demo = await startDemoBackend({ imap: ANY, pop3: ANY, smtp: ANY, user: "demo@localhost" }, () => {});
});

after(async () => {
  await demo?.close();
});

async function imap(login = false): Promise<MailClient> {
  const c = await MailClient.connect({ port: demo.ports.imap });
  await c.read(/^\* OK .*\r\n/);
  if (login) {
    await c.send("L LOGIN demo@localhost x\r\n");
    await c.read(/^L OK .*\r\n/m);
  }
  return c;
}

/** The backend still greets a new client on every port. */
async function stillServing(): Promise<void> {
  for (const [port, greeting] of [
    [demo.ports.imap, /^\* OK /],
    [demo.ports.pop3, /^\+OK /],
    [demo.ports.smtp, /^220 /],
  ] as const) {
    const c = await MailClient.connect({ port });
    await c.read(greeting);
    c.close();
  }
}

test("IMAP: a line past 8 KiB gets * BYE and a close; the server goes on", async () => {
  const c = await imap();
  await c.send(Buffer.alloc(100_000, 0x61));
  assert.match(await c.expectClosed(), /^\* BYE line too long\r\n$/);
  await stillServing();
});

test("IMAP: a synchronising literal too large gets BAD and no continuation; one with LITERAL+ closes the connection", async () => {
  const c = await imap();
  await c.send("a LOGIN {99999999}\r\n");
  await c.read(/^a BAD literal too large\r\n/);
  await c.send("b NOOP\r\n");
  await c.read(/^b OK NOOP completed\r\n/);
  await c.send("c LOGIN {99999999+}\r\n");
  assert.match(await c.expectClosed(), /^\* BYE literal too large\r\n$/);
});

test("IMAP: literals that together pass the command limit are refused", async () => {
  const c = await imap();
  await c.send("a LOGIN {8000}\r\n");
  await c.read(/^\+ go ahead\r\n/);
  await c.send(`${"x".repeat(8000)} {8000}\r\n`);
  await c.read(/^\+ go ahead\r\n/);
  await c.send(`${"x".repeat(8000)} {8000}\r\n`);
  await c.read(/^a BAD literal too large\r\n/);
  await c.send("b NOOP\r\n");
  await c.read(/^b OK NOOP completed\r\n/);
});

test("IMAP: LOGIN in literals (as Postern sends it) and with LITERAL+ works; a wrong user is refused", async () => {
  const c = await imap();
  await c.send("a LOGIN {15}\r\n");
  await c.read(/^\+ go ahead\r\n/);
  await c.send("other@localhost {1+}\r\nx\r\n");
  await c.read(/^a NO \[AUTHENTICATIONFAILED\] this demo mailbox is only for demo@localhost\r\n/);
  await c.send("b LOGIN {14+}\r\ndemo@localhost {1+}\r\nx\r\n");
  await c.read(/^b OK \[CAPABILITY IMAP4rev1 LITERAL\+\] LOGIN completed\r\n/m);
});

test("IMAP: malformed syntax and binary bytes get BAD, commands out of state get BAD, a wrong user NO", async () => {
  const c = await imap();
  await c.send('a LOGIN "demo\r\n');
  await c.read(/^a BAD unterminated quoted string\r\n/);
  await c.send(Buffer.from([0x00, 0xff, 0x20, 0x01, 0x0d, 0x0a]));
  await c.read(/^\* BAD .*\r\n/);
  await c.send("b FETCH 1 BODY[]\r\n");
  await c.read(/^b BAD log in first\r\n/);
  await c.send("c LOGIN nobody@localhost x\r\n");
  await c.read(/^c NO \[AUTHENTICATIONFAILED\] .*\r\n/);
  await c.send('d LOGIN demo@localhost ""\r\n');
  await c.read(/^d NO .*\r\n/);
});

test("IMAP: numbers out of range, unsupported items and costly LIST patterns are answered at once", async () => {
  const c = await imap(true);
  await c.send("a FETCH 1 BODY[]\r\n");
  await c.read(/^a BAD no mailbox selected\r\n/);
  await c.send("b SELECT INBOX\r\n");
  await c.read(/^b OK \[READ-WRITE\] SELECT completed\r\n/m);
  await c.send("c FETCH 1:4294967295 FLAGS\r\n");
  await c.read(/^c BAD message number out of range\r\n/m);
  await c.send("d FETCH 4294967296 FLAGS\r\n");
  await c.read(/^d BAD bad sequence set\r\n/m);
  await c.send("e UID FETCH 1:4294967295 (FLAGS)\r\n");
  await c.read(/^e OK UID FETCH completed\r\n/m);
  await c.send("f FETCH 1 BODYSTRUCTURE\r\n");
  await c.read(/^f BAD fetch item BODYSTRUCTURE not supported by the demo server\r\n/m);
  await c.send(`g LIST "" "${"*a".repeat(100)}b"\r\n`);
  await c.read(/^g OK LIST completed\r\n/m, 2000);
  await c.send("h FETCH 1 (BODY.PEEK[]<0.4>)\r\n");
  assert.match(await c.read(/^h OK FETCH completed\r\n/m), /^\* 1 FETCH \(BODY\[\]<0> \{4\}\r\nFrom\)\r\n/m);
});

test("IMAP: a client that keeps sending errors is closed", async () => {
  const c = await imap();
  await c.send("x BOGUS\r\n".repeat(25));
  await c.expectClosed();
  await stillServing();
});

test("POP3: a long line closes, bad numbers get -ERR, DELE takes effect at QUIT only", async () => {
  const long = await MailClient.connect({ port: demo.ports.pop3 });
  await long.read(/^\+OK .*\r\n/);
  await long.send(`USER ${"a".repeat(2000)}\r\n`);
  assert.match(await long.expectClosed(), /^-ERR line too long\r\n$/);

  const before = demo.mailbox.messages.length;
  const uid = demo.mailbox.deliver(Buffer.from("Subject: to delete\r\n\r\nx\r\n"))!.uid;
  const c = await MailClient.connect({ port: demo.ports.pop3 });
  await c.read(/^\+OK .*\r\n/);
  await c.send("RETR 1\r\n");
  await c.read(/^-ERR log in first\r\n/);
  await c.send("USER demo@localhost\r\nPASS x\r\n");
  await c.read(/^\+OK [0-9]+ messages\r\n/m);
  for (const bad of ["RETR 0", "RETR 99999999999", "TOP 1 x", "TOP 1", "LIST 1000", "DELE -1"]) {
    await c.send(`${bad}\r\n`);
    await c.read(/^-ERR .*\r\n/);
  }
  const n = before + 1;
  await c.send(`DELE ${n}\r\nRETR ${n}\r\n`);
  await c.read(/^\+OK marked .*\r\n-ERR no such message\r\n/);
  assert.ok(
    demo.mailbox.messages.some((m) => m.uid === uid),
    "deleted before QUIT",
  );
  await c.send("QUIT\r\n");
  await c.expectClosed();
  assert.ok(!demo.mailbox.messages.some((m) => m.uid === uid), "not deleted at QUIT");
});

test("SMTP: order, recipients and sizes are checked; an oversize message is refused and the session goes on", async () => {
  const c = await MailClient.connect({ port: demo.ports.smtp });
  await c.read(/^220 .*\r\n/);
  await c.send("MAIL FROM:<a@b>\r\n");
  await c.read(/^503 .*\r\n/);
  await c.send("EHLO client\r\n");
  await c.read(/^250 PIPELINING\r\n/m);
  await c.send("RCPT TO:<demo@localhost>\r\n");
  await c.read(/^503 5\.5\.1 MAIL first\r\n/);
  await c.send(`MAIL FROM:<a@b> SIZE=${MAX_MESSAGE_BYTES + 1}\r\n`);
  await c.read(/^552 .*\r\n/);
  await c.send("MAIL FROM:<a@b>\r\nRCPT TO:<someone@example.com>\r\nRCPT TO:<DEMO@localhost>\r\nDATA\r\n");
  await c.read(/^250 2\.1\.0 OK\r\n550 5\.1\.1 .*\r\n250 2\.1\.5 OK\r\n354 .*\r\n/);
  const count = demo.mailbox.messages.length;
  const line = `${"y".repeat(998)}\r\n`;
  await c.send(line.repeat(Math.ceil(MAX_MESSAGE_BYTES / 1000) + 10));
  await c.send(".\r\nNOOP\r\n");
  await c.read(/^552 5\.3\.4 .*\r\n250 2\.0\.0 OK\r\n/);
  assert.equal(demo.mailbox.messages.length, count);
  // dot-stuffing is undone
  await c.send("MAIL FROM:<a@b>\r\nRCPT TO:<demo@localhost>\r\nDATA\r\n");
  await c.read(/^354 .*\r\n/m);
  await c.send("Subject: dots\r\n\r\n..leading dot\r\n.\r\n");
  await c.read(/^250 2\.0\.0 delivered to the demo mailbox as UID [0-9]+\r\n/);
  assert.match(demo.mailbox.messages[demo.mailbox.messages.length - 1]!.data.toString("latin1"), /\r\n\.leading dot\r\n$/);
  await c.send("MAIL FROM:<a@b>\r\nRCPT TO:<demo@localhost>\r\nDATA\r\n");
  await c.read(/^354 .*\r\n/m);
  await c.send(`${"z".repeat(20_000)}\r\n`);
  assert.match(await c.expectClosed(), /^500 5\.5\.2 line too long\r\n$/);
  const long = await MailClient.connect({ port: demo.ports.smtp });
  await long.read(/^220 .*\r\n/);
  await long.send(`HELO ${"h".repeat(2000)}\r\n`);
  assert.match(await long.expectClosed(), /^500 5\.5\.2 line too long\r\n$/);
  await stillServing();
});

/** Proves smtp-backend.ts: nodemailer delivers to it directly, and nginx's XCLIENT login is accepted. */
import { test } from "node:test";
import assert from "node:assert/strict";
import nodemailer from "nodemailer";
import { MailClient } from "../support/client.js";
import { startFakeAuth, okTo } from "../support/fake-auth.js";
import { startNginx } from "../support/nginx.js";
import { freePorts } from "../support/ports.js";
import { startSmtpBackend } from "../support/smtp-backend.js";

test("nodemailer sends a message straight to the smtp-server backend, which records it", async () => {
  const backend = await startSmtpBackend({ users: { "test@example.com": "secret" }, requireAuth: true });
  const transport = nodemailer.createTransport({
    host: "127.0.0.1",
    port: backend.port,
    secure: false,
    ignoreTLS: true,
    name: "client.test",
    auth: { user: "test@example.com", pass: "secret" },
  });
  try {
    const info = await transport.sendMail({
      from: "a@example.com",
      to: ["b@example.com", "c@example.com"],
      subject: "hello",
      text: "body line\n.dot line\n",
    });
    assert.deepEqual(info.accepted, ["b@example.com", "c@example.com"]);
    assert.equal(backend.messages.length, 1);
    const m = backend.messages[0]!;
    assert.equal(m.mailFrom, "a@example.com");
    assert.deepEqual(m.rcptTo, ["b@example.com", "c@example.com"]);
    assert.equal(m.user, "test@example.com");
    assert.equal(m.helo, "client.test");
    assert.match(m.data.toString("latin1"), /^Subject: hello\r\n/m);
    assert.match(m.data.toString("latin1"), /\r\n\r\nbody line\r\n\.dot line\r\n$/);
    assert.deepEqual(backend.auths, [{ method: "PLAIN", username: "test@example.com", password: "secret", accepted: true }]);
  } finally {
    transport.close();
    await backend.close();
  }
});

test("nginx with xclient on logs in to the smtp-server backend via XCLIENT", async () => {
  const backend = await startSmtpBackend();
  const auth = await startFakeAuth(okTo(backend.port));
  const [port] = await freePorts(1);
  const nginx = await startNginx(`
    server { listen 127.0.0.1:${port}; protocol smtp; auth_http ${auth.url}; server_name mx.example.test;
             xclient on; smtp_auth plain; }
  `);
  const c = await MailClient.connect({ port: port! });
  try {
    assert.equal(await c.readLine(), "220 mx.example.test ESMTP ready\r\n");
    await c.send("EHLO client.test\r\n");
    await c.read(/^250 .*\r\n/m);
    await c.send(`AUTH PLAIN ${Buffer.from("\0user@example.com\0pw").toString("base64")}\r\n`);
    assert.equal(await c.readLine(), "235 2.0.0 OK\r\n");
    await c.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
    assert.match(await c.read(/^354 .*\r\n/m), /^250 .*\r\n250 .*\r\n354 /);
    await c.send("Subject: via nginx\r\n\r\nhi\r\n.\r\n");
    assert.match(await c.readLine(), /^250 /);
    await c.send("QUIT\r\n");
    assert.match(await c.readLine(), /^221 /);
    await c.expectClosed();

    const m = backend.messages[0]!;
    assert.equal(m.user, "user@example.com");
    // nginx sends NAME=[UNAVAILABLE]; smtp-server, like Postfix, stores that as an empty name.
    assert.deepEqual({ ADDR: m.xclient.ADDR, LOGIN: m.xclient.LOGIN, NAME: m.xclient.NAME }, { ADDR: "127.0.0.1", LOGIN: "user@example.com", NAME: "" });
    assert.equal(m.helo, "client.test");
    assert.equal(m.data.toString("latin1"), "Subject: via nginx\r\n\r\nhi\r\n");
    assert.deepEqual(
      backend.auths.map((a) => a.method),
      ["XCLIENT"],
    );
  } finally {
    c.close();
    await nginx.stop();
    await auth.close();
    await backend.close();
  }
});

/**
 * Implicit TLS and STARTTLS/STLS on IMAP, POP3 and SMTP, the STARTTLS
 * command-injection test, and ALPN: nginx 1.22.1 and Postern with the same
 * config and the same real clients (openssl s_client, curl, Python).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { MailClient } from "../../support/client.js";
import { curl, python, sClient, sView, startPair, tempDir, withAuth, type Pair, type SClientMode, type SClientStep, type Side } from "./e2e.js";

const LISTEN = ["imaps", "imap", "imapOnly", "pop3s", "pop3", "pop3Only", "smtps", "smtp", "smtpOnly"];

describe("TLS on the three protocols, nginx vs Postern", () => {
  let pair: Pair;
  const tmp = tempDir();
  before(async () => {
    pair = await startPair(
      LISTEN,
      ({ ports, authUrl, pki }) => `
      auth_http ${authUrl};
      ssl_certificate ${pki.serverRsa.cert};
      ssl_certificate_key ${pki.serverRsa.key};
      # nginx 1.22.1 also enables TLSv1 TLSv1.1 by default; Postern follows the latest default.
      ssl_protocols TLSv1.2 TLSv1.3;
      smtp_auth login plain;
      server { listen 127.0.0.1:${ports.imaps} ssl; protocol imap; }
      server { listen 127.0.0.1:${ports.imap}; protocol imap; starttls on; }
      server { listen 127.0.0.1:${ports.imapOnly}; protocol imap; starttls only; }
      server { listen 127.0.0.1:${ports.pop3s} ssl; protocol pop3; }
      server { listen 127.0.0.1:${ports.pop3}; protocol pop3; starttls on; }
      server { listen 127.0.0.1:${ports.pop3Only}; protocol pop3; starttls only; }
      server { listen 127.0.0.1:${ports.smtps} ssl; protocol smtp; }
      server { listen 127.0.0.1:${ports.smtp}; protocol smtp; starttls on; }
      server { listen 127.0.0.1:${ports.smtpOnly}; protocol smtp; starttls only; }
    `,
    );
  });
  after(async () => {
    await pair?.stop();
    tmp.remove();
  });

  /** Runs s_client on both sides and returns the comparable views plus the auth requests. */
  async function sBoth(port: string, args: string[], steps: SClientStep[], mode: SClientMode = "brief"): Promise<{ nginx: unknown; subject: unknown }> {
    return pair.both(async (side) => {
      const { result, auth } = await withAuth(side, () => sClient(side.ports[port]!, args, steps, { mode }));
      const view = sView(result);
      return { view, auth: auth.map((a) => a.headers) };
    });
  }

  const dialogues: Array<[string, string, string[], SClientStep[]]> = [
    ["IMAP", "imaps", [], [/^\* OK .*\r\n/, "a1 CAPABILITY", /a1 .*\r\n/, "a2 LOGIN user pass", /a2 .*\r\n/, "a3 LOGOUT", /a3 .*\r\n/]],
    ["POP3", "pop3s", [], [/^\+OK .*\r\n/, "CAPA", /\r\n\.\r\n/, "USER user", /\r\n/, "PASS pass", /\r\n/, "QUIT", /\r\n/]],
    ["SMTP", "smtps", [], [/^220 .*\r\n/, "EHLO client.example", /^250 .*\r\n/m, "AUTH PLAIN AHVzZXIAcGFzcw==", /\r\n/, "QUIT", /\r\n/]],
  ];
  dialogues.push(
    ["IMAP (LOGOUT before login)", "imaps", [], [/^\* OK .*\r\n/, "a1 LOGOUT", /a1 .*\r\n/]],
    ["POP3 (QUIT before login)", "pop3s", [], [/^\+OK .*\r\n/, "QUIT", /\r\n/]],
    ["SMTP (QUIT before login)", "smtps", [], [/^220 .*\r\n/, "QUIT", /\r\n/]],
  );
  for (const [name, port, args, steps] of dialogues) {
    it(`${name} implicit TLS: the greeting comes inside TLS after the handshake (s_client)`, async () => {
      const r = await sBoth(port, args, steps);
      assert.deepEqual(r.subject, r.nginx);
      const view = (r.nginx as { view: { appData: string; session?: { protocol: string } } }).view;
      assert.equal(view.session?.protocol, "TLSv1.3");
      assert.match(view.appData, name.startsWith("IMAP") ? /^\* OK/ : name.startsWith("POP3") ? /^\+OK/ : /^220 /);
    });
  }

  const starttls: Array<[string, string, string, SClientStep[]]> = [
    ["IMAP", "imap", "imap", ["a1 CAPABILITY", /a1 .*\r\n/, "a2 LOGIN user pass", /a2 .*\r\n/, "a3 LOGOUT", /a3 .*\r\n/]],
    ["IMAP (starttls only)", "imapOnly", "imap", ["a1 CAPABILITY", /a1 .*\r\n/, "a2 LOGIN user pass", /a2 .*\r\n/, "a3 LOGOUT", /a3 .*\r\n/]],
    ["POP3", "pop3", "pop3", ["CAPA", /\r\n\.\r\n/, "USER user", /\r\n/, "PASS pass", /\r\n/, "QUIT", /\r\n/]],
    ["SMTP", "smtp", "smtp", ["EHLO client.example", /^250 .*\r\n/m, "AUTH PLAIN AHVzZXIAcGFzcw==", /\r\n/, "QUIT", /\r\n/]],
    ["SMTP (starttls only)", "smtpOnly", "smtp", ["EHLO client.example", /^250 .*\r\n/m, "AUTH PLAIN AHVzZXIAcGFzcw==", /\r\n/, "QUIT", /\r\n/]],
  ];
  for (const [name, port, proto, steps] of starttls) {
    it(`${name} STARTTLS with s_client -starttls ${proto}: capabilities and login inside TLS`, async () => {
      const r = await sBoth(port, ["-starttls", proto], steps);
      assert.deepEqual(r.subject, r.nginx);
      const view = (r.nginx as { view: { session?: unknown } }).view;
      assert.ok(view.session, "the STARTTLS handshake completed");
    });
  }

  for (const protocol of ["imap", "pop3", "smtp"] as const) {
    for (const [server, mode, loginBeforeTls] of [
      [`${protocol}s`, "ssl", false],
      [protocol, "starttls", false],
      [protocol, "plain", false],
      [`${protocol}Only`, "starttls", true],
      [`${protocol}Only`, "plain", false],
    ] as const) {
      it(`Python ${protocol} ${mode} on ${server}: capability lists before/after TLS and refusals as nginx`, async () => {
        const r = await pair.both(async (side) => {
          const { result, auth } = await withAuth(side, () =>
            python({
              protocol,
              port: side.ports[server],
              mode,
              user: "user",
              password: "pass",
              login_before_tls: loginBeforeTls,
            }),
          );
          return { client: result, auth: auth.map((a) => a.headers) };
        });
        assert.deepEqual(r.subject, r.nginx);
      });
    }
  }

  it("the capability lists name STARTTLS/STLS/LOGINDISABLED exactly as nginx (Python, raw replies)", async () => {
    // A direct look at what the lists must contain, independent of the comparison above.
    const r = await pair.both(async (side) => ({
      imap: await python({ protocol: "imap", port: side.ports.imapOnly, mode: "starttls", user: "user", password: "pass" }),
      pop3: await python({ protocol: "pop3", port: side.ports.pop3, mode: "starttls", user: "user", password: "pass" }),
      smtp: await python({ protocol: "smtp", port: side.ports.smtp, mode: "starttls", user: "user", password: "pass" }),
    }));
    assert.deepEqual(r.subject, r.nginx);
    const imap = JSON.stringify(r.nginx.imap);
    assert.match(imap, /STARTTLS LOGINDISABLED/);
    assert.match(JSON.stringify(r.nginx.pop3), /STLS/);
    assert.match(JSON.stringify(r.nginx.smtp), /STARTTLS/);
  });

  const curlCases: Array<[string, (side: Side, msg: string) => string[]]> = [
    ["imaps://", (s) => [`imaps://127.0.0.1:${s.ports.imaps}/`, "-u", "user:pass"]],
    ["imap:// --ssl-reqd", (s) => ["--ssl-reqd", `imap://127.0.0.1:${s.ports.imap}/`, "-u", "user:pass"]],
    ["imap:// --ssl-reqd (starttls only)", (s) => ["--ssl-reqd", `imap://127.0.0.1:${s.ports.imapOnly}/`, "-u", "user:pass"]],
    ["imap:// without TLS (starttls only)", (s) => [`imap://127.0.0.1:${s.ports.imapOnly}/`, "-u", "user:pass"]],
    ["pop3s://", (s) => [`pop3s://127.0.0.1:${s.ports.pop3s}/`, "-u", "user:pass"]],
    ["pop3:// --ssl-reqd", (s) => ["--ssl-reqd", `pop3://127.0.0.1:${s.ports.pop3}/`, "-u", "user:pass"]],
    ["pop3:// without TLS (starttls only)", (s) => [`pop3://127.0.0.1:${s.ports.pop3Only}/`, "-u", "user:pass"]],
    [
      "smtps://",
      (s, msg) => [`smtps://127.0.0.1:${s.ports.smtps}/`, "-u", "user:pass", "--mail-from", "a@example.com", "--mail-rcpt", "b@example.com", "-T", msg],
    ],
    [
      "smtp:// --ssl-reqd",
      (s, msg) => [
        "--ssl-reqd",
        `smtp://127.0.0.1:${s.ports.smtp}/`,
        "-u",
        "user:pass",
        "--mail-from",
        "a@example.com",
        "--mail-rcpt",
        "b@example.com",
        "-T",
        msg,
      ],
    ],
    [
      "smtp:// without TLS (starttls only)",
      (s, msg) => [`smtp://127.0.0.1:${s.ports.smtpOnly}/`, "-u", "user:pass", "--mail-from", "a@example.com", "--mail-rcpt", "b@example.com", "-T", msg],
    ],
  ];
  for (const [name, args] of curlCases) {
    it(`curl ${name}: same dialogue, TLS parameters and auth requests`, async () => {
      const msg = tmp.file("message.eml");
      writeFileSync(msg, "Subject: test\r\n\r\nhello\r\n");
      const r = await pair.both(async (side) => {
        const { result, auth } = await withAuth(side, () => curl(args(side, msg)));
        return { curl: result, auth: auth.map((a) => a.headers) };
      });
      assert.deepEqual(r.subject, r.nginx);
    });
  }

  /**
   * Plaintext pipelined after STARTTLS must never run after the handshake: sent in
   * the same packet as STARTTLS, or in a packet of its own before the ClientHello.
   */
  const injections: Array<[string, string, string, RegExp, string, RegExp]> = [
    ["IMAP", "imap", "a1 STARTTLS\r\n", /^a1 .*\r\n/m, "a2 LOGIN inject pass\r\n", /^a3 .*\r\n/m],
    ["POP3", "pop3", "STLS\r\n", /^\+OK.*\r\n/m, "USER inject\r\nPASS pass\r\n", /\r\n\.\r\n/],
    ["SMTP", "smtp", "EHLO client.example\r\nSTARTTLS\r\n", /^220 .*\r\n/m, "AUTH PLAIN AGluamVjdABwYXNz\r\n", /^250 .*\r\n/m],
  ];
  const afterTls: Record<string, string> = { IMAP: "a3 CAPABILITY\r\n", POP3: "CAPA\r\n", SMTP: "EHLO client.example\r\n" };
  const greeting: Record<string, RegExp> = { IMAP: /^\* OK .*\r\n/, POP3: /^\+OK .*\r\n/, SMTP: /^220 .*\r\n/ };
  // The first thing inside TLS must be the reply to the client's own command after the handshake.
  const firstInTls: Record<string, RegExp> = { IMAP: /^\* CAPABILITY /, POP3: /^\+OK Capability list follows\r\n/, SMTP: /^250-/ };
  type Timing = "same packet" | "after the reply" | "before the reply";

  /** STARTTLS with `injected` plaintext behind it, sent as `timing` says; what the client saw. */
  async function inject(side: Side, name: string, timing: Timing): Promise<{ plain: string; handshake: string; tls: string }> {
    const [, port, command, reply, injected, finalReply] = injections.find(([n]) => n === name)!;
    const c = await MailClient.connect({ port: side.ports[port]! });
    try {
      await c.read(greeting[name]!);
      let plain: string;
      if (timing === "same packet") {
        await c.send(command + injected);
        plain = await c.read(reply);
      } else if (timing === "after the reply") {
        // The bytes reach the server while it waits for the ClientHello.
        await c.send(command);
        plain = await c.read(reply);
        await c.send(injected);
      } else {
        // A packet of its own, racing the server's reply: either outcome is allowed, execution is not.
        await c.send(command);
        await c.send(injected);
        plain = await c.read(reply);
      }
      try {
        await c.startTls({ servername: "localhost" });
      } catch {
        return { plain, handshake: "failed", tls: await c.readAll(200) };
      }
      await c.send(afterTls[name]!);
      let tls: string;
      try {
        tls = await c.read(finalReply, 3000);
      } catch {
        tls = await c.readAll(100);
      }
      return { plain, handshake: "ok", tls: tls + (await c.readAll(300)) };
    } finally {
      c.close();
    }
  }

  for (const [name] of injections) {
    for (const timing of ["same packet", "after the reply"] as const) {
      it(`${name} STARTTLS injection, plaintext in the ${timing === "same packet" ? "same packet" : "following packet (after the reply, before the ClientHello)"}: never executed`, async () => {
        const r = await pair.both(async (side) => {
          const { result, auth } = await withAuth(side, () => inject(side, name, timing), 200);
          return { client: result, auth: auth.map((a) => a.headers) };
        });
        assert.deepEqual(r.subject, r.nginx);
        for (const side of [r.nginx, r.subject]) {
          // Nothing the injected commands would produce: no auth request, no reply to them inside TLS.
          assert.deepEqual(side.auth, []);
          if (side.client.handshake === "ok") assert.match(side.client.tls, firstInTls[name]!);
        }
      });
    }
    it(`${name} STARTTLS injection, plaintext in a following packet racing the reply: never executed (3 tries each)`, async () => {
      for (let i = 0; i < 3; i++) {
        const r = await pair.both(async (side) => {
          const { result, auth } = await withAuth(side, () => inject(side, name, "before the reply"), 200);
          return { client: result, auth: auth.map((a) => a.headers) };
        });
        for (const side of [r.nginx, r.subject]) {
          assert.deepEqual(side.auth, []);
          if (side.client.handshake === "ok") assert.match(side.client.tls, firstInTls[name]!);
        }
      }
    });
  }

  for (const [port, alpn] of [
    ["imaps", "imap"],
    ["pop3s", "pop3"],
    ["smtps", "smtp"],
  ] as const) {
    it(`ALPN on ${port}: -alpn ${alpn} accepted, -alpn http/1.1 refused`, async () => {
      const g = port === "imaps" ? /\* OK .*\r\n/ : port === "pop3s" ? /\+OK .*\r\n/ : /220 .*\r\n/;
      const r = await sBoth(port, ["-alpn", alpn], [g], "full");
      assert.deepEqual(r.subject, r.nginx);
      assert.equal((r.nginx as { view: { alpn?: string } }).view.alpn, alpn);
      const bad = await sBoth(port, ["-alpn", "http/1.1"], [g], "full");
      assert.deepEqual(bad.subject, bad.nginx);
      const view = (bad.nginx as { view: { session?: unknown; errors: string[] } }).view;
      assert.equal(view.session, undefined);
      assert.match(view.errors.join("\n"), /SSL alert number 120/);
    });
  }
});

/**
 * Full logins through TLS: to the fake backends with the session relayed
 * (what the client sees and what the backend receives), and to a real Dovecot
 * with curl imaps:// and pop3s://: nginx 1.22.1 vs Postern.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { okTo } from "../../support/fake-auth.js";
import { startDovecot, type Dovecot } from "../../support/dovecot.js";
import type { FakeBackend } from "../../support/fake-backend.js";
import { freePorts } from "../../support/ports.js";
import { curl, sClient, sView, startPair, withAuth, type Pair, type Role, type SClientStep, type Side } from "./e2e.js";

const CONFIG = ({ ports, authUrl, pki }: { ports: Record<string, number>; authUrl: string; pki: { serverRsa: { cert: string; key: string } } }): string => `
  auth_http ${authUrl};
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_certificate ${pki.serverRsa.cert};
  ssl_certificate_key ${pki.serverRsa.key};
  smtp_auth login plain;
  server { listen 127.0.0.1:${ports.imaps} ssl; protocol imap; }
  server { listen 127.0.0.1:${ports.imap}; protocol imap; starttls only; }
  server { listen 127.0.0.1:${ports.pop3s} ssl; protocol pop3; }
  server { listen 127.0.0.1:${ports.pop3}; protocol pop3; starttls on; }
  server { listen 127.0.0.1:${ports.smtps} ssl; protocol smtp; }
  server { listen 127.0.0.1:${ports.smtp}; protocol smtp; starttls only; }
`;
/**
 * What Dovecot's replies carry of its own, not the proxy's doing: its timings, e.g.
 * `(0.001 + 0.000 secs)`, and the mailbox's UIDVALIDITY, which is the second each side's
 * Dovecot created INBOX in (the two differ when the two deliveries straddle a second).
 */
function dovecotVolatile(line: string): string {
  return line.replace(/\(\d+\.\d+(?: \+ \d+\.\d+)* secs\)/, "(<timing> secs)").replace(/\[UIDVALIDITY \d+\]/, "[UIDVALIDITY <n>]");
}

const LISTEN = ["imaps", "imap", "pop3s", "pop3", "smtps", "smtp"];

describe("full logins through TLS, nginx vs Postern", () => {
  describe("to fake backends, relayed", () => {
    let pair: Pair;
    before(async () => {
      pair = await startPair(LISTEN, CONFIG);
    });
    after(async () => {
      await pair?.stop();
    });

    const backendOf = (side: Side, port: string): FakeBackend => (port.startsWith("imap") ? side.imap : port.startsWith("pop3") ? side.pop3 : side.smtp);

    const cases: Array<[string, string, string[], SClientStep[]]> = [
      [
        "IMAP implicit TLS",
        "imaps",
        [],
        [/^\* OK .*\r\n/, "a1 LOGIN user secret", /a1 .*\r\n/, "a2 SELECT INBOX", /a2 .*\r\n/, "a3 FETCH 1 BODY[]", /a3 .*\r\n/, "a4 LOGOUT", /a4 .*\r\n/],
      ],
      [
        "IMAP STARTTLS (starttls only)",
        "imap",
        ["-starttls", "imap"],
        ["a1 LOGIN user secret", /a1 .*\r\n/, "a2 SELECT INBOX", /a2 .*\r\n/, "a3 FETCH 1 BODY[]", /a3 .*\r\n/, "a4 LOGOUT", /a4 .*\r\n/],
      ],
      ["POP3 implicit TLS", "pop3s", [], [/^\+OK .*\r\n/, "USER user", /\r\n/, "PASS secret", /\r\n/, "RETR 1", /\r\n\.\r\n/, "QUIT", /\r\n/]],
      ["POP3 STLS", "pop3", ["-starttls", "pop3"], ["USER user", /\r\n/, "PASS secret", /\r\n/, "RETR 1", /\r\n\.\r\n/, "QUIT", /\r\n/]],
      [
        "SMTP implicit TLS",
        "smtps",
        [],
        [
          /^220 .*\r\n/,
          "EHLO client.example",
          /^250 .*\r\n/m,
          "AUTH PLAIN AHVzZXIAc2VjcmV0",
          /\r\n/,
          "MAIL FROM:<a@example.com>",
          /\r\n/,
          "RCPT TO:<b@example.com>",
          /\r\n/,
          "DATA",
          /\r\n/,
          "Subject: hi",
          "",
          "body",
          ".",
          /\r\n/,
          "QUIT",
          /\r\n/,
        ],
      ],
      [
        "SMTP STARTTLS (starttls only)",
        "smtp",
        ["-starttls", "smtp"],
        [
          "EHLO client.example",
          /^250 .*\r\n/m,
          "AUTH PLAIN AHVzZXIAc2VjcmV0",
          /\r\n/,
          "MAIL FROM:<a@example.com>",
          /\r\n/,
          "RCPT TO:<b@example.com>",
          /\r\n/,
          "DATA",
          /\r\n/,
          "Subject: hi",
          "",
          "body",
          ".",
          /\r\n/,
          "QUIT",
          /\r\n/,
        ],
      ],
    ];
    for (const [name, port, args, steps] of cases) {
      it(`${name}: login, relayed commands, and the bytes the backend received`, async () => {
        const r = await pair.both(async (side) => {
          const backend = backendOf(side, port);
          const before = backend.connections.length;
          const { result, auth } = await withAuth(side, () => sClient(side.ports[port]!, args, steps), 100);
          const conns = backend.connections.slice(before);
          await Promise.all(conns.map((c) => c.closed));
          return { view: sView(result), auth: auth.map((a) => a.headers), backend: conns.map((c) => c.received.toString("latin1")) };
        });
        assert.deepEqual(r.subject, r.nginx);
        assert.equal(r.nginx.backend.length, 1, "one backend connection");
        assert.ok(
          r.nginx.auth[0]?.some(([k, v]) => k === "Auth-SSL" && v === "on"),
          "Auth-SSL: on",
        );
      });
    }
  });

  describe("to Dovecot with curl", () => {
    let pair: Pair;
    // One Dovecot per side: SELECT and FETCH change the mailbox (\Recent, \Seen).
    const dovecots: Partial<Record<Role, Dovecot>> = {};
    before(async () => {
      for (const role of ["oracle", "subject"] as const) {
        const [imapPort, pop3Port] = await freePorts(2);
        const dovecot = await startDovecot({ imapPort: imapPort!, pop3Port: pop3Port! });
        dovecots[role] = dovecot;
        dovecot.deliver("test@example.com", "From: a@example.com\r\nTo: test@example.com\r\nSubject: through TLS\r\n\r\nHello over TLS.\r\n");
      }
      pair = await startPair(LISTEN, CONFIG, {
        auth: (_backends, role) => (request) => {
          const d = dovecots[role]!;
          return okTo(request.header("Auth-Protocol") === "pop3" ? d.pop3Port : d.imapPort)(request);
        },
      });
    });
    after(async () => {
      await pair?.stop();
      for (const d of Object.values(dovecots)) await d.stop();
    });

    const curlCases: Array<[string, (side: Side) => string[]]> = [
      ["imaps:// LIST", (s) => [`imaps://127.0.0.1:${s.ports.imaps}/`]],
      ["imaps:// fetch INBOX;UID=1", (s) => [`imaps://127.0.0.1:${s.ports.imaps}/INBOX;UID=1`]],
      ["imap:// --ssl-reqd fetch INBOX;UID=1 (starttls only)", (s) => ["--ssl-reqd", `imap://127.0.0.1:${s.ports.imap}/INBOX;UID=1`]],
      ["pop3s:// RETR 1", (s) => [`pop3s://127.0.0.1:${s.ports.pop3s}/1`]],
    ];
    for (const [name, args] of curlCases) {
      it(`curl ${name} as test@example.com`, async () => {
        const r = await pair.both(async (side) => {
          const { result, auth } = await withAuth(side, () => curl([...args(side), "-u", "test@example.com:secret"]));
          return { curl: { ...result, dialogue: result.dialogue.map(dovecotVolatile) }, auth: auth.map((a) => a.headers) };
        });
        assert.deepEqual(r.subject, r.nginx);
        assert.equal(r.nginx.curl.code, 0, r.nginx.curl.dialogue.join("\n"));
        if (name.includes("UID=1") || name.includes("RETR")) assert.match(r.nginx.curl.stdout, /Hello over TLS\./);
        else assert.match(r.nginx.curl.stdout, /INBOX/);
      });
    }

    it("curl imaps:// with a wrong password: refused alike", async () => {
      const r = await pair.both(async (side) => {
        const result = await curl([`imaps://127.0.0.1:${side.ports.imaps}/`, "-u", "test@example.com:wrong"]);
        return { ...result, dialogue: result.dialogue.map(dovecotVolatile) };
      });
      assert.deepEqual(r.subject, r.nginx);
      assert.notEqual(r.nginx.code, 0);
    });
  });
});

/**
 * TLS 1.3 tickets before the first protocol byte (issue 12, item 4): a
 * probe with Python's ssl (ticket-probe.py) reads one line and closes, then
 * reconnects offering its session. nginx 1.22.1 sends its NewSessionTicket
 * messages right after the client's Finished, so the probe holds a ticket
 * when it has read the greeting and resumes; Postern must do the same, with
 * implicit TLS (IMAP, POP3, SMTP, SMTP with smtp_greeting_delay) and after
 * STARTTLS.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { certs } from "../../support/certs.js";
import { repoRoot } from "../../support/postern.js";
import { runProcess, startPair, type Pair } from "./e2e.js";

/** One connection of the probe. */
interface ProbeConnection {
  line: string;
  reused: boolean;
  ticket: boolean;
}

async function probe(port: number, protocol: "imap" | "pop3" | "smtp", mode: "ssl" | "starttls"): Promise<ProbeConnection[]> {
  const script = path.join(repoRoot(), "test", "mail", "tls-e2e", "ticket-probe.py");
  const request = { protocol, port, mode, cafile: certs().ca.cert, connections: 3 };
  const run = await runProcess("python3", [script], 30000, JSON.stringify(request));
  if (run.code !== 0) throw new Error(`ticket-probe.py failed (${run.code}):\n${run.stderr}`);
  return JSON.parse(run.stdout) as ProbeConnection[];
}

/** What the probe saw, without the lines' host-specific words (the SMTP greeting names the host). */
function outcome(connections: ProbeConnection[]): Array<[boolean, boolean]> {
  return connections.map((c) => [c.ticket, c.reused]);
}

/** Every connection held a ticket after its first line; every reconnection resumed. */
const RESUMED: Array<[boolean, boolean]> = [
  [true, false],
  [true, true],
  [true, true],
];

describe("TLS 1.3 tickets reach a client before the first protocol line, nginx vs Postern", () => {
  let pair: Pair;

  before(async () => {
    pair = await startPair(
      ["imaps", "pop3s", "smtps", "smtpsDelay", "imap", "pop3", "smtp"],
      ({ ports, authUrl, pki }) => `
      auth_http ${authUrl};
      ssl_protocols TLSv1.2 TLSv1.3;
      ssl_certificate ${pki.serverRsa.cert};
      ssl_certificate_key ${pki.serverRsa.key};
      server { listen 127.0.0.1:${ports.imaps} ssl; protocol imap; }
      server { listen 127.0.0.1:${ports.pop3s} ssl; protocol pop3; }
      server { listen 127.0.0.1:${ports.smtps} ssl; protocol smtp; }
      server { listen 127.0.0.1:${ports.smtpsDelay} ssl; protocol smtp; smtp_greeting_delay 300ms; }
      server { listen 127.0.0.1:${ports.imap}; protocol imap; starttls on; }
      server { listen 127.0.0.1:${ports.pop3}; protocol pop3; starttls on; }
      server { listen 127.0.0.1:${ports.smtp}; protocol smtp; starttls on; }
    `,
    );
  });
  after(async () => {
    await pair?.stop();
  });

  for (const [name, protocol, greeting] of [
    ["imaps", "imap", /^\* OK /],
    ["pop3s", "pop3", /^\+OK /],
    ["smtps", "smtp", /^220 /],
    ["smtpsDelay", "smtp", /^220 /],
  ] as const) {
    it(`implicit TLS (${name}): a client that reads the greeting and closes resumes next time`, async () => {
      const r = await pair.both((side) => probe(side.ports[name]!, protocol, "ssl"));
      for (const c of [...r.nginx, ...r.subject]) assert.match(c.line, greeting);
      assert.deepEqual(outcome(r.nginx), RESUMED, "nginx, the oracle");
      assert.deepEqual(outcome(r.subject), outcome(r.nginx));
    });
  }

  for (const [name, protocol, reply] of [
    ["imap", "imap", /^b OK /],
    ["pop3", "pop3", /^\+OK/],
    ["smtp", "smtp", /^250 /],
  ] as const) {
    it(`STARTTLS (${name}): a client whose first command leaves with its Finished reads the reply, closes, and resumes next time`, async () => {
      const r = await pair.both((side) => probe(side.ports[name]!, protocol, "starttls"));
      for (const c of [...r.nginx, ...r.subject]) assert.match(c.line, reply);
      assert.deepEqual(outcome(r.nginx), RESUMED, "nginx, the oracle");
      assert.deepEqual(outcome(r.subject), outcome(r.nginx));
    });
  }
});

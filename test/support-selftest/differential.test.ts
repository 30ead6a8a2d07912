/** Proves differential.ts: nginx vs nginx compares equal, and a config change is detected. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { MailClient } from "../support/client.js";
import { runScenario, type DifferentialSetup, type Scenario } from "../support/differential.js";
import { startNginx } from "../support/nginx.js";

function setup(imapCapabilities: string): DifferentialSetup {
  return {
    listen: ["imap", "pop3"],
    logLevels: ["info", "error"],
    config: ({ ports, authUrl }) => `
      auth_http ${authUrl};
      server { listen 127.0.0.1:${ports.imap}; protocol imap; imap_capabilities ${imapCapabilities}; imap_auth plain cram-md5; }
      server { listen 127.0.0.1:${ports.pop3}; protocol pop3; pop3_auth plain apop; server_name pop.example.test; }
    `,
    // APOP sends a digest, so the reply must carry the real password for the backend.
    auth: (backends) => (req) => ({
      headers: [
        ["Auth-Status", "OK"],
        ["Auth-Server", "127.0.0.1"],
        ["Auth-Port", String(req.header("Auth-Protocol") === "imap" ? backends.imap : backends.pop3)],
        ["Auth-Pass", "secret"],
      ],
    }),
  };
}

const md5 = (s: string): string => createHash("md5").update(s).digest("hex");

/** Logs in over IMAP (CRAM-MD5) and POP3 (APOP); records the client transcripts. */
const scenario: Scenario<{ imap: string; pop3: string }> = async (ports) => {
  const i = await MailClient.connect({ port: ports.imap! });
  await i.readLine();
  await i.send("a1 CAPABILITY\r\n");
  await i.read(/a1 .*\r\n/);
  await i.send("a2 AUTHENTICATE CRAM-MD5\r\n");
  const challenge = Buffer.from((await i.readLine()).slice(2), "base64").toString("latin1");
  await i.send(Buffer.from(`user ${createHash("md5").update(challenge).digest("hex")}`).toString("base64") + "\r\n");
  await i.readLine();
  await i.send("a3 LOGOUT\r\n");
  await i.expectClosed();

  const p = await MailClient.connect({ port: ports.pop3! });
  const greeting = await p.readLine();
  const salt = /<[^>]+>/.exec(greeting)![0];
  await p.send(`APOP user ${md5(salt + "secret")}\r\n`);
  await p.readLine();
  await p.send("QUIT\r\n");
  await p.expectClosed();
  return { imap: i.transcriptText(), pop3: p.transcriptText() };
};

test("nginx vs nginx: normalised records are equal; a different config makes them differ", async () => {
  const a = await runScenario(startNginx, setup("IMAP4rev1"), scenario);
  const b = await runScenario(startNginx, setup("IMAP4rev1"), scenario);
  assert.deepEqual(a, b);
  // The record holds real content, with only the random parts normalised.
  assert.match(a.transcript.pop3, /\+OK POP3 ready <SALT@pop\.example\.test>/);
  assert.match(a.transcript.pop3, /APOP user <digest>/);
  assert.match(a.transcript.imap, /\+ <base64 salt@[^>]+>/);
  assert.match(a.authRequests[0]!, /^Auth-Salt: <SALT@[^>]+>\r\n/m);
  assert.match(a.authRequests[1]!, /^Auth-Pass: <digest>\r$/m);
  assert.deepEqual(a.backendReceived.pop3, ["USER user\r\nPASS secret\r\nQUIT\r\n"]);
  assert.equal(a.backendReceived.imap.length, 1);
  assert.match(a.backendReceived.imap[0]!, /^a2 LOGIN \{4\}\r\nuser \{6\}\r\nsecret\r\na3 LOGOUT\r\n$/);

  assert.ok(a.errorLog.includes("<time> [info] <pid>: *<conn> client 127.0.0.1:<client-port> connected to 127.0.0.1:<port:imap>"), a.errorLog.join("\n"));
  assert.ok(
    a.errorLog.some((l) =>
      /\*<conn> client logged in, client: 127\.0\.0\.1, server: 127\.0\.0\.1:<port:pop3>, login: "user", upstream: 127\.0\.0\.1:<backend-port:pop3>/.test(l),
    ),
    a.errorLog.join("\n"),
  );

  const c = await runScenario(startNginx, setup("IMAP4rev1 ID"), scenario);
  assert.throws(() => assert.deepEqual(a, c), /CAPABILITY IMAP4rev1 ID/);
});

/**
 * What each handshake-level directive does on the wire, seen by
 * `openssl s_client` and Node clients against a TLS echo server built from
 * startTls/clientTlsInfo.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import tls from "node:tls";
import type { TlsServerSetup } from "../../../src/mail/ssl/context.js";
import { serverTicketsSent, startTls } from "../../../src/mail/ssl/accept.js";
import { echoLine, echoServer, freePort, makePki, type Pki, sClient, sessionLine, setupFrom, startNginx, tempDir } from "./helpers.js";
import { startNginx as startNginxProxy } from "../../support/nginx.js";
import { startPostern } from "../../support/postern.js";

let tmp: ReturnType<typeof tempDir>;
let pki: Pki;

before(() => {
  tmp = tempDir();
  pki = makePki(tmp.dir);
});
after(() => tmp.remove());

const rsa = (): string[][] => [
  ["ssl_certificate", pki.rsaCert],
  ["ssl_certificate_key", pki.rsaKey],
];

async function withServer<T>(setup: TlsServerSetup, fn: (port: number) => Promise<T>): Promise<T> {
  const s = await echoServer(setup);
  try {
    return await fn(s.port);
  } finally {
    await s.close();
  }
}

describe("ssl_protocols", () => {
  test("default is TLSv1.2 TLSv1.3", async () => {
    await withServer(setupFrom(rsa()), async (port) => {
      assert.equal(sessionLine(await sClient(port, []))?.protocol, "TLSv1.3");
      assert.equal(sessionLine(await sClient(port, ["-tls1_2"]))?.protocol, "TLSv1.2");
      assert.equal(sessionLine(await sClient(port, ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"])), undefined);
    });
  });
  test("TLSv1.2 only refuses a TLSv1.3-only client", async () => {
    await withServer(setupFrom([...rsa(), ["ssl_protocols", "TLSv1.2"]]), async (port) => {
      assert.equal(sessionLine(await sClient(port, ["-tls1_3"])), undefined);
      assert.equal(sessionLine(await sClient(port, ["-tls1_2"]))?.protocol, "TLSv1.2");
      assert.equal(sessionLine(await sClient(port, []))?.protocol, "TLSv1.2");
    });
  });
  test("TLSv1.3 only refuses TLSv1.2", async () => {
    await withServer(setupFrom([...rsa(), ["ssl_protocols", "TLSv1.3"]]), async (port) => {
      assert.equal(sessionLine(await sClient(port, ["-tls1_2"])), undefined);
      assert.equal(sessionLine(await sClient(port, ["-tls1_3"]))?.protocol, "TLSv1.3");
    });
  });
  test("the page's example list (TLSv1 .. TLSv1.3 with legacy ciphers) loads and serves", async () => {
    const setup = setupFrom([
      ...rsa(),
      ["ssl_protocols", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"],
      ["ssl_ciphers", "AES128-SHA:AES256-SHA:RC4-SHA:DES-CBC3-SHA:RC4-MD5"],
    ]);
    await withServer(setup, async (port) => {
      // The client's order wins (AES256-SHA before AES128-SHA in OpenSSL's default list).
      const run = await sClient(port, ["-tls1_2"]);
      assert.equal(sessionLine(run)?.cipher, "AES256-SHA");
      assert.match(run.stdout, /Protocol *: TLSv1\.2/);
    });
  });
});

describe("ssl_ciphers and ssl_prefer_server_ciphers", () => {
  const serverList = "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256";
  const clientArgs = ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"];

  test("a cipher outside the list is refused", async () => {
    await withServer(setupFrom([...rsa(), ["ssl_ciphers", "ECDHE-RSA-AES128-GCM-SHA256"]]), async (port) => {
      assert.equal(sessionLine(await sClient(port, ["-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384"])), undefined);
      assert.equal(sessionLine(await sClient(port, ["-tls1_2"]))?.cipher, "ECDHE-RSA-AES128-GCM-SHA256");
    });
  });

  test("off (default): the client's order wins, as with nginx 1.22.1; on: the server's", async () => {
    const off = await withServer(setupFrom([...rsa(), ["ssl_ciphers", serverList]]), async (port) => sessionLine(await sClient(port, clientArgs))?.cipher);
    const on = await withServer(
      setupFrom([...rsa(), ["ssl_ciphers", serverList], ["ssl_prefer_server_ciphers", "on"]]),
      async (port) => sessionLine(await sClient(port, clientArgs))?.cipher,
    );
    assert.equal(off, "ECDHE-RSA-AES128-GCM-SHA256");
    assert.equal(on, "ECDHE-RSA-AES256-GCM-SHA384");
    const port = await freePort();
    const ngx = await startNginx(
      tmp.dir,
      `auth_http 127.0.0.1:1/;\nserver { listen 127.0.0.1:${port} ssl; protocol imap; ssl_certificate ${pki.rsaCert}; ssl_certificate_key ${pki.rsaKey}; ssl_protocols TLSv1.2 TLSv1.3; ssl_ciphers ${serverList}; }`,
    );
    try {
      assert.equal(sessionLine(await sClient(port, clientArgs, 10000, true))?.cipher, off);
    } finally {
      await ngx.stop();
    }
  });
});

describe("ssl_ecdh_curve and ssl_dhparam", () => {
  test("ssl_ecdh_curve restricts the key exchange groups", async () => {
    await withServer(setupFrom([...rsa(), ["ssl_ecdh_curve", "secp384r1"]]), async (port) => {
      assert.equal(sessionLine(await sClient(port, ["-groups", "P-256"])), undefined);
      const run = await sClient(port, ["-groups", "P-384:P-256"]);
      assert.equal(sessionLine(run)?.protocol, "TLSv1.3");
      assert.match(run.stdout, /Server Temp Key: ECDH, secp384r1/);
    });
  });
  test("DHE suites need ssl_dhparam", async () => {
    const dh = join(tmp.dir, "dh.pem");
    execFileSync("openssl", ["genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "dh_param:ffdhe2048", "-out", dh]);
    const args = ["-tls1_2", "-cipher", "DHE-RSA-AES128-GCM-SHA256"];
    await withServer(setupFrom([...rsa(), ["ssl_ciphers", "DHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"]]), async (port) => {
      assert.equal(sessionLine(await sClient(port, args)), undefined);
    });
    await withServer(setupFrom([...rsa(), ["ssl_ciphers", "DHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"], ["ssl_dhparam", dh]]), async (port) => {
      assert.equal(sessionLine(await sClient(port, args))?.cipher, "DHE-RSA-AES128-GCM-SHA256");
    });
  });
});

describe("certificates and keys", () => {
  test("RSA and ECDSA pairs: the client's signature algorithms choose", async () => {
    const setup = setupFrom([...rsa(), ["ssl_certificate", pki.ecCert], ["ssl_certificate_key", pki.ecKey]]);
    await withServer(setup, async (port) => {
      assert.match((await sClient(port, ["-tls1_2", "-sigalgs", "ECDSA+SHA256"])).stdout, /Peer signature type: ECDSA/);
      assert.match((await sClient(port, ["-tls1_2", "-sigalgs", "RSA+SHA256"])).stdout, /Peer signature type: RSA\b/);
      assert.match((await sClient(port, ["-tls1_3", "-sigalgs", "ecdsa_secp256r1_sha256"])).stdout, /Peer signature type: ECDSA/);
    });
  });

  test("ssl_password_file: each line is tried in order; a named pipe works", async () => {
    const key = join(tmp.dir, "enc.key");
    execFileSync("openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-aes128", "-pass", "pass:secondpw", "-out", key]);
    const crt = join(tmp.dir, "enc.crt");
    execFileSync("openssl", ["req", "-x509", "-new", "-key", key, "-passin", "pass:secondpw", "-subj", "/CN=enc", "-out", crt, "-days", "2"]);
    const pw = join(tmp.dir, "pw.txt");
    writeFileSync(pw, "wrongpw\r\n\nsecondpw\n");
    await withServer(
      setupFrom([
        ["ssl_password_file", pw],
        ["ssl_certificate", crt],
        ["ssl_certificate_key", key],
      ]),
      async (port) => {
        assert.match((await sClient(port, [])).stdout, /subject=CN = enc/);
      },
    );
    const fifo = join(tmp.dir, "pw.fifo");
    execFileSync("mkfifo", [fifo]);
    const writer = spawn("sh", ["-c", `printf 'wrongpw\\nsecondpw\\n' > '${fifo}'`], { stdio: "ignore" });
    try {
      const setup = setupFrom([
        ["ssl_password_file", fifo],
        ["ssl_certificate", crt],
        ["ssl_certificate_key", key],
      ]);
      assert.ok(setup.secureContext);
    } finally {
      writer.kill();
    }
  });

  test("data: certificate and key", async () => {
    const { readFileSync } = await import("node:fs");
    const setup = setupFrom([
      ["ssl_certificate", "data:" + readFileSync(pki.ecCert, "utf8")],
      ["ssl_certificate_key", "data:" + readFileSync(pki.ecKey, "utf8")],
    ]);
    await withServer(setup, async (port) => {
      assert.match((await sClient(port, [])).stdout, /Peer signature type: ECDSA/);
    });
  });
});

describe("ALPN", () => {
  test("the protocol's own name is selected, another is refused with no_application_protocol, none is fine", async () => {
    await withServer(setupFrom(rsa(), { protocol: "pop3" }), async (port) => {
      assert.match((await sClient(port, ["-alpn", "imap,pop3"])).stdout, /ALPN protocol: pop3/);
      const refused = await sClient(port, ["-alpn", "imap"]);
      assert.equal(sessionLine(refused), undefined);
      assert.match(refused.stderr, /no application protocol/);
      assert.match((await sClient(port, [])).stdout, /No ALPN negotiated/);
    });
  });
});

describe("startTls on an existing connection (STARTTLS)", () => {
  test("pipelined plaintext after STARTTLS is discarded, not fed into TLS; TCP_NODELAY on", async () => {
    const setup = setupFrom(rsa());
    const s = await echoServer(setup, { starttls: true });
    try {
      const raw = net.connect(s.port, "127.0.0.1");
      await new Promise<void>((r) => raw.once("data", () => r()));
      raw.write("a STARTTLS\r\nb LOGIN injected secret\r\n");
      const reply = await new Promise<string>((r) => raw.once("data", (d: Buffer) => r(d.toString())));
      assert.equal(reply, "a OK Begin TLS negotiation now\r\n");
      const secure = tls.connect({ socket: raw, rejectUnauthorized: false, ALPNProtocols: ["imap"] });
      const text = await new Promise<string>((resolve, reject) => {
        let acc = "";
        secure.on("data", (d: Buffer) => (acc += d.toString()));
        secure.on("end", () => resolve(acc));
        secure.on("error", reject);
      });
      secure.destroy();
      const line = JSON.parse(text) as { info: { protocol: string } };
      assert.equal(line.info.protocol, "TLSv1.3");
      assert.equal(secure.alpnProtocol, "imap");
      assert.deepEqual(s.errors, []);
    } finally {
      await s.close();
    }
  });

  test("bytes the stream buffered before the upgrade never reach TLS; the reply goes out in order", async () => {
    const setup = setupFrom(rsa());
    const outcome: Promise<string>[] = [];
    const srv = net.createServer((sock) => {
      // No listener: the plaintext sits in the socket's own read buffer.
      outcome.push(
        new Promise((resolve) =>
          setTimeout(() => {
            assert.ok(sock.readableLength > 0);
            // as the session does: the front end's reply is queued, then the handshake starts in the same tick
            sock.write("+OK begin TLS\r\n");
            startTls(sock, setup).then(
              (t) => {
                t.end("secure\r\n");
                resolve("ok");
              },
              (e: Error) => resolve(e.message),
            );
          }, 150),
        ),
      );
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    try {
      const raw = net.connect((srv.address() as net.AddressInfo).port, "127.0.0.1", () => raw.write("STLS\r\nUSER pipelined\r\n"));
      const reply = await new Promise<string>((r) => raw.once("data", (d: Buffer) => r(d.toString())));
      assert.equal(reply, "+OK begin TLS\r\n");
      const secure = tls.connect({ socket: raw, rejectUnauthorized: false });
      const text = await new Promise<string>((resolve, reject) => {
        let acc = "";
        secure.on("data", (d: Buffer) => (acc += d.toString()));
        secure.on("end", () => resolve(acc));
        secure.on("error", reject);
      });
      secure.destroy();
      assert.equal(text, "secure\r\n");
      assert.equal(await outcome[0], "ok");
    } finally {
      await new Promise((r) => srv.close(r));
    }
  });

  test("a silent client is closed once `timeout` has passed, not before, as by nginx (the session's deadline covers the handshake)", async () => {
    for (const start of [startNginxProxy, startPostern]) {
      const port = await freePort();
      const proxy = await start(`server { listen 127.0.0.1:${port} ssl; protocol imap; auth_http 127.0.0.1:9/auth; timeout 1s;
        ssl_certificate ${pki.rsaCert}; ssl_certificate_key ${pki.rsaKey}; }`);
      try {
        const began = Date.now();
        const raw = net.connect(port, "127.0.0.1");
        raw.on("error", () => undefined);
        const received: Buffer[] = [];
        raw.on("data", (d: Buffer) => received.push(d));
        // a server that never times the client out fails the assertion below instead of hanging
        const giveUp = setTimeout(() => raw.destroy(), 8000);
        await new Promise<void>((r) => raw.on("close", () => r()));
        clearTimeout(giveUp);
        const elapsed = Date.now() - began;
        assert.ok(elapsed >= 900 && elapsed < 8000, `${start.name}: closed after ${elapsed} ms`);
        assert.equal(Buffer.concat(received).length, 0, `${start.name}: nothing sent to a client that never said hello`);
        // nginx's handshake handler closes a timed-out handshake without a line of its own
        assert.doesNotMatch(proxy.errorLog(), /timed out/, `${start.name}: no "timed out" line`);
      } finally {
        await proxy.stop();
      }
    }
  });

  test("a failed handshake rejects with nginx's log line", async () => {
    const s = await echoServer(setupFrom(rsa()));
    try {
      const c = net.connect(s.port, "127.0.0.1", () => c.write("GET / HTTP/1.0\r\n\r\n"));
      await new Promise<void>((r) => c.on("close", () => r()).on("error", () => undefined));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(s.errors.length, 1);
      assert.match(s.errors[0]!, /^SSL_do_handshake\(\) failed \(SSL: error:0A00009C:SSL routines::http request\) while SSL handshaking$/);
    } finally {
      await s.close();
    }
  });
});

/**
 * The order in which a Node client sees the server's session tickets
 * ('session' events) and the first line the server writes once startTls
 * has resolved, as the session writes its greeting; the server then closes.
 */
/** What the client saw first, and whether the server held its greeting for a turn of the event loop. */
async function ticketsAndGreeting(setup: TlsServerSetup, version: tls.SecureVersion): Promise<string[] & { held?: boolean }> {
  let held: boolean | undefined;
  const srv = net.createServer((sock) => {
    sock.on("error", () => undefined);
    // as the session does: the greeting once the handshake and the tickets are done
    startTls(sock, setup).then(
      async (t) => {
        t.on("error", () => undefined);
        let turned = false;
        setImmediate(() => (turned = true));
        await serverTicketsSent(t, setup);
        held = turned;
        t.end("* OK greeting\r\n");
      },
      () => sock.destroy(),
    );
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  try {
    const port = (srv.address() as net.AddressInfo).port;
    return await new Promise<string[]>((resolve, reject) => {
      const seen: string[] = [];
      const c = tls.connect({ port, host: "127.0.0.1", rejectUnauthorized: false, minVersion: version, maxVersion: version });
      c.on("session", () => seen.push("ticket"));
      c.on("data", () => seen.push("greeting"));
      c.on("error", reject);
      c.on("close", () => resolve(Object.assign(seen, { held })));
    });
  } finally {
    await new Promise((r) => srv.close(r));
  }
}

describe("session tickets and the first line (TLS-5)", () => {
  test("TLS 1.3 with ssl_session_tickets on: both tickets reach the client before the greeting, as nginx sends them", async () => {
    const seen = await ticketsAndGreeting(setupFrom(rsa()), "TLSv1.3");
    assert.deepEqual([...seen], ["ticket", "ticket", "greeting"]);
    assert.equal(seen.held, true, "the greeting waits a turn for the tickets");
  });

  test("TLS 1.3 with ssl_session_tickets off: the greeting is not held for OpenSSL's unresumable tickets", async () => {
    const seen = await ticketsAndGreeting(setupFrom([...rsa(), ["ssl_session_tickets", "off"]]), "TLSv1.3");
    // (which comes first then is Node's matter: Node 20 writes the greeting before these
    // tickets, Node 24 after them; what Postern decides is whether it waits)
    assert.equal(seen.held, false, "the greeting is written without waiting a turn");
    assert.ok(seen.includes("greeting"));
  });

  test("TLS 1.2: the ticket is part of the handshake, before the greeting", async () => {
    const seen = await ticketsAndGreeting(setupFrom(rsa()), "TLSv1.2");
    assert.deepEqual([...seen], ["ticket", "greeting"]);
    assert.equal(seen.held, false, "no wait on TLS 1.2");
  });
});

describe("fixed settings", () => {
  test("client-initiated renegotiation is refused (SSL_OP_NO_RENEGOTIATION)", async () => {
    const setup = setupFrom(rsa());
    const srv = net.createServer((sock) => {
      startTls(sock, setup).then(
        (t) => {
          t.on("error", () => undefined);
          t.write("hello\n");
          setTimeout(() => t.end("bye\n"), 1500);
        },
        () => undefined,
      );
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    try {
      const out = await new Promise<string>((resolve) => {
        const c = spawn("openssl", ["s_client", "-connect", `127.0.0.1:${(srv.address() as net.AddressInfo).port}`, "-tls1_2"], {
          stdio: ["pipe", "pipe", "pipe"],
        });
        let acc = "";
        c.stdout.on("data", (d: Buffer) => {
          acc += d.toString();
          if (acc.includes("hello")) c.stdin.write("R\n");
        });
        c.stderr.on("data", (d: Buffer) => (acc += d.toString()));
        const timer = setTimeout(() => c.kill(), 8000);
        c.on("close", () => {
          clearTimeout(timer);
          resolve(acc);
        });
      });
      assert.match(out, /RENEGOTIATING/);
      assert.match(out, /no renegotiation/);
      assert.doesNotMatch(out, /bye/);
    } finally {
      await new Promise((r) => srv.close(r));
    }
  });
});

describe("clientTlsInfo without client certificates", () => {
  test("protocol and cipher only", async () => {
    await withServer(setupFrom(rsa()), async (port) => {
      const run = await sClient(port, ["-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384"]);
      assert.deepEqual(echoLine(run)?.info, { protocol: "TLSv1.2", cipher: "ECDHE-RSA-AES256-GCM-SHA384" });
    });
  });
});

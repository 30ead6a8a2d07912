/**
 * Configuration errors of ngx_mail_ssl_module, compared with `nginx -t`
 * (1.22.1) where the message is nginx's, and the other directive values.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import net from "node:net";
import tls from "node:tls";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConfError } from "../../../src/core/errors.js";
import { buildTlsContext } from "../../../src/mail/ssl/context.js";
import { sslConfCommand, sslProtocols } from "../../../src/mail/ssl/module.js";
import { echoServer, makePki, nginxTest, type Pki, sClient, serverConf, sessionLine, setupFrom, tempDir } from "./helpers.js";

let tmp: ReturnType<typeof tempDir>;
let pki: Pki;
let ngxDir: string;

before(() => {
  tmp = tempDir();
  pki = makePki(tmp.dir);
  ngxDir = join(tmp.dir, "ngx");
  mkdirSync(ngxDir);
});
after(() => tmp.remove());

/** The ConfError a function throws. */
function confError(fn: () => unknown): ConfError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfError) return err;
    throw err;
  }
  assert.fail("no error");
}

/** nginx's message for a server body, without its ` in FILE:LINE` suffix. */
function nginxSays(serverBody: string): string {
  return nginxTest(ngxDir, `auth_http 127.0.0.1:1/;\nserver {\nlisten 127.0.0.1:1993 ssl;\nprotocol imap;\n${serverBody}\n}`).replace(/ in \/\S+:\d+$/, "");
}

const rsa = (): string[][] => [
  ["ssl_certificate", pki.rsaCert],
  ["ssl_certificate_key", pki.rsaKey],
];
const rsaText = (): string => `ssl_certificate ${pki.rsaCert}; ssl_certificate_key ${pki.rsaKey};`;

describe("values rejected while parsing (with location)", () => {
  const cases: [string[], string][] = [
    [["ssl_protocols", "TLSv1.4"], `invalid value "TLSv1.4"`],
    [["ssl_verify_client", "sometimes"], `invalid value "sometimes"`],
    [["starttls", "maybe"], `invalid value "maybe"`],
    [["ssl_session_cache", "shared:X"], `invalid session cache "shared:X"`],
    [["ssl_session_cache", "shared:X:1k"], `session cache "shared:X:1k" is too small`],
    [["ssl_session_cache", "builtin:abc"], `invalid session cache "builtin:abc"`],
    [["ssl_session_cache", "shared::1m"], `invalid session cache "shared::1m"`],
    [["ssl_session_cache", "private"], `invalid session cache "private"`],
    [["ssl_password_file", "/nonexist.pw"], `open() "/nonexist.pw" failed (2: No such file or directory)`],
  ];
  for (const [line, message] of cases) {
    test(line.join(" "), () => {
      const e = confError(() => serverConf([line]));
      assert.equal(e.message, message);
      assert.equal(e.location?.line, 1);
      assert.equal(nginxSays(`${line[0]} ${line.slice(1).join(" ")};`), message);
    });
  }
  test("shared:X: with an empty size is invalid (latest nginx)", () => {
    assert.equal(confError(() => serverConf([["ssl_session_cache", "shared:X:"]])).message, `invalid session cache "shared:X:"`);
  });
  test("ssl_password_file twice at one level", () => {
    const pw = join(tmp.dir, "pw");
    writeFileSync(pw, "x\n");
    const e = confError(() =>
      serverConf([
        ["ssl_password_file", pw],
        ["ssl_password_file", pw],
      ]),
    );
    assert.equal(e.text, `"ssl_password_file" directive is duplicate in /nginx.conf:2`);
    assert.equal(nginxSays(`ssl_password_file ${pw}; ssl_password_file ${pw};`), `"ssl_password_file" directive is duplicate`);
  });
  test("the removed ssl directive names its replacement", () => {
    assert.equal(
      confError(() => serverConf([["ssl", "on"]])).message,
      `the "ssl" directive is no longer supported, use the "listen ... ssl" directive instead`,
    );
  });
});

describe("checks when a TLS server is built (nginx's merge-time messages)", () => {
  const build = (lines: string[][], opts: { starttls?: boolean } = {}) => {
    const { conf } = serverConf(lines);
    return buildTlsContext(conf, {
      protocol: "imap",
      usesTls: true,
      listenSslLocations: opts.starttls
        ? []
        : [
            { file: "/etc/postern/nginx.conf", line: 5 },
            { file: "/etc/postern/nginx.conf", line: 7 },
          ],
      ...(opts.starttls ? { starttlsLocation: { file: "/etc/postern/nginx.conf", line: 9 } } : {}),
    });
  };
  test("missing certificate or key", () => {
    assert.equal(confError(() => build([])).message, `no "ssl_certificate" is defined for the "listen ... ssl" directive in /etc/postern/nginx.conf:7`);
    assert.equal(
      confError(() => build([], { starttls: true })).message,
      `no "ssl_certificate" is defined for the "starttls" directive in /etc/postern/nginx.conf:9`,
    );
    assert.equal(
      confError(() => build([["ssl_certificate", pki.rsaCert]])).message,
      `no "ssl_certificate_key" is defined for the "listen ... ssl" directive in /etc/postern/nginx.conf:7`,
    );
    assert.equal(
      confError(() => build([...rsa(), ["ssl_certificate", "certs/ec.crt"]])).message,
      `no "ssl_certificate_key" is defined for certificate "certs/ec.crt" and the "listen ... ssl" directive in /etc/postern/nginx.conf:7`,
    );
    assert.equal(nginxSays(""), `no "ssl_certificate" is defined for the "listen ... ssl" directive`);
  });
  test("a server without TLS loads nothing", () => {
    const { conf } = serverConf([["ssl_certificate", "/nonexist.crt"]]);
    assert.equal(buildTlsContext(conf, { protocol: "smtp", usesTls: false, listenSslLocations: [] }), null);
  });
  test("ssl_verify_client without CA (latest wording)", () => {
    assert.equal(
      confError(() => build([...rsa(), ["ssl_verify_client", "on"]])).message,
      "no ssl_client_certificate or ssl_trusted_certificate for ssl_verify_client",
    );
    assert.ok(build([...rsa(), ["ssl_verify_client", "on"], ["ssl_trusted_certificate", pki.ca]]));
    assert.ok(build([...rsa(), ["ssl_verify_client", "optional_no_ca"]]));
  });
  const same: [string, string[][], string][] = [
    [
      "missing certificate file",
      [
        ["ssl_certificate", "/nonexist.crt"],
        ["ssl_certificate_key", "/nonexist.key"],
      ],
      "ssl_certificate /nonexist.crt; ssl_certificate_key /nonexist.key;",
    ],
    [
      "data: garbage",
      [
        ["ssl_certificate", "data:garbage"],
        ["ssl_certificate_key", pki.rsaKey],
      ],
      `ssl_certificate data:garbage; ssl_certificate_key ${pki.rsaKey};`,
    ],
    [
      "key mismatch",
      [
        ["ssl_certificate", pki.ecCert],
        ["ssl_certificate_key", pki.clientKey],
      ],
      `ssl_certificate ${pki.ecCert}; ssl_certificate_key ${pki.clientKey};`,
    ],
    [
      "bad cipher list",
      [
        ...[
          ["ssl_certificate", "C"],
          ["ssl_certificate_key", "K"],
        ],
      ],
      "ssl_ciphers FOOBAR;",
    ],
    ["bad curve", [], "ssl_ecdh_curve nosuch;"],
    ["missing dhparam", [], "ssl_dhparam /nonexist.dh;"],
    ["dhparam not DH", [], "ssl_dhparam CERT;"],
    ["unknown ssl_conf_command", [], "ssl_conf_command Foo bar;"],
  ];
  for (const [name, lines0, body0] of same) {
    test(`${name}: same message as nginx -t`, () => {
      let lines = lines0;
      let body = body0;
      if (!lines.length || lines[0]![1] === "C") {
        const [d, ...args] = body.replace(";", "").split(" ") as [string, ...string[]];
        lines = [...rsa(), [d, ...args.map((a) => (a === "CERT" ? pki.rsaCert : a))]];
        body = `${rsaText()} ${body.replace("CERT", pki.rsaCert)}`;
      }
      assert.equal(confError(() => build(lines)).message, nginxSays(body));
    });
  }
  test("ticket key of the wrong size: nginx's message (located at the directive)", () => {
    const bad = join(tmp.dir, "bad.key");
    writeFileSync(bad, randomBytes(10));
    const e = confError(() => build([...rsa(), ["ssl_session_ticket_key", bad]]));
    assert.equal(e.message, nginxSays(`${rsaText()} ssl_session_ticket_key ${bad};`));
    assert.equal(e.location?.line, 3);
  });
  test("an RSA certificate with an EC key: refused at start (nginx -t accepts it, handshakes then fail)", () => {
    assert.equal(
      confError(() =>
        build([
          ["ssl_certificate", pki.rsaCert],
          ["ssl_certificate_key", pki.ecKey],
        ]),
      ).message,
      `SSL_CTX_use_PrivateKey("${pki.ecKey}") failed (SSL: error:05800074:x509 certificate routines::key values mismatch)`,
    );
    assert.equal(nginxSays(`ssl_certificate ${pki.rsaCert}; ssl_certificate_key ${pki.ecKey};`), "");
  });
  test("a data: key never appears in a message", () => {
    const e = confError(() =>
      build([
        ["ssl_certificate", pki.rsaCert],
        ["ssl_certificate_key", "data:-----BEGIN PRIVATE KEY-----\nSECRETSECRET\n-----END PRIVATE KEY-----\n"],
      ]),
    );
    assert.match(e.message, /^cannot load certificate key "data:\.\.\.": PEM_read_bio_PrivateKey\(\) failed \(SSL: /);
    assert.doesNotMatch(e.message, /SECRET/);
    const m = confError(() =>
      build([
        ["ssl_certificate", pki.ecCert],
        ["ssl_certificate_key", "data:" + readFileSync(pki.clientKey, "utf8")],
      ]),
    );
    assert.equal(m.message, `SSL_CTX_use_PrivateKey("data:...") failed (SSL: error:05800074:x509 certificate routines::key values mismatch)`);
  });
  test("engine: keys fail clearly", () => {
    assert.equal(
      confError(() =>
        build([
          ["ssl_certificate", pki.rsaCert],
          ["ssl_certificate_key", "engine:pkcs11:id_45"],
        ]),
      ).message,
      `cannot load certificate key "engine:pkcs11:id_45": ENGINE_by_id("pkcs11") failed (SSL: OpenSSL engines are not available in Node.js)`,
    );
  });
  test("ssl_certificate_compression on: the certificate goes compressed to a client that offers it (Node 26), else nginx's warning", async () => {
    // a leaf with its chain, as a server sends it: the names repeat from one certificate to the next
    const chain = join(pki.dir, "compression-chain.pem");
    writeFileSync(chain, [pki.rsaCert, pki.deepChain, pki.ca].map((f) => readFileSync(f, "latin1")).join(""));
    const server = (): string[][] => [
      ["ssl_certificate", chain],
      ["ssl_certificate_key", pki.rsaKey],
    ];
    const warnings: string[] = [];
    const on = setupFrom([...server(), ["ssl_certificate_compression", "on"]], { warn: (m) => warnings.push(m) });
    const algorithms = (tls as { getCertificateCompressionAlgorithms?: () => string[] }).getCertificateCompressionAlgorithms?.();
    if (!algorithms) {
      // Node 22: no RFC 8879 in its TLS API, as nginx on an OpenSSL without it
      assert.deepEqual(warnings, [`"ssl_certificate_compression" is not supported on this platform, ignored`]);
      return;
    }
    assert.deepEqual(warnings, []);
    /** The bytes a TLS 1.3 client reads for the whole echo session (handshake, tickets, the answer, close). */
    const sessionBytes = async (setup: ReturnType<typeof setupFrom>, offer: string[] | undefined): Promise<number> => {
      const echo = await echoServer(setup);
      try {
        const raw = net.connect(echo.port, "127.0.0.1");
        await once(raw, "connect");
        const client = tls.connect({ socket: raw, rejectUnauthorized: false, minVersion: "TLSv1.3", ...(offer ? { certificateCompression: offer } : {}) });
        client.resume();
        await once(client, "end");
        client.destroy();
        return raw.bytesRead;
      } finally {
        await echo.close();
      }
    };
    const off = setupFrom(server());
    const plain = await sessionBytes(off, algorithms);
    const compressed = await sessionBytes(on, algorithms);
    const notOffered = await sessionBytes(on, undefined);
    assert.ok(compressed < plain, `compressed ${compressed} bytes, off ${plain}`);
    // only a client that offers decompression gets it (RFC 8879), and off stays off for one that does
    assert.ok(notOffered > compressed, `not offered ${notOffered} bytes, compressed ${compressed}`);
  });
});

describe("other values", () => {
  test("every example of the module's reference page is accepted as written", async () => {
    const s = await echoServer(
      setupFrom([
        ...rsa(),
        ["ssl_certificate", pki.ecCert],
        ["ssl_certificate_key", pki.ecKey],
        ["ssl_protocols", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"],
        ["ssl_ciphers", "ALL:!aNULL:!EXPORT56:RC4+RSA:+HIGH:+MEDIUM:+LOW:+SSLv2:+EXP"],
        ["ssl_ecdh_curve", "prime256v1:secp384r1"],
        ["ssl_session_cache", "builtin:1000", "shared:SSL:10m"],
        ["ssl_session_timeout", "10m"],
        ["ssl_conf_command", "Options", "PrioritizeChaCha"],
        ["ssl_conf_command", "Ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"],
        ["ssl_verify_client", "optional_no_ca"],
        ["ssl_verify_depth", "1"],
        ["starttls", "only"],
      ]),
    );
    try {
      assert.equal(sessionLine(await sClient(s.port, []))?.cipher, "TLS_CHACHA20_POLY1305_SHA256");
    } finally {
      await s.close();
    }
    assert.ok(setupFrom([...rsa(), ["ssl_ciphers", "AES128-SHA:AES256-SHA:RC4-SHA:DES-CBC3-SHA:RC4-MD5"], ["ssl_session_cache", "shared:SSL:10m"]]));
  });
  test("relative files resolve against the main file's directory", async () => {
    const conf = join(tmp.dir, "conf");
    mkdirSync(conf);
    writeFileSync(join(conf, "c.pem"), readFileSync(pki.ecCert));
    writeFileSync(join(conf, "k.pem"), readFileSync(pki.ecKey));
    const s = await echoServer(
      setupFrom(
        [
          ["ssl_certificate", "c.pem"],
          ["ssl_certificate_key", "k.pem"],
        ],
        { confDir: conf },
      ),
    );
    try {
      assert.match((await sClient(s.port, [])).stdout, /Peer signature type: ECDSA/);
    } finally {
      await s.close();
    }
  });
  test("ssl_protocols: a server level replaces the mail level", () => {
    const { conf } = serverConf([["ssl_protocols", "TLSv1.3"]], [["ssl_protocols", "TLSv1.2"]]);
    assert.deepEqual([...conf.get(sslProtocols)], ["TLSv1.3"]);
  });
  test("ssl_conf_command is inherited only when the server has none", () => {
    const inherited = serverConf([], [["ssl_conf_command", "Options", "PrioritizeChaCha"]]).conf;
    assert.deepEqual(
      inherited.get(sslConfCommand).map((c) => c.name),
      ["Options"],
    );
    const own = serverConf([["ssl_conf_command", "Ciphersuites", "TLS_AES_128_GCM_SHA256"]], [["ssl_conf_command", "Options", "PrioritizeChaCha"]]).conf;
    assert.deepEqual(
      own.get(sslConfCommand).map((c) => c.name),
      ["Ciphersuites"],
    );
  });
  test("ssl_conf_command overrides the other settings (Ciphersuites, Options, Protocol)", async () => {
    const s = await echoServer(
      setupFrom([
        ...rsa(),
        ["ssl_conf_command", "Ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"],
        ["ssl_session_tickets", "off"],
        ["ssl_conf_command", "Options", "SessionTicket"],
        ["ssl_conf_command", "Protocol", "-TLSv1.2"],
      ]),
    );
    try {
      const run = await sClient(s.port, ["-sess_out", join(tmp.dir, "cc.sess")]);
      assert.equal(sessionLine(run)?.cipher, "TLS_CHACHA20_POLY1305_SHA256");
      assert.match(run.stdout, /TLS session ticket lifetime hint/);
      assert.equal(sessionLine(await sClient(s.port, ["-tls1_2"])), undefined);
    } finally {
      await s.close();
    }
  });
});

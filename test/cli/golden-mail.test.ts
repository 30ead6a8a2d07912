/**
 * Mail configuration errors and accepted configurations: the installed
 * nginx 1.22.1 and Postern run `-t` on the same file; stderr, exit code and
 * the -e log must be identical. Cases where latest nginx (which Postern
 * follows) words things differently from 1.22.1 are asserted separately.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { MAIL_MODULE, both, tempDir, writeFiles } from "./run-helpers.js";

const HEAD = `${MAIL_MODULE}pid nginx.pid;\nevents {}\n`;
const mail = (body: string): string => `${HEAD}mail {\n  auth_http 127.0.0.1:9/auth;\n${body}\n}\n`;

interface Case {
  readonly name: string;
  readonly conf: string;
  readonly ok?: boolean;
}

const CASES: readonly Case[] = [
  { name: "listen in mail", conf: mail("  listen 143;") },
  { name: "server at top level", conf: `${HEAD}server { }\n` },
  { name: "mail inside mail", conf: mail("  mail { }") },
  { name: "duplicate mail", conf: `${HEAD}mail { }\nmail { }\n` },
  { name: "no listen", conf: mail("  server {\n    protocol imap;\n  }") },
  { name: "unknown protocol value", conf: mail("  server { listen 127.0.0.1:23001; protocol http; }") },
  { name: "protocol not inferable", conf: mail("  server {\n    listen 127.0.0.1:23001;\n  }") },
  { name: "invalid port", conf: mail("  server { listen 127.0.0.1:70000; protocol imap; }") },
  { name: "port zero", conf: mail("  server { listen 0; protocol imap; }") },
  { name: "host not found", conf: mail("  server { listen nosuchhost.invalid:23001; protocol imap; }") },
  { name: "invalid host", conf: mail("  server { listen 127.0.0.1/8:23001; protocol imap; }") },
  { name: "invalid IPv6", conf: mail("  server { listen [::1:23001; protocol imap; }") },
  { name: "duplicate address pair", conf: mail("  server { listen 127.0.0.1:23001; protocol imap; }\n  server { listen 127.0.0.1:23001; protocol pop3; }") },
  { name: "invalid backlog", conf: mail("  server { listen 127.0.0.1:23001 backlog=0; protocol imap; }") },
  { name: "invalid rcvbuf", conf: mail("  server { listen 127.0.0.1:23001 rcvbuf=x; protocol imap; }") },
  { name: "invalid ipv6only", conf: mail("  server { listen [::1]:23001 ipv6only=oops; protocol imap; }") },
  { name: "invalid so_keepalive", conf: mail("  server { listen 127.0.0.1:23001 so_keepalive=x:y; protocol imap; }") },
  { name: "bad timeout", conf: mail("  timeout 5x;\n  server { listen 127.0.0.1:23001; protocol imap; }") },
  { name: "duplicate timeout", conf: mail("  timeout 5s;\n  timeout 6s;\n  server { listen 127.0.0.1:23001; protocol imap; }") },
  { name: "bad max_errors", conf: mail("  max_errors -1;\n  server { listen 127.0.0.1:23001; protocol imap; }") },
  { name: "resolver twice", conf: mail("  resolver 127.0.0.1;\n  resolver 127.0.0.2;\n  server { listen 127.0.0.1:23001; protocol smtp; }") },
  {
    name: "resolver status_zone (commercial nginx only)",
    conf: mail("  resolver 127.0.0.1 status_zone=x;\n  server { listen 127.0.0.1:23001; protocol smtp; }"),
  },
  { name: "resolver host not found", conf: mail("  resolver nosuchhost.invalid;\n  server { listen 127.0.0.1:23001; protocol smtp; }") },
  { name: "no auth_http", conf: `${HEAD}mail {\n  server {\n    listen 127.0.0.1:23001;\n    protocol imap;\n  }\n}\n` },
  // (an https:// URL is Postern's extension: test/mail/auth-http-path/conf-t.test.ts asserts nginx's refusal beside it)
  { name: "auth_http bad port", conf: mail("  auth_http 127.0.0.1:99999/x;\n  server { listen 127.0.0.1:23001; protocol imap; }") },
  { name: "imap_auth apop", conf: mail("  imap_auth apop;\n  server { listen 127.0.0.1:23001; protocol imap; }") },
  { name: "pop3_auth login", conf: mail("  pop3_auth login;\n  server { listen 127.0.0.1:23001; protocol pop3; }") },
  { name: "bad imap_client_buffer", conf: mail("  imap_client_buffer 1g;\n  server { listen 127.0.0.1:23001; protocol imap; }") },
  { name: "bad xclient flag", conf: mail("  xclient yes;\n  server { listen 127.0.0.1:23001; protocol smtp; }") },
  { name: "starttls without certificate", conf: mail("  server {\n    listen 127.0.0.1:23001;\n    protocol imap;\n    starttls on;\n  }") },
  { name: "listen ssl without certificate", conf: mail("  server {\n    listen 127.0.0.1:23001 ssl;\n    protocol imap;\n  }") },
  { name: "bad ssl_verify_client", conf: mail("  ssl_verify_client sometimes;\n  server { listen 127.0.0.1:23001; protocol imap; }") },
  { name: "bad ssl_protocols", conf: mail("  ssl_protocols TLSv1.4;\n  server { listen 127.0.0.1:23001; protocol imap; }") },
  { name: "bad session cache", conf: mail("  ssl_session_cache shared:X;\n  server { listen 127.0.0.1:23001; protocol imap; }") },
  { name: "session cache too small", conf: mail("  ssl_session_cache shared:X:1k;\n  server { listen 127.0.0.1:23001; protocol imap; }") },
  { name: "set_real_ip_from bad CIDR", conf: mail("  set_real_ip_from 1.2.3.4/40;\n  server { listen 127.0.0.1:23001; protocol imap; }") },
  // configurations that must pass
  {
    name: "protocols inferred from ports (fine)",
    ok: true,
    conf: mail("  server { listen 127.0.0.1:143; }\n  server { listen 127.0.0.1:110; }\n  server { listen 127.0.0.1:25; }\n  server { listen 127.0.0.1:993; }"),
  },
  {
    name: "every mail directive at both levels (fine)",
    ok: true,
    conf: mail(
      [
        "  server_name mx.example.test; timeout 30s; max_errors 3; resolver 127.0.0.1 valid=30s; resolver_timeout 5s;",
        "  auth_http_header X-Auth-Key secret; auth_http_timeout 5s; auth_http_pass_client_cert off;",
        "  proxy on; proxy_buffer 8k; proxy_pass_error_message on; proxy_timeout 10m; xclient off; proxy_smtp_auth on;",
        "  imap_capabilities IMAP4rev1 IDLE; imap_auth plain login cram-md5; imap_client_buffer 8k;",
        "  pop3_capabilities TOP USER; pop3_auth plain apop cram-md5;",
        '  smtp_capabilities "SIZE 10485760" 8BITMIME; smtp_auth login plain none; smtp_client_buffer 8k; smtp_greeting_delay 1s;',
        "  set_real_ip_from 127.0.0.1; set_real_ip_from 10.0.0.0/8;",
        "  server { listen 127.0.0.1:23001; protocol imap; imap_auth plain; timeout 10s; }",
        "  server { listen 127.0.0.1:23002 proxy_protocol; protocol pop3; }",
        "  server { listen 127.0.0.1:23003 backlog=64 so_keepalive=on; protocol smtp; proxy_protocol on; }",
      ].join("\n"),
    ),
  },
];

for (const c of CASES) {
  test(`nginx and Postern agree on the mail block: ${c.name}`, () => {
    const { dir, cleanup } = tempDir();
    try {
      writeFiles(dir, { "nginx.conf": c.conf });
      const r = both(dir, ["-t"]);
      assert.equal(r.postern.stderr, r.nginx.stderr);
      assert.equal(r.postern.status, c.ok ? 0 : 1);
      assert.equal(r.nginx.status, r.postern.status);
      const strip = (s: string): string => s.replace(/^\S+ \S+ (\[\w+\]) \d+#\d+: /gm, "$1 ");
      assert.equal(strip(readFileSync(join(dir, "postern-err.log"), "utf8")), strip(readFileSync(join(dir, "nginx-err.log"), "utf8")));
    } finally {
      cleanup();
    }
  });
}

test("latest nginx's wording, where 1.22.1 differs: listen's unknown parameter", () => {
  const { dir, cleanup } = tempDir();
  try {
    writeFiles(dir, { "nginx.conf": mail("  server { listen 127.0.0.1:23001 foo; protocol imap; }") });
    const r = both(dir, ["-t"]);
    assert.match(r.nginx.stderr, /the invalid "foo" parameter/, "1.22.1's wording");
    assert.match(r.postern.stderr, /nginx: \[emerg\] invalid parameter "foo" in \S+nginx\.conf:6\n/);
    assert.equal(r.postern.status, 1);
  } finally {
    cleanup();
  }
});

test("latest nginx's resolver parameters, which 1.22.1 lacks: ipv4=/ipv6=", () => {
  const { dir, cleanup } = tempDir();
  try {
    writeFiles(dir, { "nginx.conf": mail("  resolver 127.0.0.1 ipv4=off ipv6=off;\n  server { listen 127.0.0.1:23001; protocol smtp; }") });
    const r = both(dir, ["-t"]);
    assert.match(r.nginx.stderr, /host not found in resolver "ipv4=off"/, "1.22.1 takes it for a host name");
    assert.match(r.postern.stderr, /nginx: \[emerg\] "ipv4" and "ipv6" cannot both be "off" in \S+nginx\.conf:6\n/);
    writeFiles(dir, { "nginx.conf": mail("  resolver 127.0.0.1 ipv6=off valid=10s;\n  server { listen 127.0.0.1:23001; protocol smtp; }") });
    assert.equal(both(dir, ["-t"]).postern.status, 0);
  } finally {
    cleanup();
  }
});

test("listen parameters Node cannot apply are warned about, not silently dropped", () => {
  const { dir, cleanup } = tempDir();
  try {
    writeFiles(dir, { "nginx.conf": mail("  server { listen 127.0.0.1:23001 rcvbuf=64k so_keepalive=30m:10:5; protocol imap; }") });
    const r = both(dir, ["-t"]);
    assert.match(r.postern.stderr, /\[warn\] the "rcvbuf" parameter of "listen" is not supported by Postern .* in \S+nginx\.conf:6/);
    assert.match(r.postern.stderr, /\[warn\] only the keepidle part of "so_keepalive" is supported by Postern/);
    assert.equal(r.postern.status, 0);
  } finally {
    cleanup();
  }
});

// The mail examples of nginx's documentation (ngx_mail_core_module and
// ngx_mail_ssl_module pages), with their file names made real.
test("the mail examples from nginx's documentation pass -t", () => {
  const { dir, cleanup } = tempDir();
  try {
    const examples = `${HEAD}worker_processes auto;
mail {
    server_name       mail.example.com;
    auth_http         localhost:9000/cgi-bin/nginxauth.cgi;

    imap_capabilities IMAP4rev1 UIDPLUS IDLE LITERAL+ QUOTA;

    pop3_auth         plain apop cram-md5;
    pop3_capabilities LAST TOP USER PIPELINING UIDL;

    smtp_auth         login plain cram-md5;
    smtp_capabilities "SIZE 10485760" ENHANCEDSTATUSCODES 8BITMIME DSN;
    xclient           off;

    server {
        listen   127.0.0.1:25;
        protocol smtp;
    }
    server {
        listen   127.0.0.1:110;
        protocol pop3;
        proxy_pass_error_message on;
    }
    server {
        listen   127.0.0.1:143;
        protocol imap;
    }
    server {
        listen   127.0.0.1:587;
        protocol smtp;
    }
    server {
        listen              127.0.0.1:993 ssl;
        ssl_protocols       TLSv1.2 TLSv1.3;
        ssl_ciphers         AES128-SHA:AES256-SHA:RC4-SHA:DES-CBC3-SHA:RC4-MD5;
        ssl_certificate     cert.pem;
        ssl_certificate_key cert.key;
        ssl_session_cache   shared:SSL:10m;
        ssl_session_timeout 10m;
    }
}
`;
    writeFiles(dir, { "nginx.conf": examples });
    const key = join(dir, "cert.key"),
      cert = join(dir, "cert.pem");

    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=mail.example.com"], {
      stdio: "ignore",
    });
    const r = both(dir, ["-t"]);
    assert.equal(r.nginx.status, 0, r.nginx.stderr);
    assert.equal(r.postern.status, 0, r.postern.stderr);
    assert.equal(r.postern.stderr.replace(/\/[^ ]*nginx\.conf/g, "CONF"), r.nginx.stderr.replace(/\/[^ ]*nginx\.conf/g, "CONF"));
  } finally {
    cleanup();
  }
});

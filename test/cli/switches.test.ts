/**
 * Command-line switches: option errors compared with nginx, -t/-T/-q output
 * compared with nginx, and Postern's own texts (-v, -V, -h, refused blocks).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { MAIL_MODULE, NGINX, POSTERN, both, postern, run, tempDir, writeFiles } from "./run-helpers.js";

const OPTION_ERRORS: readonly (readonly string[])[] = [
  ["-x"],
  ["foo"],
  ["-s", "foo"],
  ["-sfoo"],
  ["-s"],
  ["-c"],
  ["-e"],
  ["-p"],
  ["-g"],
  ["-tx"],
  ["-tqp"],
  ["-", "-x"],
  ["-vx"],
];

for (const args of OPTION_ERRORS) {
  test(`option error like nginx: ${args.join(" ")}`, () => {
    const n = run(NGINX, args);
    const p = postern(args);
    assert.equal(p.stderr, n.stderr);
    assert.equal(p.status, n.status);
    assert.equal(p.status, 1);
  });
}

test("-v prints a version line tools can parse, exit 0", () => {
  const p = postern(["-v"]);
  assert.equal(p.status, 0);
  assert.match(p.stderr, /^nginx version: nginx\/1\.22\.1 \(postern\/0\.1\.0\)\n$/);
  assert.equal(p.stdout, "");
});

test("-V: OpenSSL, SNI and the mail configure flags harnesses look for", () => {
  const p = postern(["-V"]);
  assert.equal(p.status, 0);
  const lines = p.stderr.split("\n");
  assert.match(lines[0]!, /^nginx version: nginx\/([0-9.]+)/);
  assert.equal(lines[1], `built with OpenSSL ${process.versions.openssl} (Node.js ${process.version})`);
  assert.equal(lines[2], "TLS SNI support enabled");
  assert.match(
    lines[3]!,
    /^configure arguments: --with-mail --with-mail_ssl_module --with-debug --prefix=\S+ --conf-path=conf\/nginx.conf --pid-path=logs\/nginx.pid --error-log-path=stderr/,
  );
  assert.doesNotMatch(p.stderr, /--without-mail_(imap|pop3|smtp)_module/);
});

test("-h and -? print the usage with the same option lines as nginx", () => {
  for (const sw of ["-h", "-?"]) {
    const p = postern([sw]);
    const n = run(NGINX, [sw]);
    assert.equal(p.status, 0);
    const optionLines = (s: string): string[] =>
      s
        .split("\n")
        .filter((l) => /^ {2}-/.test(l))
        .map((l) => l.replace(/\(default: .*\)/, ""));
    assert.deepEqual(optionLines(p.stderr), optionLines(n.stderr));
    assert.match(p.stderr, /^nginx version: nginx\/1\.22\.1 \(postern\/0\.1\.0\)\nUsage: postern \[-\?hvVtTq\]/);
  }
});

test("-t, -t -q, -tq and -T: same stderr, stdout and exit code as nginx, including includes", () => {
  const { dir, cleanup } = tempDir();
  try {
    writeFiles(dir, {
      "nginx.conf": `${MAIL_MODULE}pid nginx.pid;\n# comment kept verbatim\ninclude sub/*.conf;\nevents {\n    include ev.conf;\n}\n`,
      "ev.conf": "worker_connections 64;\n",
    });
    run("mkdir", [join(dir, "sub")]);
    writeFiles(join(dir, "sub"), { "a.conf": "daemon off;", "b.conf": "master_process on;\r\n" });
    for (const sw of [["-t"], ["-t", "-q"], ["-tq"], ["-T"], ["-Tq"], ["-vt"]]) {
      const r = both(dir, sw);
      assert.equal(r.postern.stderr.replace(/\(postern\/0\.1\.0\)|nginx\/1\.22\.1 /g, ""), r.nginx.stderr.replace(/nginx\/1\.22\.1 ?/g, ""), sw.join(" "));
      assert.equal(r.postern.stdout, r.nginx.stdout, sw.join(" "));
      assert.equal(r.postern.status, 0);
      assert.equal(r.nginx.status, 0);
    }
    // -t creates the pid file without writing it
    assert.equal(readFileSync(join(dir, "nginx.pid"), "utf8"), "");
  } finally {
    cleanup();
  }
});

test("-T of a failing configuration prints no dump and exits 1, like nginx", () => {
  const { dir, cleanup } = tempDir();
  try {
    writeFiles(dir, { "nginx.conf": `${MAIL_MODULE}events {}\nbogus;\n` });
    const r = both(dir, ["-T"]);
    assert.equal(r.postern.stdout, "");
    assert.equal(r.postern.stdout, r.nginx.stdout);
    assert.equal(r.postern.stderr, r.nginx.stderr);
    assert.equal(r.postern.status, 1);
  } finally {
    cleanup();
  }
});

test("missing configuration file and -e log creation, like nginx", () => {
  const { dir, cleanup } = tempDir();
  try {
    const r = both(dir, ["-t"]);
    assert.equal(r.postern.stderr, r.nginx.stderr);
    assert.equal(r.postern.status, 1);
    assert.ok(existsSync(join(dir, "postern-err.log")), "the -e log exists even though the configuration failed");
  } finally {
    cleanup();
  }
});

const OWN: readonly [string, string, RegExp][] = [
  [
    "http block",
    `${MAIL_MODULE}events {}\nhttp {\n}\n`,
    /^nginx: \[emerg\] "http" directive is not supported: Postern is a mail proxy only in \S+nginx.conf:3\n/,
  ],
  [
    "stream block",
    `${MAIL_MODULE}events {}\nstream {}\n`,
    /^nginx: \[emerg\] "stream" directive is not supported: Postern is a mail proxy only in \S+nginx.conf:3\n/,
  ],
  [
    "other module",
    `load_module modules/ngx_stream_module.so;\nevents {}\n`,
    /^nginx: \[emerg\] cannot load module "\/\S+\/modules\/ngx_stream_module.so": Postern has only the mail modules built in \(ngx_mail_module.so\) in \S+nginx.conf:1\n/,
  ],
  [
    "ssl_engine",
    `ssl_engine pkcs11;\nevents {}\n`,
    /^nginx: \[emerg\] ENGINE_by_id\("pkcs11"\) failed: OpenSSL engines are not available in Postern \(Node.js TLS\) in \S+nginx.conf:1\n/,
  ],
];

for (const [name, conf, re] of OWN) {
  test(`Postern's own message (differs from nginx by design): ${name}`, () => {
    const { dir, cleanup } = tempDir();
    try {
      writeFiles(dir, { "nginx.conf": conf });
      const p = postern(["-t", "-p", dir + "/", "-c", "nginx.conf", "-e", join(dir, "e.log")]);
      assert.match(p.stderr, re);
      assert.match(p.stderr, /test failed\n$/);
      assert.equal(p.status, 1);
    } finally {
      cleanup();
    }
  });
}

test("load_module of the mail module works with a path relative to the prefix and without any file", () => {
  const { dir, cleanup } = tempDir();
  try {
    writeFiles(dir, { "nginx.conf": `load_module modules/ngx_mail_module.so;\npid p.pid;\nevents {}\n` });
    const p = postern(["-t", "-q", "-p", dir, "-c", "nginx.conf", "-e", "e.log"]);
    assert.equal(p.stderr, "");
    assert.equal(p.status, 0);
    assert.ok(existsSync(join(dir, "e.log")), "-e relative to the prefix (a / appended to -p)");
  } finally {
    cleanup();
  }
});

test("-e stderr writes the log lines themselves to stderr (no nginx: echo)", () => {
  const { dir, cleanup } = tempDir();
  try {
    writeFiles(dir, { "nginx.conf": `${MAIL_MODULE}events {}\nbogus;\n` });
    const p = postern(["-t", "-p", dir + "/", "-c", "nginx.conf", "-e", "stderr"]);
    const n = run(NGINX, ["-t", "-p", dir + "/", "-c", "nginx.conf", "-e", "stderr"]);
    const strip = (s: string): string => s.replace(/^\S+ \S+ (\[\w+\]) \d+#\d+: /gm, "$1 ");
    assert.equal(strip(p.stderr), strip(n.stderr));
    assert.match(p.stderr, /^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d \[emerg\] (\d+)#\1: unknown directive "bogus"/);
  } finally {
    cleanup();
  }
});

test("subcommands are dispatched (auth-server and passwd)", () => {
  for (const sub of ["auth-server", "passwd"]) {
    const p = postern([sub, "--help"]);
    assert.notEqual(p.stderr, "");
    assert.doesNotMatch(p.stderr, /invalid option/);
  }
});

test("-s failures like nginx: missing pid file, empty pid file, no such process, bad config", () => {
  const { dir, cleanup } = tempDir();
  try {
    const cases: [string, string | undefined][] = [
      [`${MAIL_MODULE}pid missing.pid;\nevents {}\n`, undefined],
      [`${MAIL_MODULE}pid empty.pid;\nevents {}\n`, ""],
      [`${MAIL_MODULE}pid dead.pid;\nevents {}\n`, "999999\n"],
      [`${MAIL_MODULE}pid x.pid;\nevents {}\nbogus;\n`, undefined],
    ];
    for (const [conf, pidText] of cases) {
      writeFiles(dir, { "nginx.conf": conf });
      const pidName = /pid (\S+);/.exec(conf)![1]!;
      if (pidText !== undefined) writeFiles(dir, { [pidName]: pidText });
      for (const sig of ["reload", "stop"]) {
        const r = both(dir, ["-s", sig]);
        assert.equal(r.postern.stderr, r.nginx.stderr, `${pidName} ${sig}`);
        assert.equal(r.postern.status, r.nginx.status);
        assert.equal(r.postern.status, 1);
      }
    }
  } finally {
    cleanup();
  }
});

test("user directive when not root: the same warning as nginx (both run as nobody)", () => {
  const { dir, cleanup } = tempDir();
  try {
    chmodSync(dir, 0o777);
    writeFiles(dir, { "nginx.conf": `${MAIL_MODULE}pid p.pid;\nuser nobody;\nevents {}\n` });
    const asNobody = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"];
    const common = ["-t", "-p", dir + "/", "-c", "nginx.conf"];
    const n = run("setpriv", [...asNobody, NGINX, ...common, "-e", join(dir, "n.log")]);
    const p = run("setpriv", [...asNobody, process.execPath, POSTERN, ...common, "-e", join(dir, "p.log")]);
    assert.match(p.stderr, /^nginx: \[warn\] the "user" directive makes sense only if the master process runs with super-user privileges, ignored in /);
    assert.equal(p.stderr, n.stderr);
    assert.equal(p.status, 0);
  } finally {
    cleanup();
  }
});

test("-e in a missing directory: alert, then the same failure as nginx", () => {
  const { dir, cleanup } = tempDir();
  try {
    writeFiles(dir, { "nginx.conf": `${MAIL_MODULE}pid p.pid;\nevents {}\n` });
    const args = ["-t", "-p", dir + "/", "-c", "nginx.conf", "-e", "/nonexistent-dir/e.log"];
    const n = run(NGINX, args);
    const p = postern(args);
    const strip = (s: string): string => s.replace(/^\S+ \S+ (\[\w+\]) \d+#\d+: /gm, "$1 ");
    assert.match(p.stderr, /^nginx: \[alert\] could not open error log file: open\(\) "\/nonexistent-dir\/e.log" failed \(2: No such file or directory\)\n/);
    assert.equal(strip(p.stderr), strip(n.stderr));
    assert.equal(p.status, n.status);
  } finally {
    cleanup();
  }
});

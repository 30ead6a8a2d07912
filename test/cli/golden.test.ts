/**
 * Configuration errors: the installed nginx 1.22.1 and Postern run `-t` on
 * the same file; stderr and exit code must be identical.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { MAIL_MODULE, both, tempDir, writeFiles } from "./run-helpers.js";

interface Case {
  readonly name: string;
  readonly conf: string;
  readonly files?: Readonly<Record<string, string>>;
  readonly globals?: string;
}

const M = MAIL_MODULE;
const CASES: readonly Case[] = [
  { name: "unknown directive", conf: `${M}events {}\nfoo bar;\n` },
  { name: "not allowed here", conf: `${M}events { daemon off; }\n` },
  { name: "not allowed here (events directive at top)", conf: `${M}worker_connections 10;\nevents {}\n` },
  { name: "too few arguments", conf: `${M}daemon;\nevents {}\n` },
  { name: "too many arguments", conf: `${M}worker_processes 1 2;\nevents {}\n` },
  { name: "error_log without arguments", conf: `${M}error_log;\nevents {}\n` },
  { name: "not terminated by ;", conf: `${M}daemon off {\n}\nevents {}\n` },
  { name: "no opening {", conf: `${M}events;\n` },
  { name: "unexpected }", conf: `${M}events {}\n}\n` },
  { name: "unexpected } after arguments", conf: `${M}events {}\ndaemon off }\n` },
  { name: "unexpected ;", conf: `${M}events {}\n;\n` },
  { name: "unexpected {", conf: `${M}events {}\n{\n` },
  { name: "eof expecting }", conf: `${M}events {\n` },
  { name: "eof expecting ; or }", conf: `${M}events {}\ndaemon off` },
  { name: "eof in quote", conf: `${M}events {}\npid "x.pid;\n` },
  { name: "char after quote", conf: `${M}events {}\npid "x.pid"x;\n` },
  { name: "duplicate flag", conf: `${M}daemon on;\ndaemon off;\nevents {}\n` },
  { name: "duplicate pid", conf: `${M}pid a.pid;\npid b.pid;\nevents {}\n` },
  { name: "duplicate events", conf: `${M}events {}\nevents {}\n` },
  { name: "duplicate worker_connections", conf: `${M}events { worker_connections 10; worker_connections 20; }\n` },
  { name: "bad flag", conf: `${M}master_process yes;\nevents {}\n` },
  { name: "bad worker_processes", conf: `${M}worker_processes many;\nevents {}\n` },
  { name: "bad worker_connections", conf: `${M}events { worker_connections 1k; }\n` },
  { name: "bad worker_rlimit_nofile", conf: `${M}worker_rlimit_nofile x;\nevents {}\n` },
  { name: "bad size", conf: `${M}worker_rlimit_core 1t;\nevents {}\n` },
  { name: "bad time", conf: `${M}worker_shutdown_timeout 1y;\nevents {}\n` },
  { name: "bad time order", conf: `${M}worker_shutdown_timeout 1s1m;\nevents {}\n` },
  { name: "bad msec in events", conf: `${M}events { accept_mutex_delay abc; }\n` },
  { name: "bad enum", conf: `${M}debug_points pause;\nevents {}\n` },
  { name: "bad event type", conf: `${M}events { use kqueue; }\n` },
  { name: "event type select (not built)", conf: `${M}events { use select; }\n` },
  { name: "bad cpu affinity", conf: `${M}worker_cpu_affinity 0101 xx;\nevents {}\n` },
  { name: "cpu affinity auto with two masks", conf: `${M}worker_cpu_affinity auto 01 10;\nevents {}\n` },
  { name: "error_log syslog bad port", conf: `${M}error_log syslog:server=[::1]:99999;\nevents {}\n` },
  { name: "error_log syslog no host", conf: `${M}error_log syslog:server=:5;\nevents {}\n` },
  { name: "error_log syslog duplicate server", conf: `${M}error_log syslog:server=127.0.0.1,server=127.0.0.2;\nevents {}\n` },
  { name: "bad events flag", conf: `${M}events { multi_accept maybe; }\n` },
  { name: "include missing", conf: `${M}events {}\ninclude missing.conf;\n` },
  { name: "include arguments", conf: `${M}events {}\ninclude a b;\n` },
  { name: "include error inside", conf: `${M}include inc.conf;\nevents {}\n`, files: { "inc.conf": "daemon off;\nbogus;\n" } },
  { name: "include glob no match is fine", conf: `${M}pid nginx.pid;\ninclude nomatch/*.conf;\nevents {}\n` },
  { name: "include glob with error", conf: `${M}include g*.conf;\nevents {}\n`, files: { "g1.conf": "daemon off;\n", "g2.conf": "daemon on;\n" } },
  { name: "events missing", conf: `${M}daemon off;\n` },
  { name: "events missing (empty file)", conf: `` },
  { name: "load_module too late", conf: `events {}\n${M}` },
  { name: "load_module twice", conf: `${M}${M}events {}\n` },
  { name: "load_module arguments", conf: `load_module;\nevents {}\n` },
  { name: "error_log invalid level", conf: `${M}error_log e.log loud;\nevents {}\n` },
  { name: "error_log duplicate level", conf: `${M}error_log e.log info warn;\nevents {}\n` },
  { name: "error_log debug after sub-level", conf: `${M}error_log e.log debug_mail debug;\nevents {}\n` },
  { name: "error_log sub-level after level", conf: `${M}error_log e.log error debug_mail;\nevents {}\n` },
  { name: "error_log syslog without server", conf: `${M}error_log syslog:tag=x;\nevents {}\n` },
  { name: "error_log syslog bad facility", conf: `${M}error_log syslog:server=127.0.0.1,facility=nope;\nevents {}\n` },
  { name: "error_log syslog bad parameter", conf: `${M}error_log syslog:server=127.0.0.1,foo=1;\nevents {}\n` },
  { name: "error_log syslog bad tag", conf: `${M}error_log syslog:server=127.0.0.1,tag=a-b;\nevents {}\n` },
  { name: "error_log file not openable", conf: `${M}pid nginx.pid;\nerror_log /nonexistent-dir/e.log;\nevents {}\n` },
  { name: "pid directory missing", conf: `${M}pid /nonexistent-dir/x.pid;\nevents {}\n` },
  { name: "unknown user", conf: `${M}user nosuchuser-x;\nevents {}\n` },
  { name: "unknown group", conf: `${M}user nobody nosuchgroup-x;\nevents {}\n` },
  { name: "user arguments", conf: `${M}user a b c;\nevents {}\n` },
  {
    name: "everything accepted",
    conf:
      `${M}pid nginx.pid;\nuser nobody nogroup;\nworker_processes auto;\ndaemon off;\nmaster_process on;\nerror_log e.log info;\nerror_log stderr;\n` +
      `worker_rlimit_nofile 1024;\nworker_rlimit_core 10m;\nworker_priority -5;\nworker_cpu_affinity auto;\nworking_directory /tmp;\n` +
      `lock_file lock;\ntimer_resolution 100ms;\npcre_jit on;\ndebug_points abort;\nworker_shutdown_timeout 10s;\nenv TZ;\nenv FOO=bar;\n` +
      `events {\n  worker_connections 100;\n  use epoll;\n  multi_accept on;\n  accept_mutex off;\n  accept_mutex_delay 100ms;\n  debug_connection 127.0.0.1;\n  worker_aio_requests 32;\n}\n`,
  },
  { name: "-g unknown directive", conf: `${M}events {}\n`, globals: "foo;" },
  { name: "-g bad value", conf: `${M}events {}\n`, globals: "daemon of;" },
  { name: "-g block", conf: `${M}events {}\n`, globals: "events {}" },
  { name: "-g duplicate with file", conf: `${M}daemon off;\nevents {}\n`, globals: "daemon on;" },
  { name: "-g not terminated", conf: `${M}events {}\n`, globals: "daemon off" },
  { name: "-g fine", conf: `${M}events {}\n`, globals: "pid nginx.pid; daemon off;" },
];

for (const c of CASES) {
  test(`nginx and Postern agree: ${c.name}`, () => {
    const { dir, cleanup } = tempDir();
    try {
      writeFiles(dir, { "nginx.conf": c.conf, ...(c.files ?? {}) });
      const r = both(dir, ["-t"], c.globals === undefined ? [] : ["-g", c.globals]);
      assert.equal(r.postern.stderr, r.nginx.stderr);
      assert.equal(r.postern.status, r.nginx.status);
      // cases meant to pass must really pass (not fail identically)
      assert.equal(r.postern.status, /fine|accepted/.test(c.name) ? 0 : 1);
      // the message also reaches the -e log (same text after the timestamp part)
      const strip = (s: string): string => s.replace(/^\S+ \S+ (\[\w+\]) \d+#\d+: /gm, "$1 ");
      assert.equal(strip(readFileSync(join(dir, "postern-err.log"), "utf8")), strip(readFileSync(join(dir, "nginx-err.log"), "utf8")));
    } finally {
      cleanup();
    }
  });
}

/**
 * The access logs of one configuration generation in one process: every
 * destination opened once (servers naming the same file share it), each
 * server's sink, and the session-record factory the session core calls
 * (session-services.ts `observe`). A server without access_log in a process
 * without metrics gets no record: its sessions pay nothing.
 */
import type { ErrorLog } from "../../core/log.js";
import { metrics } from "../../event/metrics.js";
import type { MailServer } from "../server.js";
import { type SessionSink, SessionEvents } from "../session-events.js";
import type { ObservedSession } from "../session-services.js";
import { conditionHolds, renderFormat } from "./format.js";
import { accessLog, accessLogTargets, type MetricsListen, metricsListen } from "./module.js";
import type { ParsedConf } from "../../conf/engine.js";
import { mailDirective } from "../block.js";
import { sniGroupOf } from "../sni-groups.js";
import { AccessLogFile, AccessLogSyslog, type AccessLogWriter } from "./writer.js";

/** Opened access logs and the per-server sinks. */
export class AccessLogs {
  readonly #files = new Map<string, AccessLogWriter>();
  readonly #syslogs: AccessLogWriter[] = [];
  readonly #sinks = new Map<MailServer, SessionSink>();

  /** Opens every file (throws nginx's open() message); `errorLog(server)` is where a server's write failures go. */
  constructor(servers: readonly MailServer[], errorLog: (server: MailServer) => ErrorLog) {
    for (const server of servers) {
      const targets = accessLogTargets(server.conf.get(accessLog));
      if (targets.length === 0) continue;
      const outputs = targets.map((t) => {
        let writer: AccessLogWriter;
        if (t.kind === "syslog") {
          writer = new AccessLogSyslog(t.syslog);
          this.#syslogs.push(writer);
        } else {
          let file = this.#files.get(t.path);
          if (!file) {
            file = new AccessLogFile(t.path, t.buffer, () => errorLog(server));
            this.#files.set(t.path, file);
          }
          writer = file;
        }
        return { writer, format: t.format, condition: t.condition };
      });
      this.#sinks.set(server, (facts) => {
        const now = Date.now();
        for (const o of outputs) if (!o.condition || conditionHolds(o.condition, facts, now)) o.writer.write(renderFormat(o.format, facts, now));
      });
    }
  }

  readonly #sinkOf = (server: MailServer): SessionSink | undefined => this.#sinks.get(server);

  /**
   * The record for a new session, or undefined when nothing observes it:
   * no metrics, and no access log on its server nor, on an address servers
   * share, on any server SNI may choose.
   */
  observe(session: ObservedSession): SessionEvents | undefined {
    if (!metrics.enabled && !this.#sinks.has(session.server) && !sniGroupOf(session.listen)?.servers.some((s) => this.#sinks.has(s))) return undefined;
    return new SessionEvents(session, this.#sinkOf);
  }

  /** USR1: flushes and reopens every file; returns the failures (each keeps its old file). */
  reopen(): string[] {
    const failures: string[] = [];
    for (const f of this.#files.values()) {
      try {
        f.reopen();
      } catch (err) {
        failures.push(err instanceof Error ? err.message : String(err));
      }
    }
    return failures;
  }

  /** Writes what is buffered (a worker about to exit). */
  flush(): void {
    for (const f of this.#files.values()) f.flush();
  }

  close(): void {
    for (const f of [...this.#files.values(), ...this.#syslogs]) f.close();
  }
}

/** The files the servers' access logs name (the master prepares them for the workers on USR1). */
export function accessLogFiles(servers: readonly MailServer[]): string[] {
  const paths = new Set<string>();
  for (const server of servers) for (const t of accessLogTargets(server.conf.get(accessLog))) if (t.kind === "file") paths.add(t.path);
  return [...paths];
}

/** The `metrics_listen` of a configuration, if any. */
export function metricsListenOf(conf: ParsedConf): MetricsListen | undefined {
  return conf.main.get(mailDirective)?.level.own(metricsListen);
}

/**
 * PROVISIONAL mail runtime, written for the process layer's tests only. The
 * integrator replaces this whole file at merge with the real mail side; the
 * process layer depends only on the exported interface below
 * (ListenEndpoint, listenEndpoints, MailService) and on `provisionalMailModule`
 * being listed in src/modules.ts (to be replaced by the real mail modules).
 */
import type { Socket } from "node:net";
import { ConfError } from "../core/errors.js";
import type { ErrorLog } from "../core/log.js";
import { markModulesUsed } from "../core/core-module.js";
import { type ConfModule, Level, take, noArgs } from "../conf/directive.js";
import { custom, string } from "../conf/slots.js";
import type { ParsedConf } from "../conf/engine.js";

/** One listening address. */
export interface ListenEndpoint {
  readonly key: string;
  readonly host: string;
  readonly port: number;
  readonly path?: string;
  readonly backlog: number;
  readonly ipv6Only: boolean;
  readonly text: string;
}

const listen = custom<readonly ListenEndpoint[]>({
  name: "listen", contexts: ["server"], args: take(1), syntax: "address:port",
  defaultValue: [], defaultText: "—", merge: "none", duplicates: "accumulate", doc: "provisional",
  parse(args, prev) {
    const a = args[0]!;
    let ep: ListenEndpoint;
    if (a.startsWith("unix:")) {
      ep = { key: a, host: "", port: 0, path: a.slice(5), backlog: 511, ipv6Only: false, text: a };
    } else {
      const m = /^(?:([^:]+):)?(\d+)$/.exec(a);
      if (!m) throw new ConfError(`invalid port in "${a}" of the "listen" directive`);
      const host = m[1] ?? "0.0.0.0";
      ep = { key: `${host}:${m[2]}`, host, port: Number(m[2]), backlog: 511, ipv6Only: false, text: `${host}:${m[2]}` };
    }
    return [...(prev ?? []), ep];
  },
});

/** nginx's `imap_capabilities` (simplified), so tests can see which configuration a worker serves. */
const capabilities = custom<readonly string[]>({
  name: "imap_capabilities", contexts: ["mail", "server"], args: { kind: "atLeast", min: 1 }, syntax: "extension ...",
  defaultValue: ["IMAP4", "IMAP4rev1", "UIDPLUS"], defaultText: "IMAP4 IMAP4rev1 UIDPLUS", merge: "list", duplicates: "accumulate", doc: "provisional",
  parse: (args, prev) => [...(prev ?? []), ...args],
});

const server = custom<readonly Level[]>({
  name: "server", contexts: ["mail"], args: noArgs, block: true, syntax: "{ ... }",
  defaultValue: [], defaultText: "—", merge: "none", duplicates: "accumulate", doc: "provisional",
  parse(_a, prev, cx) {
    const level = new Level("server", cx.location);
    cx.parseBlock("server", level);
    return [...(prev ?? []), level];
  },
});

const mail = custom<Level | undefined>({
  name: "mail", contexts: ["main"], args: noArgs, block: true, syntax: "{ ... }",
  defaultValue: undefined, defaultText: "—", doc: "provisional",
  parse(_a, _prev, cx) {
    markModulesUsed(cx);
    const level = new Level("mail", cx.location);
    cx.parseBlock("mail", level);
    return level;
  },
});

const protocol = string("protocol", "imap", { contexts: ["server"], doc: "provisional" });
const authHttp = string("auth_http", undefined, { contexts: ["mail", "server"], doc: "provisional" });

/** PROVISIONAL: replaced by the real mail modules at merge. */
export const provisionalMailModule: ConfModule = { name: "mail-provisional", directives: [mail, server, listen, capabilities, protocol, authHttp] };

/** Every listening address of the configuration, deduplicated by key. */
export function listenEndpoints(conf: ParsedConf): ListenEndpoint[] {
  const m = conf.main.own(mail);
  const out = new Map<string, ListenEndpoint>();
  for (const s of m?.get(server) ?? []) for (const e of s.get(listen)) if (!out.has(e.key)) out.set(e.key, e);
  return [...out.values()];
}

/** PROVISIONAL: greets and answers NOOP, CAPABILITY and LOGOUT as nginx's IMAP side does; counts sessions. */
export class MailService {
  readonly #log: ErrorLog;
  readonly #capabilities: string;
  readonly #sockets = new Set<Socket>();
  readonly #idle: (() => void)[] = [];
  #accepting = true;

  constructor(conf: ParsedConf, log: ErrorLog) {
    this.#log = log;
    const m = conf.main.own(mail);
    this.#capabilities = (m?.get(capabilities) ?? capabilities.defaultValue).join(" ");
  }

  accept(socket: Socket, endpoint: ListenEndpoint): void {
    if (!this.#accepting) {
      socket.destroy();
      return;
    }
    this.#sockets.add(socket);
    this.#log.info(`client ${socket.remoteAddress}:${socket.remotePort} connected to ${endpoint.text}`);
    socket.write("* OK IMAP4 ready\r\n");
    let buf = "";
    socket.on("data", (d) => {
      buf += d.toString("latin1");
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i).replace(/\r$/, "");
        buf = buf.slice(i + 1);
        const [tag, cmd] = line.split(" ");
        const verb = cmd?.toUpperCase();
        if (verb === "LOGOUT") socket.end(`* BYE\r\n${tag} OK completed\r\n`);
        else if (verb === "CAPABILITY") socket.write(`* CAPABILITY ${this.#capabilities}\r\n${tag} OK completed\r\n`);
        else socket.write(`${tag} ${verb === "NOOP" ? "OK completed" : "BAD invalid command"}\r\n`);
      }
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      this.#sockets.delete(socket);
      if (this.#sockets.size === 0) for (const cb of this.#idle) cb();
    });
  }

  stopAccepting(): void {
    this.#accepting = false;
  }

  closeProxied(): void {
    for (const s of this.#sockets) s.destroy();
  }

  closeAll(): void {
    for (const s of this.#sockets) s.destroy();
  }

  get sessions(): number {
    return this.#sockets.size;
  }

  onIdle(cb: () => void): void {
    this.#idle.push(cb);
  }

  reopenLogs(): void {
    this.#log.reopen();
  }
}

/**
 * A real Dovecot (IMAP + POP3, no TLS) in a temp dir, for end-to-end tests.
 *
 * Running under root: the dovecot master starts as root (it must, to switch
 * users), with every path (base_dir, state_dir, log, passwd-file, maildirs)
 * inside the temp dir, which is made world-traversable (0755) so the
 * unprivileged processes can reach it:
 * - login processes run as `dovenull` (default_login_user) and auth/stats as
 *   `dovecot` (default_internal_user), the Debian package's system users;
 * - mail processes run as the system user `mail` (uid/gid 8), given per user
 *   in the passwd-file; `first_valid_uid/gid = 8` allows that low uid
 *   (Dovecot refuses uid 0 and, by default, uids below 500);
 * - the maildirs are chowned to `mail`.
 * Not root (fallback, checked as uid 65534): every service runs as the current
 * user and group (default_login_user/default_internal_user/_group), the login
 * and anvil services without chroot, and the files are simply ours.
 * `dovecot -F -c CONF` keeps it in the foreground as our child; SIGTERM stops it.
 * Note: after a failed login, anvil delays the next authentication from the
 * same address by about 2 s (auth penalty; auth_failure_delay is set to 0
 * but does not cover this); order tests so failures come last.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { makeMessage } from "./fake-backend.js";
import { listeningPorts } from "./ports.js";

/** A mailbox user; the login is `name` (e.g. `test@example.com`). */
export interface DovecotUser {
  name: string;
  password: string;
}

/** Options for startDovecot(). */
export interface DovecotOptions {
  imapPort: number;
  pop3Port: number;
  /** Default: one user `test@example.com` / `secret`. */
  users?: DovecotUser[];
  startTimeoutMs?: number;
  /** Lines appended to dovecot.conf (e.g. `login_trusted_networks`, `imap_id_log`). */
  extraConfig?: string;
  /** Dovecot's own TLS: `ssl = required` (a plaintext login fails), STARTTLS on imapPort/pop3Port, implicit TLS on these. */
  tls?: DovecotTls;
  /**
   * Listen address (default 127.0.0.1). Dovecot counts a connection whose two
   * ends have the same address as secured; 127.0.0.2 (reached from 127.0.0.1)
   * makes `ssl = required` apply to the proxy.
   */
  address?: string;
}

/** Dovecot's TLS: certificate and key files, and the implicit-TLS ports. */
export interface DovecotTls {
  cert: string;
  key: string;
  imapsPort: number;
  pop3sPort: number;
}

/** A running Dovecot. */
export interface Dovecot {
  dir: string;
  imapPort: number;
  pop3Port: number;
  users: DovecotUser[];
  /** Content of Dovecot's log file. */
  log(): string;
  /** Puts a message into `user`'s INBOX (maildir new/); returns the file path. */
  deliver(user: string, message: string | Buffer): string;
  /** Puts a generated message of exactly `size` bytes (CRLF lines) into `user`'s INBOX; returns its text. */
  deliverSized(user: string, size: number): string;
  /** Stops Dovecot (TERM, then KILL) and removes the temp dir. */
  stop(): Promise<void>;
}

/** Running as root: mail processes and maildirs belong to the `mail` system user (uid/gid 8). */
const AS_ROOT = process.getuid?.() === 0;
const MAIL_UID = AS_ROOT ? 8 : process.getuid!();
const MAIL_GID = AS_ROOT ? 8 : process.getgid!();
/** Not root: Dovecot cannot switch users, so every service runs as the current user. */
const LOGIN_USER = AS_ROOT ? "dovenull" : os.userInfo().username;
const INTERNAL_USER = AS_ROOT ? "dovecot" : os.userInfo().username;
/** Group given to Dovecot's unix sockets; it must be one of ours when not root. */
const INTERNAL_GROUP = AS_ROOT ? "dovecot" : execFileSync("id", ["-gn"]).toString().trim();

/** chown that is skipped when not root (the files are ours already). */
function chownMail(file: string): void {
  if (AS_ROOT) chownSync(file, MAIL_UID, MAIL_GID);
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of live) c.kill("SIGKILL");
});

function userHome(dir: string, user: string): string {
  return path.join(dir, "home", user.replace(/[^A-Za-z0-9.@_-]/g, "_"));
}

/** Only root may chroot; otherwise the login and anvil services run unchrooted. */
const CHROOT = AS_ROOT ? "" : "\n  chroot =";

/** Builds the dovecot.conf text for a temp dir. */
export function dovecotConfig(dir: string, imapPort: number, pop3Port: number, tls?: DovecotTls, address = "127.0.0.1"): string {
  const ssl = tls ? `ssl = required\nssl_cert = <${tls.cert}\nssl_key = <${tls.key}\ndisable_plaintext_auth = yes` : "ssl = no\ndisable_plaintext_auth = no";
  const imaps = tls ? `address = ${address}\n    port = ${tls.imapsPort}` : "port = 0";
  const pop3s = tls ? `address = ${address}\n    port = ${tls.pop3sPort}` : "port = 0";
  return `
protocols = imap pop3
listen = ${address}
base_dir = ${dir}/run
state_dir = ${dir}/state
instance_name = dovecot-${path.basename(dir)}
log_path = ${dir}/dovecot.log
info_log_path = ${dir}/dovecot.log
${ssl}
auth_mechanisms = plain login
# Tests log in with wrong passwords on purpose; the default 2 s penalty only slows them down.
auth_failure_delay = 0
default_login_user = ${LOGIN_USER}
default_internal_user = ${INTERNAL_USER}
default_internal_group = ${INTERNAL_GROUP}
first_valid_uid = ${MAIL_UID}
first_valid_gid = ${MAIL_GID}
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${dir}/users
}
userdb {
  driver = passwd-file
  args = username_format=%u ${dir}/users
}
service imap-login {${CHROOT}
  inet_listener imap {
    address = ${address}
    port = ${imapPort}
  }
  inet_listener imaps {
    ${imaps}
  }
}
service pop3-login {${CHROOT}
  inet_listener pop3 {
    address = ${address}
    port = ${pop3Port}
  }
  inet_listener pop3s {
    ${pop3s}
  }
}
service anvil {${CHROOT}
}
service stats {
  unix_listener stats-reader {
    mode = 0666
  }
  unix_listener stats-writer {
    mode = 0666
  }
}
`;
}

/** Starts Dovecot in the foreground with its own config and waits until both ports listen. */
export async function startDovecot(options: DovecotOptions): Promise<Dovecot> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "postern-dovecot-"));
  chmodSync(dir, 0o755);
  const users = options.users ?? [{ name: "test@example.com", password: "secret" }];
  mkdirSync(path.join(dir, "run"));
  mkdirSync(path.join(dir, "state"));
  mkdirSync(path.join(dir, "home"));
  const lines: string[] = [];
  for (const u of users) {
    const home = userHome(dir, u.name);
    for (const sub of ["", "Maildir", "Maildir/new", "Maildir/cur", "Maildir/tmp"]) {
      mkdirSync(path.join(home, sub), { recursive: true });
      chownMail(path.join(home, sub));
    }
    lines.push(`${u.name}:{PLAIN}${u.password}:${MAIL_UID}:${MAIL_GID}::${home}::`);
  }
  writeFileSync(path.join(dir, "users"), lines.join("\n") + "\n", { mode: 0o644 });
  const conf = path.join(dir, "dovecot.conf");
  writeFileSync(conf, dovecotConfig(dir, options.imapPort, options.pop3Port, options.tls, options.address) + (options.extraConfig ?? ""));

  const child = spawn("dovecot", ["-F", "-c", conf], { stdio: ["ignore", "pipe", "pipe"] });
  live.add(child);
  let output = "";
  child.stdout.on("data", (d: Buffer) => {
    output += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    output += d.toString();
  });
  let exited = false;
  const done = new Promise<void>((resolve) =>
    child.on("exit", () => {
      exited = true;
      live.delete(child);
      resolve();
    }),
  );
  const log = (): string => {
    try {
      return readFileSync(path.join(dir, "dovecot.log"), "utf8");
    } catch {
      return "";
    }
  };

  const cleanup = (): void => {
    if (!process.env.POSTERN_KEEP_TMP) rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + (options.startTimeoutMs ?? 10000);
  for (;;) {
    if (exited) {
      const text = log();
      cleanup();
      throw new Error(`dovecot exited during start-up:\n${output}\n${text}`);
    }
    const listening = listeningPorts();
    const tlsPorts = options.tls ? [options.tls.imapsPort, options.tls.pop3sPort] : [];
    if ([options.imapPort, options.pop3Port, ...tlsPorts].every((p) => listening.has(p))) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      const text = log();
      await done;
      cleanup();
      throw new Error(`dovecot not listening after start timeout:\n${output}\n${text}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }

  let seq = 0;
  const dovecot: Dovecot = {
    dir,
    imapPort: options.imapPort,
    pop3Port: options.pop3Port,
    users,
    log,
    deliver(user: string, message: string | Buffer): string {
      const name = `${Date.now()}.P${process.pid}Q${seq++}.postern-test`;
      const tmp = path.join(userHome(dir, user), "Maildir", "tmp", name);
      const dest = path.join(userHome(dir, user), "Maildir", "new", name);
      writeFileSync(tmp, typeof message === "string" ? message : message.toString("latin1"), "latin1");
      chownMail(tmp);
      // Maildir delivery: write in tmp/, then rename into new/, so Dovecot never sees a partial file.
      renameSync(tmp, dest);
      return dest;
    },
    deliverSized(user: string, size: number): string {
      const message = makeMessage(size);
      dovecot.deliver(user, message);
      return message;
    },
    async stop(): Promise<void> {
      if (!exited) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
        await done;
        clearTimeout(timer);
      }
      if (!process.env.POSTERN_KEEP_TMP) rmSync(dir, { recursive: true, force: true });
    },
  };
  return dovecot;
}

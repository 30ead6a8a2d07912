/**
 * `postern auth-server` and `postern passwd`: run the reference auth
 * service, and add or replace a user in its users file.
 */
import { readFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { Writable } from "node:stream";
import { replaceFileAtomically } from "./atomic-file.js";
import { startAuthServer } from "./server.js";
import { type Backend, UsersFileError, hashPassword, parseBackend, parseBackends, parseUsers, upsertUser } from "./users.js";

const AUTH_SERVER_USAGE = "usage: postern auth-server --users FILE [--listen ADDR:PORT] [--wait N] [--relay ADDR:PORT]";
const PASSWD_USAGE = "usage: postern passwd [--clear] FILE USER BACKEND...";

/** Where the commands write; tests replace it. */
export interface CliIo {
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  /** Resolves when the service should stop (default: SIGINT or SIGTERM). */
  readonly stopped?: Promise<void>;
}

function defaultIo(): CliIo {
  return { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr };
}

function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      process.off("SIGINT", done);
      process.off("SIGTERM", done);
      resolve();
    };
    process.on("SIGINT", done);
    process.on("SIGTERM", done);
  });
}

/**
 * Runs the auth service until SIGINT/SIGTERM. Options: `--listen
 * 127.0.0.1:9000` (default), `--users FILE` (required), `--wait N`
 * (Auth-Wait after a failure, default 3), `--relay ADDR:PORT` (backend for
 * SMTP without authentication). Returns the exit code.
 */
export async function runAuthServer(argv: readonly string[], io: CliIo = defaultIo()): Promise<number> {
  let listen = "127.0.0.1:9000";
  let users: string | undefined;
  let wait = 3;
  let relay: Backend | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = argv[i + 1];
    if ((a === "--listen" || a === "--users" || a === "--wait" || a === "--relay") && value === undefined) {
      io.stderr.write(`postern auth-server: option "${a}" needs a value\n${AUTH_SERVER_USAGE}\n`);
      return 2;
    }
    if (a === "--listen") listen = value!;
    else if (a === "--users") users = value!;
    else if (a === "--wait") {
      if (!/^[0-9]+$/.test(value!)) {
        io.stderr.write(`postern auth-server: invalid --wait "${value}"\n`);
        return 2;
      }
      wait = Number(value);
    } else if (a === "--relay") {
      relay = parseBackend(value!);
      if (!relay) {
        io.stderr.write(`postern auth-server: invalid --relay "${value}" (expected numeric host:port)\n`);
        return 2;
      }
    } else {
      io.stderr.write(`postern auth-server: unknown option "${a}"\n${AUTH_SERVER_USAGE}\n`);
      return 2;
    }
    i++;
  }
  if (users === undefined) {
    io.stderr.write(`postern auth-server: --users is required\n${AUTH_SERVER_USAGE}\n`);
    return 2;
  }
  // Port 0 is allowed here: the kernel picks one, and the address is printed.
  const parsed = parseBackend(listen.replace(/:0$/, ":1"));
  const at = parsed && listen.endsWith(":0") ? { ...parsed, port: 0 } : parsed;
  if (!at) {
    io.stderr.write(`postern auth-server: invalid --listen "${listen}" (expected numeric host:port)\n`);
    return 2;
  }
  try {
    parseUsers(await readFile(users, "utf8"));
  } catch (e) {
    io.stderr.write(`postern auth-server: cannot load users file "${users}": ${(e as Error).message}\n`);
    return 1;
  }
  let server;
  try {
    server = await startAuthServer({ usersFile: users, wait, relay, log: (line) => io.stderr.write(`postern auth-server: ${line}\n`) }, at.host, at.port);
  } catch (e) {
    io.stderr.write(`postern auth-server: cannot listen on ${listen}: ${(e as Error).message}\n`);
    return 1;
  }
  const a = server.address;
  io.stdout.write(`postern auth-server listening on ${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}\n`);
  await (io.stopped ?? untilSignal());
  await server.close();
  return 0;
}

/**
 * `postern passwd [--clear] FILE USER BACKEND...`: reads the password
 * (prompting without echo on a TTY, else one line of stdin) and adds or
 * replaces USER in FILE. BACKEND words are joined with commas
 * (`imap=127.0.0.1:143 smtp=127.0.0.1:25`). `--clear` also stores the
 * clear-text secret needed for APOP and CRAM-MD5. Returns the exit code.
 */
export async function runPasswd(argv: readonly string[], io: CliIo = defaultIo()): Promise<number> {
  const args = [...argv];
  let clear = false;
  if (args[0] === "--clear") {
    clear = true;
    args.shift();
  }
  if (args.length < 3) {
    io.stderr.write(`${PASSWD_USAGE}\n`);
    return 2;
  }
  const [file, login, ...backendWords] = args as [string, string, ...string[]];
  if (login === "" || login.includes(":") || /[\s\x00-\x1f]/.test(login)) {
    io.stderr.write(`postern passwd: invalid user name "${login}"\n`);
    return 2;
  }
  let backends;
  try {
    backends = parseBackends(backendWords.join(","));
  } catch (e) {
    io.stderr.write(`postern passwd: ${(e as UsersFileError).message}\n`);
    return 2;
  }
  const password = await readPassword(io);
  if (password === undefined || password === "") {
    io.stderr.write("postern passwd: no password given\n");
    return 1;
  }
  let text = "";
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") {
      io.stderr.write(`postern passwd: cannot read "${file}": ${(e as Error).message}\n`);
      return 1;
    }
  }
  const secret = Buffer.from(password, "utf8");
  const updated = upsertUser(text, { login, hash: hashPassword(secret), backends, clear: clear ? secret : undefined });
  // an exclusive, randomly named sibling renamed over the file: never half a file, no symlink followed
  try {
    await replaceFileAtomically(file, updated, 0o600);
  } catch (e) {
    io.stderr.write(`postern passwd: cannot write "${file}": ${(e as Error).message}\n`);
    return 1;
  }
  io.stdout.write(`postern passwd: user "${login}" saved in ${file}\n`);
  return 0;
}

/** One line of input; on a TTY, prompted on stderr and not echoed. */
function readPassword(io: CliIo): Promise<string | undefined> {
  const tty = io.stdin.isTTY === true;
  if (tty) io.stderr.write("Password: ");
  // On a TTY nothing typed is echoed: output goes to a sink.
  const output = tty ? new Writable({ write: (_c, _e, cb) => cb() }) : undefined;
  const rl = createInterface({ input: io.stdin, output, terminal: tty });
  return new Promise((resolve) => {
    let answered = false;
    rl.once("line", (line) => {
      answered = true;
      if (tty) io.stderr.write("\n");
      rl.close();
      resolve(line);
    });
    rl.once("close", () => {
      if (!answered) resolve(undefined);
    });
  });
}

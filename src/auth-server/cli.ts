/**
 * `postern auth-server` and `postern passwd`: run the reference auth
 * service, and add or replace a user in its users file.
 */
import { readFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { Writable } from "node:stream";
import { replaceFileAtomically } from "./atomic-file.js";
import { SECRET_HEADER, startAuthServer } from "./server.js";
import { OAUTH_OPTIONS, oauthSettings } from "./oauth-cli.js";
import {
  type Backend,
  DEFAULT_SCRYPT,
  type ScryptParams,
  UsersFileError,
  hashPasswordAsync,
  parseBackend,
  parseBackends,
  parseUsers,
  upsertUser,
} from "./users.js";

const AUTH_SERVER_USAGE =
  "usage: postern auth-server --users FILE [--listen ADDR:PORT] [--wait N] [--relay ADDR:PORT] [--secret-file FILE] [--scrypt-n N]" +
  " [--jwks FILE] [--introspect URL] [--introspect-credentials-file FILE] [--issuer ISS] [--audience AUD] [--user-claim NAME]";
const PASSWD_USAGE = "usage: postern passwd [--clear] [--scrypt-n N] FILE USER BACKEND...";

/**
 * `--scrypt-n N`: a power of two from 2^10 to 2^20. Below the default only
 * for tests and very small machines (docs/auth-server.md).
 */
function parseScryptN(text: string): ScryptParams | undefined {
  if (!/^[0-9]{1,8}$/.test(text)) return undefined;
  const n = Number(text);
  if (n < 2 ** 10 || n > 2 ** 20 || (n & (n - 1)) !== 0) return undefined;
  return { ...DEFAULT_SCRYPT, N: n };
}

/** The shared secret from a file: one line of 16 to 1024 visible ASCII characters (a header value nginx sends as is). */
async function readSecret(file: string): Promise<Buffer | string> {
  let text: string;
  try {
    text = await readFile(file, "latin1");
  } catch (e) {
    return `cannot read secret file "${file}": ${(e as Error).message}`;
  }
  const secret = text.replace(/\r?\n$/, "");
  if (!/^[\x21-\x7e]{16,1024}$/.test(secret)) {
    return `secret file "${file}" must hold one line of 16 to 1024 visible ASCII characters (no spaces)`;
  }
  return Buffer.from(secret, "latin1");
}

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
 * SMTP without authentication), `--secret-file FILE` (the X-Auth-Key every
 * request must carry; a file, because a command line is visible in ps),
 * `--scrypt-n N` (cost of rehashed entries). Returns the exit code.
 */
export async function runAuthServer(argv: readonly string[], io: CliIo = defaultIo()): Promise<number> {
  let listen = "127.0.0.1:9000";
  let users: string | undefined;
  let wait = 3;
  let relay: Backend | undefined;
  let secretFile: string | undefined;
  let scrypt: ScryptParams | undefined;
  const withValue = ["--listen", "--users", "--wait", "--relay", "--secret-file", "--scrypt-n", ...OAUTH_OPTIONS];
  const oauthArgs = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = argv[i + 1];
    if (withValue.includes(a) && value === undefined) {
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
    } else if (a === "--secret-file") {
      secretFile = value!;
    } else if (a === "--scrypt-n") {
      scrypt = parseScryptN(value!);
      if (!scrypt) {
        io.stderr.write(`postern auth-server: invalid --scrypt-n "${value}" (a power of two from 1024 to 1048576)\n`);
        return 2;
      }
    } else if (OAUTH_OPTIONS.includes(a)) {
      oauthArgs.set(a, value!);
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
  let secret: Buffer | undefined;
  if (secretFile !== undefined) {
    const got = await readSecret(secretFile);
    if (typeof got === "string") {
      io.stderr.write(`postern auth-server: ${got}\n`);
      return 1;
    }
    secret = got;
  } else {
    io.stderr.write(
      `postern auth-server: warning: no --secret-file: anyone who can reach ${listen} may ask, and the Client-IP used to limit failures is taken on trust\n`,
    );
  }
  const oauth = await oauthSettings(oauthArgs);
  if (typeof oauth === "string") {
    io.stderr.write(`postern auth-server: ${oauth}\n`);
    return oauth.startsWith("cannot") ? 1 : 2;
  }
  let server;
  try {
    const log = (line: string): void => void io.stderr.write(`postern auth-server: ${line}\n`);
    server = await startAuthServer({ usersFile: users, wait, relay, secret, scrypt, log, oauth }, at.host, at.port);
  } catch (e) {
    io.stderr.write(`postern auth-server: cannot listen on ${listen}: ${(e as Error).message}\n`);
    return 1;
  }
  const a = server.address;
  const requires = secret ? ` (requests must carry ${SECRET_HEADER})` : "";
  io.stdout.write(`postern auth-server listening on ${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}${requires}\n`);
  await (io.stopped ?? untilSignal());
  await server.close();
  return 0;
}

/**
 * `postern passwd [--clear] [--scrypt-n N] FILE USER BACKEND...`: reads the
 * password (prompting without echo on a TTY, else one line of stdin) and
 * adds or replaces USER in FILE. BACKEND words are joined with commas
 * (`imap=127.0.0.1:143 smtp=127.0.0.1:25`). `--clear` also stores the
 * clear-text secret needed for APOP and CRAM-MD5; `--scrypt-n` sets the
 * hash's cost (default DEFAULT_SCRYPT). Returns the exit code.
 */
export async function runPasswd(argv: readonly string[], io: CliIo = defaultIo()): Promise<number> {
  const args = [...argv];
  let clear = false;
  let scrypt = DEFAULT_SCRYPT;
  for (;;) {
    if (args[0] === "--clear") {
      clear = true;
      args.shift();
    } else if (args[0] === "--scrypt-n") {
      const parsed = parseScryptN(args[1] ?? "");
      if (!parsed) {
        io.stderr.write(`postern passwd: invalid --scrypt-n "${args[1] ?? ""}" (a power of two from 1024 to 1048576)\n${PASSWD_USAGE}\n`);
        return 2;
      }
      scrypt = parsed;
      args.splice(0, 2);
    } else break;
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
  const hash = await hashPasswordAsync(secret, scrypt);
  const updated = upsertUser(text, { login, hash, backends, clear: clear ? secret : undefined });
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

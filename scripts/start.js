#!/usr/bin/env node
// `npm start`: runs Postern with conf/postern.conf from the repository root,
// after making what a first start needs (a self-signed certificate, a
// users file for the reference auth service, and the secret Postern sends
// to it), and runs beside it that auth service and the demo mail backend
// (src/demo/: an in-memory mailbox for the demo user over IMAP, POP3 and
// SMTP, so a first login reads a welcome message). Ctrl-C stops all three.
// The demo backend is npm start's alone: the `postern` command never runs it.
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const conf = join(root, "conf");
const bin = join(root, "bin", "postern.js");

mkdirSync(join(root, "run"), { recursive: true });
mkdirSync(join(conf, "ssl"), { recursive: true });
const crt = join(conf, "ssl", "postern.crt");
const key = join(conf, "ssl", "postern.key");
if (!existsSync(crt) || !existsSync(key)) {
  console.log("postern: creating a self-signed certificate in conf/ssl/ (first start)");
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      key,
      "-out",
      crt,
      "-days",
      "825",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
}

// The demo mail backend's addresses; conf/users points the demo user at
// them on first start (`postern passwd` points it elsewhere later).
const demo = { imap: "127.0.0.1:10143", pop3: "127.0.0.1:10110", smtp: "127.0.0.1:10025" };
const users = join(conf, "users");
if (!existsSync(users)) {
  console.log(
    `postern: creating conf/users with the user demo@localhost (password: demo), mailbox on the demo mail backend (${demo.imap}, ${demo.pop3}, ${demo.smtp})`,
  );
  execFileSync(process.execPath, [bin, "passwd", users, "demo@localhost", `imap=${demo.imap}`, `pop3=${demo.pop3}`, `smtp=${demo.smtp}`], {
    input: "demo\n",
    stdio: ["pipe", "inherit", "inherit"],
  });
} else {
  // conf/users made before the demo backend existed points the demo user at
  // 127.0.0.1:143/110/25; say how to move it rather than rewrite the file
  const old = readFileSync(users, "latin1")
    .split("\n")
    .find((l) => l.startsWith("demo@localhost:"));
  if (old?.split(":").slice(2).join(":").startsWith("imap=127.0.0.1:143,pop3=127.0.0.1:110,smtp=127.0.0.1:25")) {
    console.log(`postern: conf/users points demo@localhost at 127.0.0.1:143/110/25 (made by an older npm start); for the demo mailbox run:
  node bin/postern.js passwd conf/users demo@localhost imap=${demo.imap} pop3=${demo.pop3} smtp=${demo.smtp}`);
  }
}

// The auth service answers only requests carrying this secret (X-Auth-Key),
// so nobody else who can reach its port can try passwords or forge the
// Client-IP its failure limit counts. It lives in a file (a command line is
// visible in ps); conf/postern.conf includes the auth_http_header line made
// from it, rewritten on every start so the two never disagree.
const secretFile = join(conf, "auth-http-key");
if (!existsSync(secretFile)) {
  console.log("postern: creating conf/auth-http-key, the secret Postern sends to the auth service (first start)");
  writeFileSync(secretFile, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600, flag: "wx" });
}
const secret = readFileSync(secretFile, "latin1").trim();
if (!/^[0-9a-f]{64}$/.test(secret)) {
  console.error("postern: conf/auth-http-key is not 64 hex digits; remove it to make a new one");
  process.exit(1);
}
writeFileSync(join(conf, "auth-http-key.conf"), `# made by npm start from conf/auth-http-key\nauth_http_header X-Auth-Key "${secret}";\n`, { mode: 0o600 });

const children = [
  spawn(
    process.execPath,
    [join(root, "dist", "src", "demo", "main.js"), "--imap", demo.imap, "--pop3", demo.pop3, "--smtp", demo.smtp, "--user", "demo@localhost"],
    { stdio: "inherit" },
  ),
  spawn(process.execPath, [bin, "auth-server", "--listen", "127.0.0.1:9180", "--users", users, "--secret-file", secretFile], { stdio: "inherit" }),
  spawn(process.execPath, [bin, "-p", `${root}/`, "-c", "conf/postern.conf"], { stdio: "inherit" }),
];
console.log("postern: IMAP 127.0.0.1:1143 (STARTTLS) and :1993 (TLS), POP3 :1110 and :1995, SMTP submission :1587 and :1465; log in as demo@localhost / demo");
let stopping = false;
function stop(signal) {
  if (stopping) return;
  stopping = true;
  for (const c of children) if (c.exitCode === null) c.kill(signal === "SIGINT" ? "SIGQUIT" : signal);
}
process.on("SIGINT", () => stop("SIGINT"));
process.on("SIGTERM", () => stop("SIGTERM"));
for (const c of children)
  c.on("exit", (code) => {
    if (!stopping) {
      console.error(`postern: a process exited (${code}); stopping`);
      stop("SIGTERM");
    }
    if (children.every((x) => x.exitCode !== null || x.signalCode !== null)) process.exit(code ?? 0);
  });

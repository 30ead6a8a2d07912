/**
 * The reference auth service behind the real nginx 1.22.1: a POP3 client
 * logs in through nginx, which asks our service, which picks the backend.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAuthServer, type RunningAuthServer } from "../../src/auth-server/server.js";
import { formatUserLine, hashPasswordAsync } from "../../src/auth-server/users.js";
import { freePort } from "../support/ports.js";

let dir = "";
let nginx: ChildProcess | undefined;
let auth: RunningAuthServer | undefined;
let backend: Server | undefined;
const backendSockets = new Set<Socket>();
const backendLines: string[] = [];
let pop3Port = 0;

/** Sends lines one by one, returning every line received, until the socket closes or `until` matches. */
async function pop3(lines: string[], until: RegExp): Promise<string[]> {
  const s = connect(pop3Port, "127.0.0.1");
  const got: string[] = [];
  let buffer = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`timeout; got ${JSON.stringify(got)}`));
    }, 5000);
    const finish = (): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(got);
    };
    s.on("data", (d) => {
      buffer += d.toString("latin1");
      let at: number;
      while ((at = buffer.indexOf("\r\n")) >= 0) {
        const line = buffer.slice(0, at);
        buffer = buffer.slice(at + 2);
        got.push(line);
        if (until.test(line)) return finish();
        const next = lines.shift();
        if (next !== undefined) s.write(`${next}\r\n`);
      }
    });
    s.on("close", finish);
    s.on("error", () => {});
  });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "postern-authe2e-"));
  backend = createServer((socket) => {
    backendSockets.add(socket);
    socket.on("close", () => backendSockets.delete(socket));
    socket.on("error", () => {});
    socket.write("+OK backend ready\r\n");
    let buffer = "";
    socket.on("data", (d) => {
      buffer += d.toString("latin1");
      let at: number;
      while ((at = buffer.indexOf("\r\n")) >= 0) {
        const line = buffer.slice(0, at);
        buffer = buffer.slice(at + 2);
        backendLines.push(line);
        socket.write(line === "STAT" ? "+OK 0 0\r\n" : "+OK\r\n");
      }
    });
  });
  await new Promise<void>((resolve) => backend!.listen(0, "127.0.0.1", resolve));
  const backendPort = (backend.address() as AddressInfo).port;
  const usersFile = join(dir, "users");
  writeFileSync(
    usersFile,
    formatUserLine({
      login: "alice@example.com",
      hash: await hashPasswordAsync("pa ss%word", { N: 1024, r: 8, p: 1 }),
      backends: { pop3: { host: "127.0.0.1", port: backendPort } },
    }) + "\n",
  );
  auth = await startAuthServer({ usersFile, wait: 0, scrypt: { N: 1024, r: 8, p: 1 }, log: () => {} }, "127.0.0.1", 0);
  pop3Port = await freePort();
  writeFileSync(
    join(dir, "nginx.conf"),
    `
load_module /usr/lib/nginx/modules/ngx_mail_module.so;
daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { }
mail {
    auth_http 127.0.0.1:${auth.address.port}/auth;
    server { listen 127.0.0.1:${pop3Port}; protocol pop3; }
}
`,
  );
  nginx = spawn("/usr/sbin/nginx", ["-p", `${dir}/`, "-c", "nginx.conf", "-e", `${dir}/error.log`], { stdio: "ignore" });
  const deadline = Date.now() + 5000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(pop3Port, "127.0.0.1");
      s.on("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > deadline) throw new Error("nginx did not start");
    await new Promise((r) => setTimeout(r, 50));
  }
});

after(async () => {
  if (nginx && nginx.exitCode === null) {
    const exited = new Promise((resolve) => nginx!.once("exit", resolve));
    nginx.kill("SIGTERM");
    await exited;
  }
  await auth?.close();
  for (const s of backendSockets) s.destroy();
  await new Promise<void>((resolve) => (backend ? backend.close(() => resolve()) : resolve()));
  rmSync(dir, { recursive: true, force: true });
});

test("nginx proxies a correct POP3 login to the user's backend with the same credentials", async () => {
  const got = await pop3(["USER alice@example.com", "PASS pa ss%word", "STAT"], /^\+OK 0 0$/);
  assert.deepEqual(got, ["+OK POP3 ready", "+OK", "+OK", "+OK 0 0"]);
  assert.deepEqual(backendLines.slice(0, 3), ["USER alice@example.com", "PASS pa ss%word", "STAT"]);
});

test("nginx shows our refusal to a wrong password and closes (no Auth-Wait)", async () => {
  const got = await pop3(["USER alice@example.com", "PASS nope"], /^-ERR/);
  assert.deepEqual(got, ["+OK POP3 ready", "+OK", "-ERR Invalid login or password"]);
});

/**
 * The bench's costly auth service: a node:http server (HTTP/1.1 keep-alive
 * as Node serves it, HTTP/1.0 with a close for nginx) that verifies every
 * Auth-Pass with scrypt (N=1024, r=8: a few milliseconds of CPU, what a
 * password hash costs a real auth service) before answering OK.
 *
 *   node dist/bench/auth-cost-server.js '{"port":N,"backend":N}'
 */
import { createServer } from "node:http";
import { scryptSync, timingSafeEqual } from "node:crypto";

const { port, backend } = JSON.parse(process.argv[2] ?? "{}") as { port: number; backend: number };
const SALT = Buffer.from("postern-bench-salt");
const PARAMS = { N: 1024, r: 8, p: 1 };
// the bench logs in as user/secret (bench/loadgen/mailload.c)
const stored = scryptSync("secret", SALT, 32, PARAMS);

const server = createServer((req, res) => {
  const pass = decodeURIComponent(String(req.headers["auth-pass"] ?? ""));
  const ok = timingSafeEqual(scryptSync(pass, SALT, 32, PARAMS), stored);
  if (ok) {
    res.setHeader("Auth-Status", "OK");
    res.setHeader("Auth-Server", "127.0.0.1");
    res.setHeader("Auth-Port", String(backend));
  } else {
    res.setHeader("Auth-Status", "Invalid login or password");
  }
  res.end();
});
server.listen(port, "127.0.0.1");
process.on("SIGTERM", () => process.exit(0));

/**
 * The Node floor: the least a mail proxy written on Node's `net` and `tls`
 * can do for each benchmark workload, so the table can tell what Postern
 * adds from what Node itself costs. It is not a mail proxy: no config, no
 * parser beyond finding a line's end, no timeouts, no logging, no checks.
 *
 *  - implicit TLS ports: tls.Server with an in-process session cache, the
 *    IMAP greeting after the handshake;
 *  - the plain port: greeting, STARTTLS upgrade, CAPABILITY;
 *  - a LOGIN line: one auth_http request on a new connection (as nginx and
 *    Postern do), then the backend: connect, greeting, LOGIN with the user
 *    name and password as literals (nginx's three steps), OK, and both
 *    sockets piped to each other.
 *
 *   node dist/bench/node-floor.js '{"imaps":P,"imapsRsa":P,"imap":P,"auth":P,"backend":P,"dir":"CERTDIR"}'
 */
import { readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { join } from "node:path";

interface FloorConfig {
  imaps: number;
  imapsRsa: number;
  imap: number;
  auth: number;
  backend: number;
  dir: string;
  pidFile: string;
}

const conf = JSON.parse(process.argv[2]!) as FloorConfig;
const GREETING = "* OK IMAP4 ready\r\n";
const cache = new Map<string, Buffer>();

function keyPair(name: "ec" | "rsa"): { key: Buffer; cert: Buffer } {
  return { key: readFileSync(join(conf.dir, `${name}.key`)), cert: readFileSync(join(conf.dir, `${name}.crt`)) };
}

/** Calls `onLine` for each CRLF line until it returns false. */
function lines(socket: net.Socket, onLine: (line: string) => boolean): void {
  let seen = "";
  const onData = (d: Buffer): void => {
    seen += d.toString("latin1");
    let eol: number;
    while ((eol = seen.indexOf("\r\n")) >= 0) {
      const line = seen.slice(0, eol);
      seen = seen.slice(eol + 2);
      if (!onLine(line)) {
        socket.off("data", onData);
        return;
      }
    }
  };
  socket.on("data", onData);
}

function authHttp(user: string, pass: string, done: () => void): void {
  const s = net.connect(conf.auth, "127.0.0.1");
  s.setNoDelay(true);
  s.on("error", () => s.destroy());
  s.write(`GET /auth HTTP/1.0\r\nHost: localhost\r\nAuth-Method: plain\r\nAuth-User: ${user}\r\nAuth-Pass: ${pass}\r\nAuth-Protocol: imap\r\n\r\n`);
  let reply = "";
  s.on("data", (d: Buffer) => {
    reply += d.toString("latin1");
    if (reply.includes("\r\n\r\n")) {
      s.destroy();
      done();
    }
  });
}

function login(client: net.Socket, tag: string, user: string, pass: string): void {
  authHttp(user, pass, () => {
    const backend = net.connect(conf.backend, "127.0.0.1");
    backend.setNoDelay(true);
    backend.on("error", () => client.destroy());
    client.on("error", () => backend.destroy());
    // LOGIN with literals, as nginx (and Postern) log in to an IMAP backend
    let step = 0;
    lines(backend, (line) => {
      switch (step++) {
        case 0:
          backend.write(`${tag} LOGIN {${Buffer.byteLength(user)}}\r\n`);
          return true;
        case 1:
          backend.write(`${user} {${Buffer.byteLength(pass)}}\r\n`);
          return true;
        case 2:
          backend.write(`${pass}\r\n`);
          return true;
      }
      if (!line.startsWith(`${tag} `)) return true;
      client.write(`${line}\r\n`);
      client.pipe(backend).pipe(client);
      return false;
    });
  });
}

function serve(client: net.Socket, afterStarttls: boolean): void {
  client.setNoDelay(true);
  client.on("error", () => client.destroy());
  client.write(GREETING);
  lines(client, (line) => {
    const [tag = "", verb = "", user = "", pass = ""] = line.split(" ");
    switch (verb.toUpperCase()) {
      case "LOGIN":
        // paused until piped: nothing the client sends next may be lost
        client.pause();
        login(client, tag, user, pass);
        return false;
      case "STARTTLS": {
        if (afterStarttls) return true;
        client.write(`${tag} OK Begin TLS negotiation now\r\n`);
        client.removeAllListeners("data");
        const secure = new tls.TLSSocket(client, { isServer: true, secureContext: ecContext });
        secure.once("secure", () => {
          lines(secure, (l) => {
            const [t = ""] = l.split(" ");
            secure.write(`* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n${t} OK completed\r\n`);
            return true;
          });
        });
        secure.on("error", () => secure.destroy());
        return false;
      }
      case "CAPABILITY":
        client.write(`* CAPABILITY IMAP4rev1 STARTTLS\r\n${tag} OK completed\r\n`);
        return true;
      default:
        client.write(`${tag} BAD\r\n`);
        return true;
    }
  });
  client.on("end", () => client.end());
}

const ecContext = tls.createSecureContext(keyPair("ec"));

/**
 * Listens, retrying while the port is busy: connections of the previous
 * server in TIME_WAIT can hold it for a moment (nginx retries its binds too).
 */
function listen(server: net.Server, port: number, tries = 50): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) => {
      server.removeAllListeners("listening");
      if (err.code !== "EADDRINUSE" || tries <= 1) return reject(err);
      setTimeout(() => void listen(server, port, tries - 1).then(resolve, reject), 100);
    });
    server.listen(port, "127.0.0.1", () => {
      server.removeAllListeners("error");
      resolve();
    });
  });
}

function tlsServer(name: "ec" | "rsa"): tls.Server {
  // tls.Server builds its context from key and cert (it ignores a secureContext option)
  const server = tls.createServer(keyPair(name), (s) => serve(s, true));
  server.on("newSession", (id: Buffer, data: Buffer, done: () => void) => {
    cache.set(id.toString("hex"), data);
    done();
  });
  server.on("resumeSession", (id: Buffer, done: (e: Error | null, d: Buffer | null) => void) => done(null, cache.get(id.toString("hex")) ?? null));
  server.on("tlsClientError", () => undefined);
  return server;
}

await listen(tlsServer("ec"), conf.imaps);
await listen(tlsServer("rsa"), conf.imapsRsa);
await listen(
  net.createServer((s) => serve(s, false)),
  conf.imap,
);
writeFileSync(conf.pidFile, `${process.pid}\n`);
process.on("SIGTERM", () => process.exit(0));

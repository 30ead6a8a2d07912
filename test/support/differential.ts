/**
 * Runs one client scenario against two proxies (nginx and Postern) with the same
 * config, fresh fake auth server and fresh fake backends per run, and returns
 * comparable, normalised records.
 */
import { startFakeAuth, type AuthHandler } from "./fake-auth.js";
import { startFakeImap, startFakePop3, startFakeSmtp, type FakeBackend, type FakeBackendOptions } from "./fake-backend.js";
import type { MailProxyOptions, MailProxyProcess } from "./mail-proxy.js";
import { startNginx } from "./nginx.js";
import { startPostern } from "./postern.js";
import { freePorts } from "./ports.js";

/** Ports of the fake backends of one run. */
export interface BackendPorts {
  imap: number;
  pop3: number;
  smtp: number;
}

/** What the config function gets for one run. */
export interface ScenarioEnv {
  /** The proxy's listening ports, by the names given in `listen`. */
  ports: Record<string, number>;
  /** `127.0.0.1:PORT/auth` of this run's fake auth server. */
  authUrl: string;
  backends: BackendPorts;
}

/** A differential test set-up (shared by both runs). */
export interface DifferentialSetup {
  /** Names of the listening ports to allocate, e.g. `['imap', 'smtp']`. */
  listen: string[];
  /** The mail block text (inside of `mail {}` or whole block) for a run's ports. */
  config: (env: ScenarioEnv) => string;
  /** Auth reply function; default: `Auth-Status: OK` to the fake backend named by `Auth-Protocol`. */
  auth?: (backends: BackendPorts) => AuthHandler;
  /** Options of the fake backends (each run gets fresh ones). */
  backends?: { imap?: FakeBackendOptions; pop3?: FakeBackendOptions; smtp?: FakeBackendOptions };
  proxyOptions?: MailProxyOptions;
  /** Pause after the scenario before stopping the proxy, so in-flight bytes are recorded (default 100 ms). */
  settleMs?: number;
  /** Error-log levels to record (e.g. `['info', 'error']`); default none, so `errorLog` is empty. */
  logLevels?: string[];
}

/** A scenario: drives clients against the given ports and returns its own transcript object. */
export type Scenario<T> = (ports: Record<string, number>) => Promise<T>;

/** Starts a proxy (startNginx or startPostern). */
export type ProxyStarter = (mailBlock: string, options?: MailProxyOptions) => Promise<MailProxyProcess>;

/** Everything observed in one run, normalised. */
export interface RunRecord<T> {
  transcript: T;
  /** Raw auth_http request header blocks. */
  authRequests: string[];
  /** Bytes each fake backend received, one string (latin1) per connection. */
  backendReceived: { imap: string[]; pop3: string[]; smtp: string[] };
  /** Error-log lines of the levels in `logLevels`, normalised by normalizeLogLine(), start-up/exit notices excluded. */
  errorLog: string[];
}

/** Both runs of differential(). */
export interface DifferentialResult<T> {
  nginx: RunRecord<T>;
  postern: RunRecord<T>;
}

/** Routes each auth request to the fake backend of its `Auth-Protocol`. */
export function routeByProtocol(backends: BackendPorts): AuthHandler {
  return (request) => {
    const protocol = request.header("Auth-Protocol") as keyof BackendPorts | undefined;
    const port = protocol && protocol in backends ? backends[protocol] : 0;
    return {
      headers: [
        ["Auth-Status", "OK"],
        ["Auth-Server", "127.0.0.1"],
        ["Auth-Port", String(port)],
      ],
    };
  };
}

/**
 * Replaces what legitimately differs between two runs, and nothing else:
 * - the run's port numbers -> `<port:NAME>`, `<auth-port>`, `<backend-port:PROTO>`;
 * - the APOP/CRAM-MD5 salt `<RANDOM.TIME@name>` -> `<SALT@name>`, also inside base64
 *   (the CRAM-MD5 challenge), where it becomes `<base64 salt@name>`;
 * - the client's digest over that salt, which differs because the salt does:
 *   `APOP user <digest>`, a CRAM-MD5 response `base64(user SP digest)` -> `<base64 user <digest>>`,
 *   and `Auth-Pass` in an auth request that carries `Auth-Salt`.
 */
export function normalizeText(text: string, portNames: Map<number, string>): string {
  let out = text.replace(/\b\d{2,5}\b/g, (digits) => portNames.get(Number(digits)) ?? digits);
  out = out.replace(/<\d+\.\d+@([^>\s]*)>/g, "<SALT@$1>");
  // A CRAM-MD5 challenge is the base64 of the salt: decode candidates and replace matching ones.
  out = out.replace(/[A-Za-z0-9+/]{20,}={0,2}/g, (b64) => {
    const decoded = Buffer.from(b64, "base64").toString("latin1");
    const m = /^<\d+\.\d+@([^>\s]*)>$/.exec(decoded);
    if (m) return `<base64 salt@${m[1]}>`;
    const cram = /^(\S+) [0-9a-f]{32}$/.exec(decoded);
    return cram ? `<base64 ${cram[1]} <digest>>` : b64;
  });
  out = out.replace(/\b(APOP \S+ )[0-9a-f]{32}\b/gi, "$1<digest>");
  if (/^Auth-Salt:/m.test(out)) out = out.replace(/^Auth-Pass: [0-9a-f]{32}\r?$/m, (line) => line.replace(/[0-9a-f]{32}/, "<digest>"));
  return out;
}

/**
 * Normalises one error-log line: the timestamp -> `<time>`, `PID#TID` -> `<pid>`,
 * the connection number `*N` -> `*<conn>`, and the client's ephemeral port in
 * `client 127.0.0.1:PORT connected` -> `<client-port>` (then normalizeText for the rest).
 */
export function normalizeLogLine(line: string, portNames: Map<number, string>): string {
  const out = line
    .replace(/^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d /, "<time> ")
    .replace(/ \d+#\d+: /, " <pid>: ")
    .replace(/: \*\d+ /, ": *<conn> ")
    .replace(/client 127\.0\.0\.1:\d+ connected/, "client 127.0.0.1:<client-port> connected");
  return normalizeText(out, portNames);
}

/** Applies normalizeText to every string inside a value (arrays and plain objects walked). */
export function normalizeDeep<T>(value: T, portNames: Map<number, string>): T {
  if (typeof value === "string") return normalizeText(value, portNames) as T;
  if (Array.isArray(value)) return (value as unknown[]).map((v) => normalizeDeep(v, portNames)) as T;
  if (value !== null && typeof value === "object" && !Buffer.isBuffer(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) out[k] = normalizeDeep(v, portNames);
    return out as T;
  }
  return value;
}

/** Runs `scenario` once against the proxy started by `start`, with fresh fakes, and returns the normalised record. */
export async function runScenario<T>(start: ProxyStarter, setup: DifferentialSetup, scenario: Scenario<T>): Promise<RunRecord<T>> {
  const imap = await startFakeImap(setup.backends?.imap);
  const pop3 = await startFakePop3(setup.backends?.pop3);
  const smtp = await startFakeSmtp(setup.backends?.smtp);
  const fakes: FakeBackend[] = [imap, pop3, smtp];
  const backends: BackendPorts = { imap: imap.port, pop3: pop3.port, smtp: smtp.port };
  const auth = await startFakeAuth((setup.auth ?? routeByProtocol)(backends));
  let proxy: MailProxyProcess | undefined;
  try {
    const allocated = await freePorts(setup.listen.length);
    const ports: Record<string, number> = {};
    setup.listen.forEach((name, i) => {
      ports[name] = allocated[i]!;
    });
    proxy = await start(setup.config({ ports, authUrl: auth.url, backends }), setup.proxyOptions);
    const transcript = await scenario(ports);
    await new Promise((r) => setTimeout(r, setup.settleMs ?? 100));
    await proxy.stop();
    const logText = proxy.errorLog();
    proxy = undefined;

    const names = new Map<number, string>();
    for (const [name, port] of Object.entries(ports)) names.set(port, `<port:${name}>`);
    names.set(auth.port, "<auth-port>");
    for (const f of fakes) names.set(f.port, `<backend-port:${f.protocol}>`);
    const received = (f: FakeBackend): string[] => f.connections.map((c) => c.received.toString("latin1"));
    const levels = setup.logLevels ?? [];
    // Session lines only (they carry `*N`): start-up and shutdown notices differ by design.
    const errorLog = logText
      .split("\n")
      .filter((l) => levels.some((lv) => l.includes(` [${lv}] `)) && / \d+#\d+: \*\d+ /.test(l))
      .map((l) => normalizeLogLine(l, names));
    const record = normalizeDeep(
      {
        transcript,
        authRequests: [...auth.requests],
        backendReceived: { imap: received(imap), pop3: received(pop3), smtp: received(smtp) },
      },
      names,
    );
    return { ...record, errorLog };
  } finally {
    await proxy?.stop();
    await auth.close();
    await Promise.all(fakes.map((f) => f.close()));
  }
}

/** Runs `scenario` against nginx, then against Postern, with the same set-up; compare with assert.deepEqual. */
export async function differential<T>(setup: DifferentialSetup, scenario: Scenario<T>): Promise<DifferentialResult<T>> {
  const nginx = await runScenario(startNginx, setup, scenario);
  const postern = await runScenario(startPostern, setup, scenario);
  return { nginx, postern };
}

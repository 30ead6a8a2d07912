/**
 * Forged client-certificate chains, judged by nginx and by Postern with the
 * same files: every verdict (the info line's OpenSSL number and text, or
 * Auth-SSL-Verify and the subject the auth service receives) must match.
 * Three servers: the real root trusted but not advertised (another CA
 * advertised), the real root advertised beside another trusted CA, and the
 * first with CRLs.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { startFakeAuth, type FakeAuth } from "../../support/fake-auth.js";
import type { MailProxyProcess } from "../../support/mail-proxy.js";
import { nginxAvailable, startNginx } from "../../support/nginx.js";
import { freePorts } from "../../support/ports.js";
import { startPostern } from "../../support/postern.js";
import { type ClientChain, type ForgedCorpus, makeForgedCorpus } from "./forged-chains.js";
import { makePki, type Pki, tempDir } from "./helpers.js";

let tmp: ReturnType<typeof tempDir>;
let corpus: ForgedCorpus;
let pki: Pki;
let auth: FakeAuth;
let ports: number[];
const proxies: Record<"nginx" | "postern", MailProxyProcess | undefined> = { nginx: undefined, postern: undefined };

function mailBlock(): string {
  const [hidden, advertised, crl] = ports;
  const common = `protocol imap; ssl_certificate ${pki.rsaCert}; ssl_certificate_key ${pki.rsaKey}; ssl_verify_client on; ssl_verify_depth 3;`;
  return [
    `auth_http 127.0.0.1:${auth.port}/auth;`,
    `server { listen 127.0.0.1:${hidden} ssl; ${common} ssl_client_certificate ${corpus.other}; ssl_trusted_certificate ${corpus.root}; }`,
    `server { listen 127.0.0.1:${advertised} ssl; ${common} ssl_client_certificate ${corpus.root}; ssl_trusted_certificate ${corpus.other}; }`,
    `server { listen 127.0.0.1:${crl} ssl; ${common} ssl_client_certificate ${corpus.other}; ssl_trusted_certificate ${corpus.root}; ssl_crl ${corpus.crls}; }`,
  ].join("\n");
}

before(async () => {
  assert.ok(nginxAvailable(), "nginx is the oracle here");
  tmp = tempDir();
  pki = makePki(tmp.dir);
  corpus = makeForgedCorpus(tmp.dir);
  auth = await startFakeAuth(() => ({ headers: [["Auth-Status", "Invalid login"]] }));
  ports = await freePorts(6);
});
after(async () => {
  for (const p of Object.values(proxies)) await p?.stop();
  await auth?.close();
  tmp?.remove();
});

/** What the client and the auth service saw for one chain on one port. */
interface Verdict {
  readonly greeting: string;
  readonly logged?: string;
  readonly authVerify?: string;
  readonly authSubject?: string;
}

/** Presents `c` on `port`, logs in if greeted, and reads what the auth service and the error log got. */
async function present(proxy: MailProxyProcess, port: number, c: ClientChain): Promise<Verdict> {
  const logBefore = proxy.errorLog().length;
  const requestsBefore = auth.parsed.length;
  const args = ["s_client", "-connect", `127.0.0.1:${port}`, "-crlf", "-quiet", "-cert", c.cert, "-key", c.key, ...(c.chain ? ["-cert_chain", c.chain] : [])];
  const out = await new Promise<string>((resolve) => {
    const child = spawn("openssl", args, { stdio: ["pipe", "pipe", "ignore"] });
    let text = "";
    let sent = false;
    child.stdout.on("data", (d: Buffer) => {
      text += d.toString("latin1");
      if (!sent && text.includes("* OK")) {
        sent = true;
        child.stdin.write("a LOGIN user secret\n");
      }
      if (/^a (NO|BAD)/m.test(text)) child.kill();
    });
    child.stdin.on("error", () => undefined);
    const timer = setTimeout(() => child.kill(), 10_000);
    child.on("close", () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
  // The info line is written as the session closes; give the proxy a moment.
  let logged: string | undefined;
  for (let i = 0; i < 50 && logged === undefined && !out.includes("* OK"); i++) {
    logged = /client SSL certificate verify error: \((.*?)\)/.exec(proxy.errorLog().slice(logBefore))?.[1];
    if (logged === undefined) await new Promise((r) => setTimeout(r, 20));
  }
  const request = auth.parsed.slice(requestsBefore)[0];
  const header = (name: string): string | undefined => request?.headers.find(([n]) => n.toLowerCase() === name)?.[1];
  return {
    greeting: out.split("\n")[0]!.trim(),
    ...(logged !== undefined ? { logged } : {}),
    ...(request ? { authVerify: header("auth-ssl-verify"), authSubject: header("auth-ssl-subject") } : {}),
  };
}

async function verdicts(kind: "nginx" | "postern", chains: readonly ClientChain[], portIndexes: readonly number[]): Promise<Record<string, Verdict>> {
  const offset = kind === "nginx" ? 0 : 3;
  const block = mailBlock().replace(/127\.0\.0\.1:(\d+)/g, (m, p: string) => {
    const i = ports.indexOf(Number(p));
    return i >= 0 && i < 3 ? `127.0.0.1:${ports[i + offset]}` : m;
  });
  proxies[kind] ??= await (kind === "nginx" ? startNginx : startPostern)(block);
  const out: Record<string, Verdict> = {};
  for (const i of portIndexes) {
    for (const c of chains)
      out[`${["hidden root", "advertised root", "hidden root with CRLs"][i]}: ${c.name}`] = await present(proxies[kind], ports[i + offset]!, c);
  }
  return out;
}

describe("forged client-certificate chains: Postern's verdicts are nginx's", () => {
  test("every chain, with the real root trusted but not advertised, and advertised beside another trusted CA", async () => {
    const theirs = await verdicts("nginx", corpus.chains, [0, 1]);
    const ours = await verdicts("postern", corpus.chains, [0, 1]);
    assert.deepEqual(ours, theirs);
    // What the forgeries must never get, whoever judges them.
    for (const [name, v] of Object.entries(ours)) {
      if (!/good/.test(name)) assert.notEqual(v.authVerify, "SUCCESS", name);
    }
    assert.equal(ours["hidden root: good chain"]?.authVerify, "SUCCESS");
    assert.equal(ours["hidden root: good chain"]?.authSubject, "O=Corp,CN=alice");
    assert.equal(ours["hidden root: leaf signed by a client certificate (CA:FALSE)"]?.logged, "32:key usage does not include certificate signing");
    assert.equal(ours["hidden root: path length exceeded"]?.logged, "25:path length constraint exceeded");
    assert.equal(ours["hidden root: EKU serverAuth only"]?.logged, "26:unsuitable certificate purpose");
  });
  test("a revoked intermediate under the hidden root, with ssl_crl", async () => {
    const theirs = await verdicts("nginx", corpus.revocation, [2]);
    const ours = await verdicts("postern", corpus.revocation, [2]);
    assert.deepEqual(ours, theirs);
    assert.equal(ours["hidden root with CRLs: revoked intermediate"]?.logged, "23:certificate revoked");
    assert.equal(ours["hidden root with CRLs: good chain, CRLs checked"]?.authVerify, "SUCCESS");
  });
});

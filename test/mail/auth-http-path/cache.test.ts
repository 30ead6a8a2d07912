/**
 * auth_http_cache in one process (the store behind the interface is the
 * same one the master holds for its workers): what is cached, for how
 * long, and what never hits an old entry. Real auth service over sockets.
 */
import { after, test } from "node:test";
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from "node:crypto";
import assert from "node:assert/strict";
import { authenticate } from "../../../src/mail/auth-http/client.js";
import { AuthAnswerCache, type AuthCacheConf } from "../../../src/mail/auth-http/cache.js";
import { authAnswerStore, isReply, isRequest } from "../../../src/event/auth-answer-ipc.js";
import { MemoryAnswerStore } from "../../../src/event/auth-answer-store.js";
import { okTo, startFakeAuth, type AuthHandler, type FakeAuth } from "../../support/fake-auth.js";
import { SESSION, makeSetup, plain } from "./helpers.js";

const fakes: FakeAuth[] = [];
after(async () => {
  for (const f of fakes) await f.close();
});
let zoneCounter = 0;

async function setup(handler: AuthHandler, conf: Partial<AuthCacheConf> = {}) {
  const auth = await startFakeAuth(handler);
  fakes.push(auth);
  const full: AuthCacheConf = { zone: `test${zoneCounter++}`, size: 1 << 20, okMs: 60_000, failMs: 10_000, ...conf };
  const cache = new AuthAnswerCache(authAnswerStore(full.zone, full.size), full, auth.url);
  return { auth, ...makeSetup([auth.url], { cache }) };
}

test("a success is cached: two logins, one request; the answer (with its Auth-Pass) comes back the same", async () => {
  const { auth, params } = await setup(okTo(1143, [["Auth-Pass", "backend-secret"]]));
  const first = await authenticate(params());
  const second = await authenticate(params());
  assert.deepEqual(second, first);
  assert.deepEqual(second, { kind: "ok", backend: { host: "127.0.0.1", port: 1143 }, login: Buffer.from("user"), password: Buffer.from("backend-secret") });
  assert.equal(auth.parsed.length, 1);
});

test("a hit is the whole answer: backend TLS, the backend mechanism and a SASL error come back as the service sent them", async () => {
  const ok = await setup(
    okTo(1143, [
      ["Auth-Pass", "token-for-backend"],
      ["Auth-Proxy-SSL", "on"],
      ["Auth-Proxy-SSL-Name", "mx.internal"],
      ["Auth-Method", "oauthbearer"],
    ]),
  );
  const first = await authenticate(ok.params());
  const second = await authenticate(ok.params());
  const expected = {
    kind: "ok",
    backend: { host: "127.0.0.1", port: 1143, tls: { kind: "valid", mode: "on", name: "mx.internal" } },
    login: Buffer.from("user"),
    password: Buffer.from("token-for-backend"),
    backendMechanism: "oauthbearer",
  };
  assert.deepEqual(first, expected);
  assert.deepEqual(second, expected, "the cached answer still sends the backend login over TLS, with the token");
  assert.equal(ok.auth.parsed.length, 1);

  const challenge = Buffer.from('{"status":"invalid_token"}').toString("base64");
  const refused = await setup(() => ({
    headers: [
      ["Auth-Status", "invalid token"],
      ["Auth-Error-SASL", challenge],
    ],
  }));
  const bearer = { method: "oauthbearer", login: Buffer.from("user"), password: Buffer.from("tok") } as const;
  for (let i = 0; i < 2; i++) {
    const outcome = await authenticate(refused.params(bearer));
    assert.equal(outcome.kind, "refused");
    assert.equal((outcome as { saslError?: string }).saslError, challenge, `login ${i + 1}: the client gets the SASL challenge`);
  }
  assert.equal(refused.auth.parsed.length, 1);
});

test("a changed password, another protocol, client address or client certificate never hits the old entry", async () => {
  const { auth, params } = await setup(okTo(1143));
  await authenticate(params(plain("user", "old")));
  await authenticate(params(plain("user", "new")));
  await authenticate(params(plain("user", "old"), { ...SESSION, protocol: "pop3" }));
  await authenticate(params(plain("user", "old"), { ...SESSION, clientAddr: "127.0.0.9" }));
  const tls = { protocol: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256", verify: "SUCCESS", subject: "CN=a", issuer: "CN=ca", serial: "01", fingerprint: "aa" };
  await authenticate(params(plain("user", "old"), { ...SESSION, tls }));
  await authenticate(params(plain("user", "old"), { ...SESSION, tls: { ...tls, fingerprint: "bb" } }));
  assert.equal(auth.parsed.length, 6);
  // and each of them now hits its own entry
  await authenticate(params(plain("user", "new")));
  await authenticate(params(plain("user", "old"), { ...SESSION, tls: { ...tls, fingerprint: "bb" } }));
  assert.equal(auth.parsed.length, 6);
});

test("refusals are cached for fail=, and not at all with fail=0", async () => {
  const refuse: AuthHandler = () => ({ headers: [["Auth-Status", "Invalid login or password"]] });
  const a = await setup(refuse);
  assert.equal((await authenticate(a.params())).kind, "refused");
  assert.equal((await authenticate(a.params())).kind, "refused");
  assert.equal(a.auth.parsed.length, 1);
  assert.deepEqual(a.lines(), [
    '[info] client login failed: "Invalid login or password" while in http auth state',
    '[info] client login failed: "Invalid login or password" while in http auth state',
  ]);
  const b = await setup(refuse, { failMs: 0 });
  await authenticate(b.params());
  await authenticate(b.params());
  assert.equal(b.auth.parsed.length, 2);
});

test("never cached: Auth-Wait refusals, Auth-Status: WAIT, SMTP 4xx refusals, errors and broken answers", async () => {
  const handlers: [string, AuthHandler, typeof SESSION][] = [
    [
      "Auth-Wait",
      () => ({
        headers: [
          ["Auth-Status", "Invalid login"],
          ["Auth-Wait", "1"],
        ],
      }),
      SESSION,
    ],
    [
      "SMTP 4xx",
      () => ({
        headers: [
          ["Auth-Status", "Try later"],
          ["Auth-Error-Code", "451 4.3.0"],
        ],
      }),
      { ...SESSION, protocol: "smtp" },
    ],
    ["no server", () => ({ headers: [["Auth-Status", "OK"]] }), SESSION],
    ["invalid Auth-Proxy-SSL", okTo(1143, [["Auth-Proxy-SSL", "yes-please"]]), SESSION],
    ["invalid Auth-Proxy-SSL-Name", okTo(1143, [["Auth-Proxy-SSL-Name", "a b"]]), SESSION],
    ["invalid Auth-Method", okTo(1143, [["Auth-Method", "foo"]]), SESSION],
    ["invalid", () => "HTTP/1.0 200 OK\r\n:bad\r\n\r\n", SESSION],
  ];
  for (const [name, handler, session] of handlers) {
    const { auth, params } = await setup(handler);
    await authenticate(params(plain("user", "pw"), session));
    await authenticate(params(plain("user", "pw"), session));
    assert.equal(auth.parsed.length, 2, name);
  }
  // Auth-Error-SASL on a success is an error for an OAuth login: not kept either
  const sasl = await setup(okTo(1143, [["Auth-Error-SASL", "eyJzdGF0dXMiOiI0MDEifQ=="]]));
  const bearer = { method: "oauthbearer", login: Buffer.from("user"), password: Buffer.from("tok") } as const;
  assert.deepEqual(await authenticate(sasl.params(bearer)), { kind: "error" });
  assert.deepEqual(await authenticate(sasl.params(bearer)), { kind: "error" });
  assert.equal(sasl.auth.parsed.length, 2, "Auth-Error-SASL on OK");
  // WAIT, then OK: the WAIT answer is not kept, the final OK is (under its own request)
  let n = 0;
  const { auth, params } = await setup((r) => (n++ === 0 ? { headers: [["Auth-Status", "WAIT"]] } : okTo(1143)(r)));
  assert.equal((await authenticate(params())).kind, "ok");
  assert.equal(auth.parsed.length, 2);
  assert.equal((await authenticate(params())).kind, "ok");
  assert.equal(auth.parsed.length, 2, "the second login hit the OK, never the WAIT");
});

test("the store holds neither credentials nor the answer in clear, and a value only opens with the same request", async () => {
  const { params } = await setup(okTo(1143, [["Auth-Pass", "backend-secret"]]));
  const seen: Buffer[] = [];
  const store = new MemoryAnswerStore(1 << 20);
  const spy = {
    get: (id: string) => Promise.resolve(store.get(id)),
    set: (id: string, v: Buffer, ttl: number) => {
      seen.push(Buffer.from(id), v);
      store.set(id, v, ttl);
    },
    secret: () => Promise.resolve(Buffer.alloc(32, 7)),
  };
  const conf: AuthCacheConf = { zone: "spy", size: 1 << 20, okMs: 60_000, failMs: 0 };
  const p = params(plain("alice", "hunter2"));
  const cached = { ...p, settings: { ...p.settings, cache: new AuthAnswerCache(spy, conf, "x") } };
  await authenticate(cached);
  assert.equal(seen.length, 2);
  for (const b of seen) for (const secret of ["hunter2", "alice", "backend-secret", "127.0.0.1"]) assert.equal(b.includes(secret), false, secret);
});

test("the memory store is bounded (least recently used leaves) and entries expire", () => {
  const store = new MemoryAnswerStore(1000);
  for (let i = 0; i < 20; i++) store.set(`id${i}`.padEnd(64, "0"), Buffer.alloc(100), 1000, 0);
  assert.ok(store.size <= 4, `${store.size} entries in 1000 bytes`);
  assert.ok(store.get("id19".padEnd(64, "0"), 10));
  assert.equal(store.get("id0".padEnd(64, "0"), 10), undefined);
  assert.equal(store.get("id19".padEnd(64, "0"), 1000), undefined, "expired");
});

test("IPC messages are checked field by field", () => {
  const id = "a".repeat(64);
  assert.ok(isRequest({ type: "postern:authCache", op: "get", seq: 1, zone: "z", size: 100, id, sync: false }));
  assert.ok(isRequest({ type: "postern:authCache", op: "set", zone: "z", size: 100, id, value: "AAAA", ttl: 5, sync: true }));
  assert.ok(isRequest({ type: "postern:authCache", op: "secret", seq: 1, sync: true }));
  for (const bad of [
    null,
    { type: "postern:authCache", op: "get", seq: 1, zone: "z", size: 100, id: "../x", sync: false },
    { type: "postern:authCache", op: "get", seq: -1, zone: "z", size: 100, id, sync: false },
    { type: "postern:authCache", op: "get", seq: 1, zone: "z", size: 100, id },
    { type: "postern:authCache", op: "get", seq: 1, zone: "z", size: 100, id, sync: "yes" },
    { type: "postern:authCache", op: "secret", seq: 1 },
    { type: "postern:authCache", op: "set", zone: "z", size: 100, id, value: "A".repeat(9000), ttl: 5, sync: false },
    { type: "postern:authCache", op: "set", zone: "z", size: 100, id, value: "!!", ttl: 5, sync: false },
    { type: "postern:authCache", op: "set", zone: "", size: 100, id, value: "AA==", ttl: 5, sync: false },
    { type: "postern:authCache", op: "set", zone: "z", size: 100, id, value: "AA==", ttl: 5, sync: 1 },
    { type: "postern:authCache", op: "drop", zone: "z" },
  ])
    assert.equal(isRequest(bad), false, JSON.stringify(bad));
  assert.ok(isReply({ type: "postern:authCache", op: "reply", seq: 3, value: null }));
  assert.equal(isReply({ type: "postern:authCache", op: "reply", seq: 3, value: 5 }), false);
});

test("an entry sealed in the older format (fewer headers kept) is a miss, never an answer without its Auth-Proxy-SSL", async () => {
  const { auth, params } = await setup(okTo(1143, [["Auth-Proxy-SSL", "on"]]));
  const store = new MemoryAnswerStore(1 << 20);
  const secret = Buffer.alloc(32, 9);
  const spy = {
    get: (id: string) => Promise.resolve(store.get(id)),
    set: (id: string, v: Buffer, ttl: number) => store.set(id, v, ttl),
    secret: () => Promise.resolve(secret),
  };
  const conf: AuthCacheConf = { zone: "old", size: 1 << 20, okMs: 60_000, failMs: 0 };
  const p = params();
  const cached = { ...p, settings: { ...p.settings, cache: new AuthAnswerCache(spy, conf, "s") } };
  assert.equal((await authenticate(cached)).kind, "ok");
  // rewrite the entry as the older format had it: the same fields, no version, no Auth-Proxy-SSL
  const request = Buffer.from(auth.requests[0]!, "latin1");
  const hmac = (purpose: string): Buffer => createHmac("sha256", secret).update(`${purpose}\0s\0`).update(request).digest();
  const id = hmac("id").toString("hex");
  const sealed = store.get(id)!;
  const decipher = createDecipheriv("aes-256-gcm", hmac("seal"), sealed.subarray(0, 12));
  decipher.setAuthTag(sealed.subarray(12, 28));
  const fields = JSON.parse(Buffer.concat([decipher.update(sealed.subarray(28)), decipher.final()]).toString("utf8")) as Record<string, string>;
  assert.ok(fields.proxySsl !== undefined && fields.v !== undefined, JSON.stringify(Object.keys(fields)));
  const { v: _v, proxySsl: _p, ...old } = fields;
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", hmac("seal"), iv);
  const body = Buffer.concat([cipher.update(JSON.stringify(old), "utf8"), cipher.final()]);
  store.set(id, Buffer.concat([iv, cipher.getAuthTag(), body]), 60_000);
  // the next login asks the service again, and gets its Auth-Proxy-SSL
  const again = await authenticate(cached);
  assert.equal(auth.parsed.length, 2);
  assert.deepEqual(again.kind === "ok" && again.backend.tls, { kind: "valid", mode: "on", name: undefined });
});

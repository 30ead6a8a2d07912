/**
 * A corpus of good and forged client-certificate chains, made with openssl
 * at test time: each entry is what a client presents (leaf, key, and the
 * extra certificates it sends), to be judged by nginx and Postern alike.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** One client identity: leaf and key files, and the extra certificates sent after the leaf (a PEM file or none). */
export interface ClientChain {
  readonly name: string;
  readonly cert: string;
  readonly key: string;
  readonly chain?: string;
}

/** The CA files the servers are configured with, and the chains to present. */
export interface ForgedCorpus {
  /** The real root: trusted, not advertised, on servers "hidden" and "crl". */
  readonly root: string;
  /** Another CA, advertised (ssl_client_certificate) beside the hidden root. */
  readonly other: string;
  /** CRLs of the root and of every intermediate under it (CRL_CHECK_ALL needs each). */
  readonly crls: string;
  readonly chains: readonly ClientChain[];
  /** Chains only meaningful with `crls` configured. */
  readonly revocation: readonly ClientChain[];
}

const CA_EXT = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n";
const LEAF_EXT =
  "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n";

/** Builds the corpus under `dir`. */
export function makeForgedCorpus(dir: string): ForgedCorpus {
  const p = (n: string): string => join(dir, n);
  const ossl = (args: string[]): string => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] }).toString();
  const ext = (name: string, text: string): string => {
    writeFileSync(p(`${name}.ext`), text);
    return p(`${name}.ext`);
  };
  const key = (name: string): string => {
    ossl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", p(`${name}.key`)]);
    return p(`${name}.key`);
  };
  /** A CA directory for `openssl ca`, so certificates can be revoked and CRLs made. */
  const caDb = (name: string): string => {
    const d = p(`${name}.db`);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, "index.txt"), "");
    writeFileSync(join(d, "crlnumber"), "01\n");
    writeFileSync(
      join(d, "ca.cnf"),
      [
        "[ca]",
        "default_ca=d",
        "[d]",
        `database=${join(d, "index.txt")}`,
        `new_certs_dir=${d}`,
        `crlnumber=${join(d, "crlnumber")}`,
        "default_md=sha256",
        "policy=pol",
        "default_crl_days=30",
        "unique_subject=no",
        "preserve=yes",
        "rand_serial=yes",
        "copy_extensions=none",
        "[pol]",
        "commonName=optional",
        "organizationName=optional",
        "",
      ].join("\n"),
    );
    return join(d, "ca.cnf");
  };
  const selfSigned = (name: string, subj: string, extra: string[] = []): void => {
    key(name);
    ossl([
      "req",
      "-x509",
      "-new",
      "-key",
      p(`${name}.key`),
      "-out",
      p(`${name}.crt`),
      "-subj",
      subj,
      "-days",
      "30",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
      ...extra,
    ]);
    caDb(name);
  };
  /** `name` signed by `issuer` through `openssl ca` (extensions from `extText`; `dates` override -days). */
  const issue = (name: string, subj: string, issuer: string, extText: string, dates: string[] = ["-days", "30"], ownKey = true): void => {
    if (ownKey) key(name);
    ossl(["req", "-new", "-key", p(`${name}.key`), "-out", p(`${name}.csr`), "-subj", subj]);
    ossl([
      "ca",
      "-batch",
      "-config",
      p(`${issuer}.db/ca.cnf`),
      "-cert",
      p(`${issuer}.crt`),
      "-keyfile",
      p(`${issuer}.key`),
      "-in",
      p(`${name}.csr`),
      "-out",
      p(`${name}.crt`),
      "-notext",
      "-extfile",
      ext(name, extText),
      ...dates,
    ]);
    if (extText.includes("CA:TRUE")) caDb(name);
  };
  const bundle = (name: string, parts: string[]): string => {
    writeFileSync(p(name), parts.map((n) => readFileSync(p(`${n}.crt`), "utf8")).join(""));
    return p(name);
  };
  const chain = (name: string, leaf: string, sent: string[]): ClientChain => ({
    name,
    cert: p(`${leaf}.crt`),
    key: p(`${leaf}.key`),
    ...(sent.length ? { chain: bundle(`${leaf}.chain.pem`, sent) } : {}),
  });

  selfSigned("root", "/O=Corp/CN=Corp Root", ["-addext", "subjectKeyIdentifier=hash"]);
  selfSigned("other", "/O=Elsewhere/CN=Other CA");
  issue("inter", "/O=Corp/CN=Corp Issuing", "root", CA_EXT);
  issue("alice", "/O=Corp/CN=alice", "inter", LEAF_EXT);
  // A legacy client certificate with no extensions at all (a v1 certificate).
  key("legacy");
  ossl(["req", "-new", "-key", p("legacy.key"), "-out", p("legacy.csr"), "-subj", "/O=Corp/CN=legacy"]);
  ossl(["x509", "-req", "-in", p("legacy.csr"), "-CA", p("inter.crt"), "-CAkey", p("inter.key"), "-CAcreateserial", "-out", p("legacy.crt"), "-days", "30"]);

  // Forgeries by holders of a real client certificate: their key signs a new leaf.
  for (const [forger, as] of [
    ["alice", "admin"],
    ["legacy", "admin2"],
  ] as const) {
    key(as);
    ossl(["req", "-new", "-key", p(`${as}.key`), "-out", p(`${as}.csr`), "-subj", `/O=Corp/CN=${as}`]);
    ossl([
      "x509",
      "-req",
      "-in",
      p(`${as}.csr`),
      "-CA",
      p(`${forger}.crt`),
      "-CAkey",
      p(`${forger}.key`),
      "-CAcreateserial",
      "-out",
      p(`${as}.crt`),
      "-days",
      "30",
      "-extfile",
      ext(as, LEAF_EXT.replace("authorityKeyIdentifier=keyid\n", "")),
    ]);
  }
  // A proxy certificate (RFC 3820) issued by alice.
  key("proxy");
  ossl(["req", "-new", "-key", p("proxy.key"), "-out", p("proxy.csr"), "-subj", "/O=Corp/CN=alice/CN=proxy"]);
  ossl([
    "x509",
    "-req",
    "-in",
    p("proxy.csr"),
    "-CA",
    p("alice.crt"),
    "-CAkey",
    p("alice.key"),
    "-CAcreateserial",
    "-out",
    p("proxy.crt"),
    "-days",
    "30",
    "-extfile",
    ext("proxy", "keyUsage=critical,digitalSignature\nproxyCertInfo=critical,language:id-ppl-inheritAll\n"),
  ]);

  issue("pathzero", "/O=Corp/CN=Path Zero", "root", CA_EXT.replace("CA:TRUE", "CA:TRUE,pathlen:0"));
  issue("sub", "/O=Corp/CN=Sub CA", "pathzero", CA_EXT);
  issue("deep", "/O=Corp/CN=deep", "sub", LEAF_EXT);
  issue("server-only", "/O=Corp/CN=server only", "inter", LEAF_EXT.replace("clientAuth", "serverAuth"));
  issue("old-inter", "/O=Corp/CN=Old Issuing", "root", CA_EXT, ["-startdate", "20200101000000Z", "-enddate", "20210101000000Z"]);
  issue("late", "/O=Corp/CN=late", "old-inter", LEAF_EXT);
  issue("nosign-inter", "/O=Corp/CN=No Sign", "root", CA_EXT.replace("keyCertSign,cRLSign", "digitalSignature"));
  issue("nosign-leaf", "/O=Corp/CN=nosign leaf", "nosign-inter", LEAF_EXT);
  // A fake root: the real root's name and key identifier, another key.
  const rootSkid = /Subject Key Identifier:\s*\n\s*([0-9A-F:]+)/.exec(ossl(["x509", "-in", p("root.crt"), "-noout", "-text"]))![1]!.replace(/:/g, "");
  selfSigned("fake-root", "/O=Corp/CN=Corp Root", ["-addext", `subjectKeyIdentifier=${rootSkid}`]);
  issue("mallory", "/O=Corp/CN=admin", "fake-root", LEAF_EXT);
  // A self-signed leaf.
  key("lone");
  ossl(["req", "-x509", "-new", "-key", p("lone.key"), "-out", p("lone.crt"), "-subj", "/O=Corp/CN=admin", "-days", "30"]);

  issue("revoked-inter", "/O=Corp/CN=Revoked Issuing", "root", CA_EXT);
  issue("bob", "/O=Corp/CN=bob", "revoked-inter", LEAF_EXT);
  ossl(["ca", "-config", p("root.db/ca.cnf"), "-cert", p("root.crt"), "-keyfile", p("root.key"), "-revoke", p("revoked-inter.crt")]);
  const crls = ["root", "inter", "revoked-inter"].map((ca) =>
    ossl(["ca", "-gencrl", "-config", p(`${ca}.db/ca.cnf`), "-cert", p(`${ca}.crt`), "-keyfile", p(`${ca}.key`)]),
  );
  writeFileSync(p("crls.pem"), crls.join(""));

  return {
    root: p("root.crt"),
    other: p("other.crt"),
    crls: p("crls.pem"),
    chains: [
      chain("good chain", "alice", ["inter"]),
      chain("good legacy leaf", "legacy", ["inter"]),
      chain("leaf signed by a client certificate (CA:FALSE)", "admin", ["alice", "inter"]),
      chain("leaf signed by a v1 client certificate", "admin2", ["legacy", "inter"]),
      chain("proxy certificate", "proxy", ["alice", "inter"]),
      chain("path length exceeded", "deep", ["sub", "pathzero"]),
      chain("EKU serverAuth only", "server-only", ["inter"]),
      chain("expired intermediate", "late", ["old-inter"]),
      chain("intermediate without keyCertSign", "nosign-leaf", ["nosign-inter"]),
      chain("fake root with the real name and key id", "mallory", ["fake-root"]),
      chain("self-signed leaf", "lone", []),
    ],
    revocation: [chain("good chain, CRLs checked", "alice", ["inter"]), chain("revoked intermediate", "bob", ["revoked-inter"])],
  };
}

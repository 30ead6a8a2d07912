/**
 * ssl_conf_command: Node has no SSL_CONF interface, so the common commands
 * are mapped onto the equivalent Node options, applied after every other
 * setting (as nginx applies them last). Unknown names fail with OpenSSL's
 * message; known commands without a Node equivalent fail too, never silently.
 */
import { constants } from "node:crypto";
import { readConfFile } from "../../core/conf-inputs.js";
import { ConfError } from "../../core/errors.js";
import { type ConfCommand, PROTOCOL_NAMES, type ProtocolName } from "./module.js";

/** The settings ssl_conf_command may override. */
export interface TlsKnobs {
  readonly cert: readonly string[];
  readonly key: readonly string[];
  readonly protocols: ReadonlySet<ProtocolName>;
  readonly ciphers: string;
  readonly honorCipherOrder: boolean;
  readonly ecdhCurve: string;
  readonly dhparam: string | undefined;
  readonly clientCaPem: string | undefined;
  readonly sigalgs: string | undefined;
  readonly secureOptions: number;
  /** TLS 1.3 suites from `Ciphersuites`, kept apart from the cipher string. */
  readonly ciphersuites?: string;
}

/** SSL_CONF `Options` flags: [option bit, true when the flag name means "bit cleared"]. */
const OPTION_FLAGS: Readonly<Record<string, readonly [number, boolean]>> = {
  sessionticket: [constants.SSL_OP_NO_TICKET, true],
  compression: [constants.SSL_OP_NO_COMPRESSION, true],
  noresumptiononrenegotiation: [constants.SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION, false],
  norenegotiation: [constants.SSL_OP_NO_RENEGOTIATION, false],
  prioritizechacha: [constants.SSL_OP_PRIORITIZE_CHACHA, false],
  unsafelegacyrenegotiation: [constants.SSL_OP_ALLOW_UNSAFE_LEGACY_RENEGOTIATION, false],
  encryptthenmac: [constants.SSL_OP_NO_ENCRYPT_THEN_MAC ?? 0x80000, true],
  bugs: [constants.SSL_OP_ALL, false],
  allownodhekex: [constants.SSL_OP_ALLOW_NO_DHE_KEX, false],
};

/** Commands OpenSSL knows that have no Node equivalent. */
const UNSUPPORTED = new Set([
  "serverinfofile",
  "chaincafile",
  "chaincapath",
  "verifycapath",
  "requestcapath",
  "clientsignaturealgorithms",
  "ecdhparameters",
  "recordpadding",
  "numtickets",
  "verifymode",
  "clientcapath",
]);

function failed(c: ConfCommand, reason: string): ConfError {
  return ConfError.unlocated(`SSL_CONF_cmd("${c.name}", "${c.value}") failed (SSL: ${reason})`);
}

function readText(c: ConfCommand): string {
  try {
    return readConfFile(c.path).toString("latin1");
  } catch (err) {
    throw failed(c, `error:80000002:system library::${(err as Error).message}`);
  }
}

function protocolIndex(c: ConfCommand, name: string): number {
  const i = PROTOCOL_NAMES.findIndex((p) => p.toLowerCase() === name.toLowerCase());
  if (i < 0 && name.toLowerCase() !== "none") throw failed(c, `error:0A000180:SSL routines::bad value:cmd=${c.name}, value=${c.value}`);
  return i;
}

/** Applies the commands in order; returns the changed settings. */
export function applyConfCommands(start: TlsKnobs, commands: readonly ConfCommand[]): TlsKnobs {
  let k: TlsKnobs = start;
  for (const c of commands) {
    const name = c.name.toLowerCase();
    switch (name) {
      case "ciphersuites":
        k = { ...k, ciphersuites: c.value };
        break;
      case "cipherstring":
        k = { ...k, ciphers: c.value };
        break;
      case "groups":
      case "curves":
        k = { ...k, ecdhCurve: c.value };
        break;
      case "signaturealgorithms":
        k = { ...k, sigalgs: c.value };
        break;
      case "minprotocol":
      case "maxprotocol": {
        const at = protocolIndex(c, c.value);
        const keep = PROTOCOL_NAMES.filter((_p, i) => at < 0 || (name === "minprotocol" ? i >= at : i <= at));
        k = { ...k, protocols: new Set([...k.protocols].filter((p) => keep.includes(p))) };
        break;
      }
      case "protocol": {
        const set = new Set(k.protocols);
        for (const raw of c.value
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean)) {
          const off = raw.startsWith("-");
          const word = raw.replace(/^[-+]/, "");
          const names = word.toLowerCase() === "all" ? PROTOCOL_NAMES : [PROTOCOL_NAMES[protocolIndex(c, word)]!];
          for (const p of names)
            if (off) set.delete(p);
            else set.add(p);
        }
        k = { ...k, protocols: set };
        break;
      }
      case "options": {
        let honor = k.honorCipherOrder;
        let opts = k.secureOptions;
        for (const raw of c.value
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean)) {
          const off = raw.startsWith("-");
          const word = raw.replace(/^[-+]/, "").toLowerCase();
          if (word === "serverpreference") {
            honor = !off;
            continue;
          }
          const flag = OPTION_FLAGS[word];
          if (!flag) throw failed(c, `error:0A000180:SSL routines::bad value:cmd=${c.name}, value=${c.value}`);
          const [bit, inverted] = flag;
          if (off !== inverted) opts &= ~bit;
          else opts |= bit;
        }
        k = { ...k, honorCipherOrder: honor, secureOptions: opts };
        break;
      }
      case "certificate":
        k = { ...k, cert: [readText(c)] };
        break;
      case "privatekey":
        k = { ...k, key: [readText(c)] };
        break;
      case "dhparameters":
        k = { ...k, dhparam: readText(c) };
        break;
      case "clientcafile":
      case "verifycafile":
      case "requestcafile":
        k = { ...k, clientCaPem: readText(c) };
        break;
      default:
        if (UNSUPPORTED.has(name)) throw failed(c, `Postern: "${c.name}" has no Node.js equivalent`);
        throw failed(c, `error:0A000182:SSL routines::unknown cmd name:cmd=${c.name}`);
    }
  }
  if (k.ciphersuites !== undefined) {
    // Node splits one list into TLS 1.3 suites (TLS_*) and the TLS 1.2 cipher string.
    const legacy = k.ciphers
      .split(":")
      .filter((s) => !s.startsWith("TLS_"))
      .join(":");
    k = { ...k, ciphers: `${k.ciphersuites}:${legacy}` };
  }
  return k;
}

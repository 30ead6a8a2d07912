/**
 * The key of a `limit_conn_zone`: text and variables, as nginx's complex
 * values (`$binary_remote_addr`, `${remote_addr}:x`). Only the variables a
 * mail session knows before the greeting are accepted; any other name is
 * nginx's `unknown "name" variable`.
 * Rules: docs/limits.md#limit_conn_zone.
 */
import { ConfError } from "../../core/errors.js";
import { parseIp } from "../../core/inet.js";
import type { SessionInfo } from "../types.js";

/** What a key is evaluated against: the session's addresses after realip, and the socket's own peer. */
export type KeyContext = Pick<SessionInfo, "clientAddr" | "clientPort" | "localAddr" | "localPort" | "unixClient" | "proxyProtocol"> & {
  /** The socket's peer before realip ($realip_remote_addr). */
  readonly socketAddr: string;
  readonly socketPort: number;
};

type Part = { readonly text: Buffer } | { readonly variable: (cx: KeyContext) => Buffer };

const latin1 = (s: string): Buffer => Buffer.from(s, "latin1");

/** IPv4 as 4 bytes, IPv6 as 16; a UNIX-socket client as its text, `unix:` (as nginx's stream variable does). */
function binaryAddress(addr: string): Buffer {
  return parseIp(addr) ?? latin1(addr);
}

const VARIABLES: ReadonlyMap<string, (cx: KeyContext) => Buffer> = new Map([
  ["binary_remote_addr", (cx: KeyContext) => binaryAddress(cx.clientAddr)],
  ["remote_addr", (cx: KeyContext) => latin1(cx.clientAddr)],
  ["remote_port", (cx: KeyContext) => latin1(cx.unixClient ? "" : String(cx.clientPort))],
  ["server_addr", (cx: KeyContext) => latin1(cx.localAddr)],
  ["server_port", (cx: KeyContext) => latin1(cx.unixClient ? "" : String(cx.localPort))],
  ["proxy_protocol_addr", (cx: KeyContext) => latin1(cx.proxyProtocol?.srcAddr ?? "")],
  ["proxy_protocol_port", (cx: KeyContext) => latin1(cx.proxyProtocol ? String(cx.proxyProtocol.srcPort) : "")],
  ["realip_remote_addr", (cx: KeyContext) => latin1(cx.socketAddr)],
  ["realip_remote_port", (cx: KeyContext) => latin1(cx.unixClient ? "" : String(cx.socketPort))],
]);

/** A compiled key. */
export interface LimitKey {
  /** As written, for `is already bound to key "..."`. */
  readonly source: string;
  evaluate(cx: KeyContext): Buffer;
}

const NAME_CHAR = /[A-Za-z0-9_]/;

/** Compiles `text`; throws nginx's errors (`invalid variable name`, a missing `}`, `unknown "x" variable`). */
export function compileKey(source: string): LimitKey {
  const parts: Part[] = [];
  let i = 0;
  let text = "";
  while (i < source.length) {
    if (source[i] !== "$") {
      text += source[i++];
      continue;
    }
    i++;
    const braced = source[i] === "{";
    if (braced) i++;
    const start = i;
    while (i < source.length && NAME_CHAR.test(source[i]!)) i++;
    const name = source.slice(start, i);
    if (braced) {
      if (source[i] !== "}") throw new ConfError(`the closing bracket in "${name}" variable is missing`);
      i++;
    }
    if (name.length === 0) throw new ConfError("invalid variable name");
    const variable = VARIABLES.get(name.toLowerCase());
    // nginx finds unknown names once the whole file is read, so its message has no place
    if (!variable) throw ConfError.unlocated(`unknown "${name}" variable`);
    if (text) parts.push({ text: latin1(text) });
    text = "";
    parts.push({ variable });
  }
  if (text) parts.push({ text: latin1(text) });
  return {
    source,
    evaluate: (cx) => Buffer.concat(parts.map((p) => ("text" in p ? p.text : p.variable(cx)))),
  };
}

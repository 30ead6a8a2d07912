/**
 * Where a session's client is and which address it reached, as auth_http
 * and the log name them: read from the socket, then replaced by the PROXY
 * header's addresses where realip trusts them.
 */
import type { Socket } from "node:net";
import { addressWithPort, plainAddress } from "../core/inet.js";
import type { ConnectionLog } from "../core/log.js";
import type { SessionInfo } from "./types.js";

/** The address part of SessionInfo, updated while the session opens. */
export type SessionPeer = { -readonly [K in "clientAddr" | "clientPort" | "localAddr" | "localPort" | "unixClient" | "proxyProtocol"]: SessionInfo[K] };

/** The addresses as the socket reports them (`unix:` for a UNIX-socket client). */
export function socketPeer(socket: Socket, unixClient: boolean): SessionPeer {
  return {
    clientAddr: unixClient ? "unix:" : plainAddress(socket.remoteAddress),
    clientPort: socket.remotePort ?? 0,
    localAddr: unixClient ? "unix:" : plainAddress(socket.localAddress),
    localPort: socket.localPort ?? 0,
    unixClient,
    proxyProtocol: undefined,
  };
}

/** nginx's `client ADDR connected to LISTEN` line at info, built only when info is logged. */
export function logConnected(log: ConnectionLog, peer: SessionPeer, listenText: string): void {
  if (!log.enabled("info")) return;
  const where = peer.unixClient ? "unix:" : addressWithPort(peer.clientAddr, peer.clientPort);
  log.plain("info", `client ${where} connected to ${listenText}`);
}

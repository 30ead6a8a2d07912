/**
 * A session's PROXY protocol stage (`listen ... proxy_protocol`): the header
 * is read under the server's `timeout`, then realip (`set_real_ip_from`)
 * may replace the client's address with the one the header carries.
 * Rules: docs/behaviour/session.md#session-1-stages.
 */
import type { Socket } from "node:net";
import type { ConnectionLog } from "../core/log.js";
import { timeoutDirective } from "./core-module.js";
import type { MailServer } from "./server.js";
import type { SessionServices } from "./session-services.js";
import type { SessionPeer } from "./session-peer.js";

/** Reads the header into `peer`; returns the bytes that followed it, or undefined when none was read (the session closes). */
export async function proxyHeaderStage(
  services: SessionServices,
  server: MailServer,
  socket: Socket,
  peer: SessionPeer,
  log: ConnectionLog,
): Promise<Buffer | undefined> {
  const header = await services.readProxyProtocol(socket, server.conf.get(timeoutDirective), log);
  if (header.kind === "close") return undefined;
  peer.proxyProtocol = header.addresses;
  const real = services.realClientAddress(server, peer.clientAddr, peer.unixClient, header.addresses);
  if (real) {
    peer.clientAddr = real.addr;
    peer.clientPort = real.port;
    log.context.client = real.addr;
  }
  return header.rest;
}

/** The ports from which nginx infers a server's protocol. */
import type { MailProtocolName } from "./types.js";

/** In nginx's module order: imap, pop3, smtp. */
export const PROTOCOL_PORTS: readonly (readonly [MailProtocolName, readonly number[]])[] = [
  ["imap", [143, 993]],
  ["pop3", [110, 995]],
  ["smtp", [25, 465, 587]],
];

/** The protocol a well-known port implies, if any. */
export function protocolForPort(port: number): MailProtocolName | undefined {
  return PROTOCOL_PORTS.find(([, ports]) => ports.includes(port))?.[0];
}

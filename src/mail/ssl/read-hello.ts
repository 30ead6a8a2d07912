/**
 * Reads a client's whole ClientHello before OpenSSL sees it: for the server
 * name (sni.ts) and for what it says about resumption (server-tls.ts, for
 * servers whose ticket keys and sessions come from the shared store).
 */
import type { Socket } from "node:net";
import { type HelloResumption, scanClientHello } from "../../event/tls-client-hello.js";

/** What the first TLS bytes said. */
export interface Hello {
  /** Every byte read, handed to OpenSSL unchanged. */
  readonly bytes: Buffer;
  /** The SNI as sent (absent without one, or when the bytes are no ClientHello). */
  readonly raw?: Buffer | undefined;
  /** What it says about resumption (absent when the bytes are no ClientHello). */
  readonly resumption?: HelloResumption;
}

/**
 * Reads until the ClientHello is complete (or proves not to be one), under
 * the session's deadline. Plaintext read before the upgrade is dropped
 * first, as startTls does; undefined when the client went away.
 */
export function readClientHello(socket: Socket, initial: Buffer | undefined): Promise<Hello | undefined> {
  socket.removeAllListeners("data");
  socket.removeAllListeners("readable");
  socket.pause();
  while (socket.read() !== null);
  const chunks: Buffer[] = initial && initial.length > 0 ? [initial] : [];
  let total = chunks[0]?.length ?? 0;
  let need = 0;
  const scanned = (): Hello | "more" => {
    if (total < need) return "more";
    const bytes = Buffer.concat(chunks);
    const scan = scanClientHello(bytes);
    if (scan.kind === "more") {
      need = scan.need;
      return "more";
    }
    return scan.kind === "hello" ? { bytes, raw: scan.serverName, resumption: scan } : { bytes };
  };
  const first = scanned();
  if (first !== "more") return Promise.resolve(first);
  return new Promise((resolve) => {
    const done = (hello: Hello | undefined): void => {
      socket.off("readable", onReadable);
      socket.off("end", onGone);
      socket.off("close", onGone);
      socket.off("error", onGone);
      resolve(hello);
    };
    const onGone = (): void => done(undefined);
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        chunks.push(chunk);
        total += chunk.length;
      }
      const r = scanned();
      if (r !== "more") done(r);
    };
    socket.on("readable", onReadable);
    socket.once("end", onGone);
    socket.once("close", onGone);
    socket.once("error", onGone);
  });
}

/**
 * The two Node.js internals Postern relies on, in one place, with a check
 * that the running Node.js still has them (run once at start-up, so a Node
 * release that changes them fails with a clear message instead of at the
 * first connection):
 *
 * - `net._createServerHandle`: bind without listening. Node has no public
 *   call for it; node:cluster uses this one for the same purpose (the master
 *   binds, workers listen on the shared handle).
 * - `TLSWrap.verifyError()` (a TLSSocket's `_handle`): OpenSSL's verify
 *   result for a TLSSocket built on an existing socket, which STARTTLS needs;
 *   Node fills `authorized` only for sockets its own tls.Server accepted.
 */
import net from "node:net";
import { Duplex } from "node:stream";
import tls from "node:tls";

/** A bound, not yet listening socket handle (libuv TCP or Pipe wrap). */
export interface BoundHandle {
  close(): void;
}

interface HandleFactory {
  _createServerHandle?: (address: string | null, port: number, addressType: number, fd: number | undefined, flags: number) => BoundHandle | number;
}

/** What Node's verifyError() returns: null when verified, else an Error with OpenSSL's text and Node's code. */
export type VerifyError = (Error & { code?: string }) | null;

interface VerifyHandle {
  verifyError?: () => VerifyError;
}

/** libuv's flag for an IPv6 socket that does not accept IPv4. */
export const UV_TCP_IPV6ONLY = 1;

/** Binds without listening; a negative libuv error number on failure. */
export function createServerHandle(address: string | null, port: number, addressType: number, flags: number): BoundHandle | number {
  return (net as unknown as HandleFactory)._createServerHandle!(address, port, addressType, undefined, flags);
}

/** OpenSSL's verify result of `socket`'s handshake; undefined once the socket has no handle (destroyed). */
export function tlsVerifyError(socket: tls.TLSSocket): VerifyError | undefined {
  return (socket as unknown as { _handle?: VerifyHandle | null })._handle?.verifyError?.();
}

/**
 * Throws, naming what is missing, when this Node.js lacks an internal
 * above. Builds one unconnected TLSSocket on an in-memory stream to look.
 */
export function checkNodeInternals(): void {
  const missing: string[] = [];
  if (typeof (net as unknown as HandleFactory)._createServerHandle !== "function") missing.push("net._createServerHandle()");
  const probe = new tls.TLSSocket(
    new Duplex({
      read() {},
      write(_c, _e, done) {
        done();
      },
    }),
    { isServer: true, secureContext: tls.createSecureContext({}) },
  );
  const handle = (probe as unknown as { _handle?: VerifyHandle | null })._handle;
  if (typeof handle?.verifyError !== "function") missing.push("TLSSocket._handle.verifyError()");
  probe.destroy();
  if (missing.length > 0) {
    throw new Error(`Node.js ${process.version} lacks ${missing.join(" and ")}, which Postern relies on; run it on a supported Node.js release`);
  }
}

/**
 * Runs a login step list against a connected backend socket: reads into a
 * `proxy_buffer`-sized buffer like one recv() at a
 * time, checks each complete reply, sends the next line, and discards what
 * was read beyond the reply. The client socket is not touched.
 * Rules: docs/behaviour/session.md#session-9-backend-login.
 */
import type { Socket } from "node:net";
import { describeSystemError } from "../../core/errors.js";
import { type ConnectionLog, logEscape } from "../../core/log.js";
import type { LoginStep } from "./login-step.js";
import { debugLoginStep } from "../debug-log.js";

/** How the dialogue ended. */
export type LoginResult =
  /** logged in on `socket` (TLS after STARTTLS): send `toClient`, then relay; `backendPending` came after the reply */
  | { readonly kind: "ok"; readonly socket: Socket; readonly toClient: Buffer; readonly backendPending: Buffer }
  /** failed and logged: send `toClient` (proxy_pass_error_message) or the internal error, then close */
  | { readonly kind: "failed"; readonly toClient?: Buffer | undefined };

/** What runLogin needs. */
export interface LoginDriverParams {
  readonly socket: Socket;
  readonly steps: readonly LoginStep[];
  /** `proxy_buffer`. */
  readonly bufferSize: number;
  readonly passErrorMessage: boolean;
  readonly log: ConnectionLog;
  /**
   * The handshake after a step's `starttls`: the TLS socket, or null once the
   * failure is logged. Absent: such a step fails (nothing to upgrade with).
   */
  readonly startTls?: ((plain: Socket) => Promise<Socket | null>) | undefined;
}

/** The log line when the backend sends anything after its STARTTLS reply (response injection). */
export const STARTTLS_TRAILING = "upstream sent data after STARTTLS response";

/** Text up to the first NUL, as nginx's `%s` prints it. */
function cString(buf: Buffer, start: number, end: number): string {
  const nul = buf.indexOf(0, start);
  return buf.toString("latin1", start, nul >= 0 && nul < end ? nul : end);
}

/**
 * Login buffers of finished dialogues, by size, for the next ones: a fresh
 * zero-filled proxy_buffer per login was the largest allocation of a plain
 * login (bench/README.md). Nothing outlives a dialogue in its buffer: every
 * result is copied out before the buffer goes back.
 */
const spareBuffers = new Map<number, Buffer[]>();
/** Kept at most per size: 256 KiB at the default 16k, so an idle worker holds little. */
const SPARE_PER_SIZE = 16;

function takeBuffer(size: number): Buffer {
  return spareBuffers.get(size)?.pop() ?? Buffer.allocUnsafe(size);
}

function giveBack(buf: Buffer): void {
  let spare = spareBuffers.get(buf.length);
  if (!spare) spareBuffers.set(buf.length, (spare = []));
  if (spare.length < SPARE_PER_SIZE) spare.push(buf);
}

/** Runs the dialogue; resolves once logged in or failed (never rejects). */
export function runLogin(p: LoginDriverParams): Promise<LoginResult> {
  const { steps, log } = p;
  let socket = p.socket;
  // Only buf[0, len) is ever read, so a reused buffer's old bytes never show.
  const buf = takeBuffer(p.bufferSize);
  let len = 0;
  let step = 0;
  // Bytes the socket delivered but a recv() of the remaining space would not have taken yet.
  const unread: Buffer[] = [];

  return new Promise<LoginResult>((resolve) => {
    let settled = false;
    const detach = (): void => {
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("error", onError);
      socket.off("close", onEnd);
    };
    const attach = (): void => {
      socket.on("data", onData);
      socket.on("end", onEnd);
      socket.on("close", onEnd);
      socket.on("error", onError);
    };
    const finish = (r: LoginResult): void => {
      if (settled) return;
      settled = true;
      detach();
      giveBack(buf);
      resolve(r);
    };
    const refuse = (action: string | undefined, message: string): false => {
      if (action !== undefined) log.action = action;
      log.error(message);
      finish({ kind: "failed" });
      return false;
    };

    /** The backend said yes to STARTTLS: nothing may follow the reply; then the handshake, then `then`. */
    const upgrade = (then: { readonly action: string; readonly line: Buffer }): false => {
      const firstLineEnd = buf.subarray(0, len).indexOf("\r\n", 0, "latin1") + 2;
      if (firstLineEnd !== len || unread.length > 0 || socket.readableLength > 0) return refuse(undefined, STARTTLS_TRAILING);
      if (!p.startTls) return refuse(undefined, "STARTTLS to upstream is not configured");
      detach();
      socket.pause();
      p.startTls(socket).then(
        (secure) => {
          if (settled) return;
          if (!secure) {
            finish({ kind: "failed" });
            return;
          }
          socket = secure;
          attach();
          log.action = then.action;
          socket.write(then.line);
          step++;
          len = 0;
          socket.resume();
        },
        () => finish({ kind: "failed" }),
      );
      return false;
    };

    /** One nginx read event: recv into the free space, then judge the buffer. */
    const recvOnce = (): boolean => {
      const chunk = unread[0]!;
      const n = Math.min(chunk.length, buf.length - len);
      if (n === 0) {
        // recv() with no room returns 0: nginx treats it as the backend closing.
        finish({ kind: "failed" });
        return false;
      }
      chunk.copy(buf, len, 0, n);
      len += n;
      if (n === chunk.length) unread.shift();
      else unread[0] = chunk.subarray(n);
      return judge();
    };

    /** Returns true when more unread data may be processed. */
    const judge = (): boolean => {
      log.action = "reading response from upstream";
      // After a STARTTLS request, a second line in the same read is injected data: fail at once.
      if (steps[step]!.next.kind === "starttls") {
        const end = buf.subarray(0, len).indexOf("\r\n", 0, "latin1");
        if (end >= 0 && end + 2 < len) return refuse(undefined, STARTTLS_TRAILING);
      }
      if (len < 4) return true;
      if (buf[len - 2] !== 0x0d || buf[len - 1] !== 0x0a) {
        if (len === buf.length) {
          log.error(`upstream sent too long response line: "${logEscape(cString(buf, 0, len - 1))}"`);
          finish({ kind: "failed" });
          return false;
        }
        return true;
      }
      const current = steps[step]!;
      const verdict = current.check(buf, len);
      if (verdict.kind === "again") return true;
      if (verdict.kind === "refuse") return refuse(undefined, verdict.message);
      debugLoginStep(log, current, verdict.kind !== "invalid");
      if (verdict.kind === "invalid") {
        if (p.passErrorMessage) {
          log.info(`upstream sent invalid response: "${logEscape(buf.subarray(verdict.from, len - 2))}"`);
          finish({ kind: "failed", toClient: Buffer.from(buf.subarray(0, len)) });
        } else {
          log.error(`upstream sent invalid response: "${logEscape(cString(buf, verdict.from, len - 2))}"`);
          finish({ kind: "failed" });
        }
        return false;
      }
      const decision = current.decide?.(buf.subarray(0, len));
      if (decision?.warn) log.write("warn", decision.warn);
      const next = decision?.next ?? current.next;
      if (next.kind === "fail") {
        log.action = next.action;
        log.error(next.message);
        finish({ kind: "failed" });
        return false;
      }
      if (next.kind === "done") {
        const toClient = next.reply === "relay" ? Buffer.from(buf.subarray(0, len)) : next.reply;
        socket.pause();
        finish({ kind: "ok", socket, toClient, backendPending: Buffer.concat(unread) });
        return false;
      }
      if (next.kind === "starttls") return upgrade(next.then);
      log.action = next.action;
      socket.write(next.line);
      step += 1 + (decision?.skip ?? 0);
      len = 0;
      return true;
    };

    const onData = (chunk: Buffer): void => {
      unread.push(chunk);
      while (!settled && unread.length > 0) {
        if (!recvOnce()) return;
        // Bytes left after a reply belonged to that same recv() in nginx only
        // if they fit; what did not fit stays for the next read.
      }
    };
    const onEnd = (): void => finish({ kind: "failed" });
    const onError = (err: Error): void => {
      log.error(`recv() failed ${describeSystemError(err)}`);
      finish({ kind: "failed" });
    };
    attach();
    socket.resume();
  });
}

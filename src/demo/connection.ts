/**
 * One client connection of the demo mail backend: reads CRLF (or LF)
 * lines no longer than a limit, or a counted run of bytes (an IMAP
 * literal), and hands them to the protocol one at a time. Every client is
 * treated as hostile: a line past the limit, an idle client, too many
 * errors or a client that does not read its replies ends the connection,
 * never the process.
 */
import type { Socket } from "node:net";

/** What a protocol does with its input. */
export interface ProtocolHandler {
  /** One line, without its CRLF or LF. */
  line(line: Buffer): void;
  /** The bytes asked for with `readBytes`. */
  bytes?(data: Buffer): void;
  /** A line longer than the limit: the last words before the connection closes. */
  tooLong(): string;
}

/** Stop reading while this much of our output waits for the client. */
const HIGH_WATER = 4 * 1024 * 1024;
/** A client silent this long is closed (RFC 3501's autologout is 30 min; a demo needs less). */
export const IDLE_MS = 10 * 60 * 1000;

export class LineConnection {
  readonly socket: Socket;
  #handler: ProtocolHandler | undefined;
  #buffer: Buffer = Buffer.alloc(0);
  #maxLine: number;
  /** Bytes still wanted by `readBytes`, or null when reading lines. */
  #want: number | null = null;
  #closed = false;
  #errors = 0;

  constructor(socket: Socket, maxLine: number) {
    this.socket = socket;
    this.#maxLine = maxLine;
    socket.setTimeout(IDLE_MS, () => this.close());
    socket.on("data", (chunk: Buffer) => {
      this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
      this.#pump();
    });
    socket.on("drain", () => {
      socket.resume();
      this.#pump();
    });
    // A reset or a write after the client left is that client's end, nothing more.
    socket.on("error", () => this.close());
    socket.on("close", () => {
      this.#closed = true;
    });
  }

  /** The protocol that reads this connection (set once, right after construction). */
  set handler(h: ProtocolHandler) {
    this.#handler = h;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Changes the line limit (SMTP's DATA allows longer lines than its commands). */
  set maxLine(n: number) {
    this.#maxLine = n;
  }

  /** The next `n` bytes go to `bytes()` instead of `line()`. */
  readBytes(n: number): void {
    this.#want = n;
  }

  write(text: string | Buffer): void {
    if (this.#closed) return;
    this.socket.write(text);
  }

  /** Counts a protocol error; true when the client made too many and was closed. */
  error(limit = 20): boolean {
    if (++this.#errors < limit) return false;
    this.close();
    return true;
  }

  /** Sends the last words (if any) and closes. */
  close(last?: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#buffer = Buffer.alloc(0);
    if (last !== undefined) this.socket.end(last);
    else this.socket.end();
    // a client that never reads must not hold the socket open
    this.socket.setTimeout(10_000, () => this.socket.destroy());
  }

  #pump(): void {
    try {
      this.#read();
    } catch (e) {
      // a bug in the demo must cost this client its connection, not everyone the process
      LineConnection.onBug(e);
      this.close();
    }
  }

  /** Reports a handler's exception (the program logs it; tests may count it). */
  static onBug: (e: unknown) => void = (e) => {
    process.stderr.write(`postern demo mail backend: connection closed after an internal error: ${(e as Error)?.stack ?? String(e)}\n`);
  };

  #read(): void {
    const h = this.#handler;
    if (!h) return;
    while (!this.#closed) {
      if (this.socket.writableLength > HIGH_WATER) {
        // our replies pile up: read nothing more until the client takes them
        this.socket.pause();
        return;
      }
      if (this.#want !== null) {
        if (this.#buffer.length < this.#want) return;
        const data = this.#buffer.subarray(0, this.#want);
        this.#buffer = this.#buffer.subarray(this.#want);
        this.#want = null;
        h.bytes?.(data);
        continue;
      }
      const lf = this.#buffer.indexOf(0x0a);
      if (lf < 0 || lf > this.#maxLine + 1) {
        if (lf > this.#maxLine + 1 || this.#buffer.length > this.#maxLine + 1) this.close(h.tooLong());
        return;
      }
      const end = lf > 0 && this.#buffer[lf - 1] === 0x0d ? lf - 1 : lf;
      const line = this.#buffer.subarray(0, end);
      this.#buffer = this.#buffer.subarray(lf + 1);
      h.line(line);
    }
  }
}

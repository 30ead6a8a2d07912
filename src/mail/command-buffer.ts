/**
 * A session's command buffer, filled and reset exactly like nginx's
 * (ngx_mail_read_command and the protocol handlers around it):
 *
 * - one buffer of `*_client_buffer` bytes, allocated at the first byte
 *   received (a bare handshake or a proxied session holds none);
 * - bytes land at [last, size), the front end's parser reads from pos, one
 *   command per call, so pipelined commands are taken one at a time;
 * - the buffer is rewound to its start only once everything in it has been
 *   consumed, and only when the front end allows it (nginx keeps it during a
 *   SASL exchange, so a long exchange must fit in one buffer);
 * - bytes that do not fit wait in a backlog (nginx leaves them in the
 *   kernel); past a buffer's worth the socket is paused;
 * - full, unrewindable and still no complete command: `too long command`.
 *
 * The session (src/mail/session.ts) and the front-end unit tests' fake
 * session (test/mail/fake-session.ts) both drive their front ends through
 * `pump`, so the tests read input exactly as production does.
 *
 * Rules: docs/behaviour/session.md#session-3-the-command-buffer,
 * #session-4-pipelining, #session-5-too-long-commands.
 */

const NO_BUFFER = Buffer.alloc(0);

/** How the buffer throttles the socket it is filled from. */
export interface InputFlow {
  /** More than a buffer's worth waits beyond the buffer: stop reading. */
  pause(): void;
  /** The backlog fits in a buffer again: reading may go on (called after every fill). */
  resume(): void;
}

/** The session side of the read loop, as `pump` sees it. */
export interface CommandReader {
  /** False while no command may be taken (busy, closed, the client not reading our replies). */
  ready(): boolean;
  /** The front end's parser: handles at most one command; bytes used, 0 = incomplete. */
  consume(input: Buffer): number;
  /** False while the buffer must not be rewound although fully consumed (a SASL exchange). */
  rewindable(): boolean;
  /** The buffer is full and holds no complete command; expected to close the session. */
  tooLong(): void;
}

/** One session's command buffer. */
export class CommandBuffer {
  /** The buffer's size: `*_client_buffer` (POP3: 128). */
  readonly size: number;
  readonly #flow: InputFlow;
  #buffer: Buffer = NO_BUFFER;
  #pos = 0;
  #last = 0;
  #backlog: Buffer[] = [];
  #backlogBytes = 0;
  /** Set by `dropAfterCommand`: the command being consumed is the last one read. */
  #dropAfterCommand = false;
  /** Who waits for the next bytes (`arrived`). */
  #waiters: (() => void)[] = [];

  constructor(size: number, flow: InputFlow) {
    this.size = size;
    this.#flow = flow;
  }

  /** Takes bytes from the socket (kept by reference until they fit in the buffer). */
  push(chunk: Buffer): void {
    this.#backlog.push(chunk);
    this.#backlogBytes += chunk.length;
    // a client that pipelines faster than we answer is throttled, not buffered
    if (this.#backlogBytes > this.size) this.#flow.pause();
    if (this.#waiters.length > 0) for (const w of this.#waiters.splice(0)) w();
  }

  /** Settles when bytes are pending (at once if some already are): SMTP's greeting delay waits on it. */
  arrived(): Promise<void> {
    if (this.hasPending()) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** True when bytes were received and not yet consumed. */
  hasPending(): boolean {
    return this.#last > this.#pos || this.#backlogBytes > 0;
  }

  /** A copy of the bytes received and not yet consumed (the hand-off's pipelined input, logs). */
  pending(): Buffer {
    return Buffer.concat([this.#buffer.subarray(this.#pos, this.#last), ...this.#backlog]);
  }

  /** Everything read into the buffer, consumed or not: what `too long command` may quote. */
  contents(): Buffer {
    return this.#buffer.subarray(0, this.#last);
  }

  /** The unconsumed part of the buffer: what the front end's too-long reply looks at. */
  unparsed(): Buffer {
    return this.#buffer.subarray(this.#pos, this.#last);
  }

  /** Forgets every byte received and not yet consumed, and frees the buffer (hand-off). */
  discard(): void {
    this.#dropAfterCommand = false;
    this.#buffer = NO_BUFFER;
    this.#pos = this.#last = 0;
    this.#backlog = [];
    this.#backlogBytes = 0;
  }

  /**
   * STARTTLS: once the command being consumed returns, everything after it
   * is discarded (it was sent in plaintext and must never run inside TLS).
   */
  dropAfterCommand(): void {
    this.#dropAfterCommand = true;
  }

  /** Feeds buffered commands to `reader`, one per `consume`, while it is ready. */
  pump(reader: CommandReader): void {
    while (reader.ready()) {
      if (this.#pos === this.#last) {
        if (reader.rewindable()) this.#pos = this.#last = 0;
        if (!this.#fill()) {
          // a full, unrewindable buffer with more input waiting: too long
          if (this.#last === this.size && this.#backlogBytes > 0) reader.tooLong();
          return;
        }
      }
      const used = reader.consume(this.#buffer.subarray(this.#pos, this.#last));
      if (used > 0) {
        this.#pos += used;
        if (this.#dropAfterCommand) this.discard();
        continue;
      }
      if (this.#last < this.size) {
        if (this.#fill()) continue;
        return;
      }
      reader.tooLong();
      return;
    }
  }

  /** Moves waiting bytes into the buffer's free space; true if any moved. */
  #fill(): boolean {
    let moved = false;
    if (this.#buffer === NO_BUFFER && this.#backlog.length > 0) this.#buffer = Buffer.allocUnsafe(this.size);
    while (this.#last < this.#buffer.length && this.#backlog.length > 0) {
      const chunk = this.#backlog[0]!;
      const n = Math.min(chunk.length, this.#buffer.length - this.#last);
      chunk.copy(this.#buffer, this.#last, 0, n);
      this.#last += n;
      this.#backlogBytes -= n;
      if (n === chunk.length) this.#backlog.shift();
      else this.#backlog[0] = chunk.subarray(n);
      moved = true;
    }
    if (this.#backlogBytes <= this.size) this.#flow.resume();
    return moved;
  }
}

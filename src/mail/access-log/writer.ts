/**
 * Where access-log lines go: a file (buffered or not, gzip members when
 * asked) or a syslog server, as ngx_stream_log_module writes them.
 *
 * Files are opened with the error log's guard (core/safe-open.ts: no
 * planted link followed when root opens them), before the worker gives up
 * its privileges, and the master prepares them for the workers' user on
 * USR1 (runtime.ts serverLogFiles). A failed write or reopen never stops
 * the proxy: it is reported to the error log (at most once a second for
 * writes, as nginx does) and the line is dropped or the old file kept.
 */
import { gzipSync } from "node:zlib";
import { AppendFile } from "../../core/append-file.js";
import { describeSystemError } from "../../core/errors.js";
import { type ErrorLog, SyslogSink, type SyslogTarget } from "../../core/log.js";

/** One destination of access-log lines. */
export interface AccessLogWriter {
  /** `line` is a byte string (latin1) without its newline. */
  write(line: string): void;
  /** Writes what is buffered (flush=, reopen, exit). */
  flush(): void;
  /** Reopens the file after a rotation; throws nginx's open() message (the old file stays). */
  reopen(): void;
  close(): void;
}

/** buffer=, gzip=, flush= of one file. */
export interface BufferSpec {
  readonly size: number;
  readonly flushMs: number;
  /** 1..9, 0 without gzip. */
  readonly gzip: number;
}

/**
 * A file, written line by line or through a buffer. Without `buffer=` the
 * lines of one event-loop turn go out in one write() at its end (nginx
 * writes each line at once; a turn that closes many sessions would cost a
 * system call per line here, the largest part of the access log's cost
 * under connection-heavy load): no line waits for a later turn.
 */
export class AccessLogFile implements AccessLogWriter {
  readonly path: string;
  readonly #buffer: BufferSpec | undefined;
  readonly #errors: () => ErrorLog;
  readonly #file: AppendFile;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #timer: NodeJS.Timeout | undefined;
  #lastError = 0;
  /** Unbuffered: the lines of this turn, written by `#endOfTurn`. */
  #turn = "";
  #turnScheduled = false;
  readonly #endOfTurn = (): void => {
    this.#turnScheduled = false;
    this.#writeTurn();
  };

  constructor(path: string, buffer: BufferSpec | undefined, errors: () => ErrorLog) {
    this.path = path;
    this.#buffer = buffer;
    this.#errors = errors;
    this.#file = new AppendFile(path);
  }

  write(line: string): void {
    const b = this.#buffer;
    if (!b) {
      this.#turn += `${line}\n`;
      if (!this.#turnScheduled) {
        this.#turnScheduled = true;
        setImmediate(this.#endOfTurn);
      }
      return;
    }
    const bytes = Buffer.from(`${line}\n`, "latin1");
    if (this.#pendingBytes + bytes.length > b.size) this.flush();
    this.#pending.push(bytes);
    this.#pendingBytes += bytes.length;
    if (this.#pendingBytes >= b.size) {
      this.flush();
      return;
    }
    if (b.flushMs > 0 && !this.#timer) this.#timer = setTimeout(() => this.flush(), b.flushMs).unref();
  }

  #writeTurn(): void {
    if (this.#turn === "") return;
    const data = Buffer.from(this.#turn, "latin1");
    this.#turn = "";
    this.#writeOut(data);
  }

  flush(): void {
    this.#writeTurn();
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pendingBytes === 0) return;
    const data = Buffer.concat(this.#pending);
    this.#pending = [];
    this.#pendingBytes = 0;
    // each flush is one gzip member: `zcat` reads the file whole at any time
    this.#writeOut(this.#buffer?.gzip ? gzipSync(data, { level: this.#buffer.gzip }) : data);
  }

  #writeOut(data: Buffer): void {
    try {
      this.#file.write(data);
    } catch (err) {
      const now = Date.now();
      if (now - this.#lastError < 1000) return;
      this.#lastError = now;
      this.#errors().alert(`write() to "${this.path}" failed ${describeSystemError(err)}`);
    }
  }

  reopen(): void {
    this.flush();
    this.#file.reopen();
  }

  close(): void {
    this.flush();
    this.#file.close();
  }
}

/** A syslog server: one datagram per line, severity `info` unless `severity=` says otherwise (nginx's default for access logs). */
export class AccessLogSyslog implements AccessLogWriter {
  readonly #sink: SyslogSink;
  readonly #target: SyslogTarget;

  constructor(target: SyslogTarget) {
    this.#target = target;
    this.#sink = new SyslogSink(target, "debug", "latin1");
  }

  /** The line's bytes as they are (an 8-bit login with escape=json or none is not made U+FFFD). */
  write(line: string): void {
    this.#sink.write(this.#target.severity ?? "info", line, line);
  }

  flush(): void {}
  reopen(): void {}
  close(): void {
    this.#sink.close();
  }
}

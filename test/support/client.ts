/** A line-oriented mail protocol client over TCP or TLS, with STARTTLS and a transcript. */
import net from "node:net";
import { Duplex } from "node:stream";
import tls from "node:tls";

/** TLS settings for implicit TLS or startTls(). Defaults: no verification, servername unset. */
export interface ClientTlsOptions {
  ca?: string | string[];
  cert?: string;
  key?: string;
  alpn?: string[];
  servername?: string;
  minVersion?: tls.SecureVersion;
  maxVersion?: tls.SecureVersion;
  /** A session (from a previous client's `session`) to resume. */
  session?: Buffer;
  /** Verify the server certificate (default false). */
  rejectUnauthorized?: boolean;
}

/** Options for MailClient.connect(). */
export interface ClientOptions {
  port: number;
  /** Always loopback; only 127.0.0.1 is allowed in tests. */
  host?: "127.0.0.1";
  /** Implicit TLS: handshake right after connecting. */
  tls?: ClientTlsOptions;
  /** Default timeout for each read, in ms (default 5000). */
  timeoutMs?: number;
  /** Local address to connect from (another loopback address, e.g. 127.0.0.5, so the client differs from the proxy). */
  localAddress?: string;
}

/** One transcript entry: `C` = sent by the client, `S` = received from the server. */
export interface TranscriptEntry {
  dir: "C" | "S";
  data: string;
}

/** A test client in the style of nginx-tests' helper: send, readLine, read, readAll, expectClosed. */
export class MailClient {
  /** Everything sent and received, in order (latin1 text). */
  readonly transcript: TranscriptEntry[] = [];
  #socket: net.Socket | tls.TLSSocket;
  #buffer = "";
  #ended = false;
  #error: NodeJS.ErrnoException | undefined;
  #wake: Array<() => void> = [];
  #timeoutMs: number;
  #session: Buffer | undefined;

  private constructor(socket: net.Socket | tls.TLSSocket, timeoutMs: number) {
    this.#socket = socket;
    this.#timeoutMs = timeoutMs;
    this.#attach(socket);
  }

  /** Connects (and with `tls`, completes the handshake) to 127.0.0.1:port. */
  static async connect(options: ClientOptions): Promise<MailClient> {
    const timeoutMs = options.timeoutMs ?? 5000;
    const host = options.host ?? "127.0.0.1";
    const socket = options.tls
      ? tls.connect({ host, port: options.port, ...tlsOptions(options.tls) })
      : net.connect({ host, port: options.port, ...(options.localAddress ? { localAddress: options.localAddress } : {}) });
    // Listeners go on before the handshake ends: a TLS 1.3 ticket can arrive together with it.
    const client = new MailClient(socket, timeoutMs);
    await waitForEvent(socket, options.tls ? "secureConnect" : "connect", timeoutMs, `connect to ${host}:${options.port}`);
    return client;
  }

  /** The TLS socket when the connection is encrypted (for protocol/cipher/certificate checks). */
  get tlsSocket(): tls.TLSSocket | undefined {
    return this.#socket instanceof tls.TLSSocket ? this.#socket : undefined;
  }

  /** The client's local port (how the proxy's log names the client). */
  get localPort(): number | undefined {
    return this.#socket.localPort;
  }

  /** The most recent TLS session received from the server (for resumption tests). */
  get session(): Buffer | undefined {
    return this.#session;
  }

  /** The transcript as text, one `C: ...`/`S: ...` line per entry (CR/LF shown escaped). */
  transcriptText(): string {
    return this.transcript.map((e) => `${e.dir}: ${JSON.stringify(e.data)}`).join("\n");
  }

  /** Sends bytes (strings are sent as latin1, so every char is one byte). */
  async send(data: string | Buffer): Promise<void> {
    const text = typeof data === "string" ? data : data.toString("latin1");
    this.transcript.push({ dir: "C", data: text });
    await new Promise<void>((resolve, reject) => {
      this.#socket.write(text, "latin1", (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Reads one line, its line ending included. */
  readLine(timeoutMs?: number): Promise<string> {
    return this.read(/\n/, timeoutMs);
  }

  /** Reads until the unread data matches `until`; returns the data up to the end of the match. */
  async read(until: RegExp, timeoutMs = this.#timeoutMs): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    // A global or sticky regex would carry lastIndex between calls.
    const re = until.global || until.sticky ? new RegExp(until.source, until.flags.replace(/[gy]/g, "")) : until;
    for (;;) {
      const m = re.exec(this.#buffer);
      if (m) {
        const end = m.index + m[0].length;
        const out = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end);
        return out;
      }
      if (this.#ended || this.#error) {
        throw new Error(`connection closed before ${until} matched; unread ${JSON.stringify(this.#buffer)}\n${this.transcriptText()}`);
      }
      if (!(await this.#waitData(deadline))) {
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${until}; unread ${JSON.stringify(this.#buffer)}\n${this.transcriptText()}`);
      }
    }
  }

  /** Returns everything that arrives within `ms` (plus what was already unread). */
  async readAll(ms: number): Promise<string> {
    const deadline = Date.now() + ms;
    while (!this.#ended && !this.#error && (await this.#waitData(deadline)));
    const out = this.#buffer;
    this.#buffer = "";
    return out;
  }

  /** Waits until the server closes the connection; returns any data that came before. Fails on timeout. */
  async expectClosed(timeoutMs = this.#timeoutMs): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#ended && !this.#error) {
      if (!(await this.#waitData(deadline))) {
        throw new Error(`connection still open after ${timeoutMs} ms; unread ${JSON.stringify(this.#buffer)}\n${this.transcriptText()}`);
      }
    }
    const out = this.#buffer;
    this.#buffer = "";
    return out;
  }

  /**
   * True when the server reset the connection: a server that closes with
   * unread input (nginx after "too long command") makes the kernel send RST,
   * and replies still in flight may never be read.
   */
  get reset(): boolean {
    return this.#error?.code === "ECONNRESET";
  }

  /** True once the server side has closed (EOF or error). */
  get closed(): boolean {
    return this.#ended || this.#error !== undefined;
  }

  /**
   * Upgrades the same TCP connection to TLS (after the protocol's STARTTLS
   * reply has been read). `preamble` (a PROXY header before implicit TLS)
   * leaves in the same write() as the ClientHello, so the server reads both
   * at once; it counts in the transcript as sent.
   */
  async startTls(options: ClientTlsOptions = {}, preamble?: string): Promise<void> {
    const plain = this.#socket;
    plain.removeAllListeners("data");
    plain.removeAllListeners("end");
    plain.removeAllListeners("close");
    if (preamble !== undefined) this.transcript.push({ dir: "C", data: preamble });
    const transport = preamble === undefined ? plain : prefixFirstWrite(plain, Buffer.from(preamble, "latin1"));
    const secure = tls.connect({ socket: transport, ...tlsOptions(options) });
    this.#socket = secure;
    this.#attach(secure);
    await waitForEvent(secure, "secureConnect", this.#timeoutMs, "STARTTLS handshake");
  }

  /** Closes the connection from the client side. */
  close(): void {
    this.#socket.destroy();
  }

  #attach(socket: net.Socket | tls.TLSSocket): void {
    socket.on("data", (chunk: Buffer) => {
      const text = chunk.toString("latin1");
      this.transcript.push({ dir: "S", data: text });
      this.#buffer += text;
      this.#notify();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("error", (err: Error) => {
      this.#error = err;
      this.#notify();
    });
    if (socket instanceof tls.TLSSocket)
      socket.on("session", (s: Buffer) => {
        this.#session = s;
      });
  }

  #notify(): void {
    for (const w of this.#wake.splice(0)) w();
  }

  /** Waits for new data or close; false if the deadline passed first. */
  #waitData(deadline: number): Promise<boolean> {
    const left = deadline - Date.now();
    if (left <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), left);
      this.#wake.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
}

/** A stream over `socket` whose first write goes out with `prefix` in front of it, in one write(). */
function prefixFirstWrite(socket: net.Socket, prefix: Buffer): Duplex {
  let first: Buffer | undefined = prefix;
  const stream: Duplex = new Duplex({
    write(chunk: Buffer, _encoding, callback) {
      const data = first ? Buffer.concat([first, chunk]) : chunk;
      first = undefined;
      socket.write(data, callback);
    },
    read() {
      socket.resume();
    },
    final(callback) {
      socket.end(callback);
    },
    destroy(err, callback) {
      socket.destroy(err ?? undefined);
      callback(err);
    },
  });
  socket.on("data", (chunk: Buffer) => {
    if (!stream.push(chunk)) socket.pause();
  });
  socket.on("end", () => stream.push(null));
  socket.on("error", (err) => stream.destroy(err));
  socket.on("close", () => stream.destroy());
  return stream;
}

function tlsOptions(o: ClientTlsOptions): tls.ConnectionOptions {
  const out: tls.ConnectionOptions = { rejectUnauthorized: o.rejectUnauthorized ?? false };
  if (o.ca !== undefined) out.ca = o.ca;
  if (o.cert !== undefined) out.cert = o.cert;
  if (o.key !== undefined) out.key = o.key;
  if (o.alpn !== undefined) out.ALPNProtocols = o.alpn;
  if (o.servername !== undefined) out.servername = o.servername;
  if (o.minVersion !== undefined) out.minVersion = o.minVersion;
  if (o.maxVersion !== undefined) out.maxVersion = o.maxVersion;
  if (o.session !== undefined) out.session = o.session;
  return out;
}

function waitForEvent(socket: net.Socket, event: string, timeoutMs: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`${what}: timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once(event, () => {
      clearTimeout(timer);
      socket.removeListener("error", onError);
      resolve();
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      reject(new Error(`${what}: ${err.message}`));
    };
    socket.once("error", onError);
  });
}

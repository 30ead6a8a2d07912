/**
 * HTTP/1.1 message framing of an auth_http answer on a kept-alive
 * connection. The answer's meaning still comes from its header block
 * (response.ts, nginx's rules); this module only decides where the
 * message ends, strictly, so a connection is reused only after a
 * complete, well-framed response (RFC 9112 section 6):
 *
 *  - a status line `HTTP/1.x NNN` is required (no status line: the answer
 *    counts, the connection is closed);
 *  - `Transfer-Encoding` must be exactly `chunked`, alone, once;
 *    `Content-Length` digits only, once; both at once is invalid;
 *  - 1xx answers are invalid here; 204 and 304 have no body;
 *  - neither header: the body runs to the close, so the answer counts and
 *    the connection is closed;
 *  - `Connection: close` (or HTTP/1.0 without `keep-alive`) closes it;
 *    `Keep-Alive: timeout=N` shortens the idle time.
 */

/** Longest body (wire bytes, chunk framing included) read to reuse a connection. */
export const AUTH_BODY_LIMIT = 16 * 1024;

export type Framing =
  | { readonly kind: "length"; readonly length: number; readonly reusable: boolean; readonly idleMs: number | undefined }
  | { readonly kind: "chunked"; readonly reusable: boolean; readonly idleMs: number | undefined }
  /** The message ends at the header block and the connection is closed. */
  | { readonly kind: "close" }
  | { readonly kind: "invalid" }
  | { readonly kind: "tooLarge" };

const STATUS = /^HTTP\/1\.([01]) ([0-9]{3})(?: [^\r\n]*)?\r?\n/;

/** Reads the framing headers of a header block already accepted by parseAuthResponse. */
export function responseFraming(head: Buffer): Framing {
  const text = head.toString("latin1");
  const status = STATUS.exec(text);
  if (!status) return { kind: "close" };
  const minor = status[1]!;
  const code = Number(status[2]);
  if (code < 200) return { kind: "invalid" };
  let length: string | undefined;
  let te: string | undefined;
  const connection: string[] = [];
  let idleMs: number | undefined;
  for (const line of text.slice(status[0].length).split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === "content-length") {
      if (length !== undefined) return { kind: "invalid" };
      length = value;
    } else if (name === "transfer-encoding") {
      if (te !== undefined) return { kind: "invalid" };
      te = value;
    } else if (name === "connection") {
      connection.push(
        ...value
          .toLowerCase()
          .split(",")
          .map((t) => t.trim()),
      );
    } else if (name === "keep-alive") {
      const m = /(?:^|,)\s*timeout=([0-9]{1,6})\s*(?:,|$)/i.exec(value);
      if (m) idleMs = Number(m[1]) * 1000;
    }
  }
  const reusable = !connection.includes("close") && (minor === "1" || connection.includes("keep-alive"));
  if (te !== undefined) {
    if (length !== undefined || te.toLowerCase() !== "chunked") return { kind: "invalid" };
    return { kind: "chunked", reusable, idleMs };
  }
  if (code === 204 || code === 304) return { kind: "length", length: 0, reusable, idleMs };
  if (length === undefined) return { kind: "close" };
  if (!/^[0-9]{1,15}$/.test(length)) return { kind: "invalid" };
  const n = Number(length);
  if (n > AUTH_BODY_LIMIT) return { kind: "tooLarge" };
  return { kind: "length", length: n, reusable, idleMs };
}

/** Result of feeding body bytes. */
export type BodyState =
  | { readonly kind: "more" }
  /** `extra`: bytes received past the end of the message. */
  | { readonly kind: "done"; readonly extra: number }
  | { readonly kind: "invalid" }
  | { readonly kind: "tooLarge" };

/** Consumes (and discards) a body framed by Content-Length or chunked coding. */
export class BodyReader {
  readonly #framing: "length" | "chunked";
  #remaining: number;
  #seen = 0;
  /** chunked: bytes of the current unfinished line. */
  #line = "";
  #phase: "size" | "data" | "dataEnd" | "trailer" = "size";
  #state: BodyState = { kind: "more" };

  constructor(framing: { kind: "length"; length: number } | { kind: "chunked" }) {
    this.#framing = framing.kind;
    this.#remaining = framing.kind === "length" ? framing.length : 0;
    if (framing.kind === "length" && framing.length === 0) this.#state = { kind: "done", extra: 0 };
  }

  get state(): BodyState {
    return this.#state;
  }

  push(chunk: Buffer): BodyState {
    if (this.#state.kind !== "more") {
      if (this.#state.kind === "done" && chunk.length > 0) this.#state = { kind: "done", extra: this.#state.extra + chunk.length };
      return this.#state;
    }
    this.#seen += chunk.length;
    if (this.#framing === "length") {
      if (chunk.length >= this.#remaining) {
        this.#state = { kind: "done", extra: chunk.length - this.#remaining };
        this.#remaining = 0;
      } else {
        this.#remaining -= chunk.length;
      }
      return this.#state;
    }
    this.#state = this.#seen > AUTH_BODY_LIMIT ? { kind: "tooLarge" } : this.#chunked(chunk);
    return this.#state;
  }

  #chunked(chunk: Buffer): BodyState {
    let i = 0;
    while (i < chunk.length) {
      if (this.#phase === "data") {
        const take = Math.min(this.#remaining, chunk.length - i);
        i += take;
        this.#remaining -= take;
        if (this.#remaining === 0) this.#phase = "dataEnd";
        continue;
      }
      // size, dataEnd and trailer lines: CRLF-terminated, short
      const c = chunk[i++]!;
      if (c !== 0x0a) {
        this.#line += String.fromCharCode(c);
        if (this.#line.length > 256) return { kind: "invalid" };
        continue;
      }
      if (!this.#line.endsWith("\r")) return { kind: "invalid" };
      const line = this.#line.slice(0, -1);
      this.#line = "";
      if (this.#phase === "dataEnd") {
        if (line !== "") return { kind: "invalid" };
        this.#phase = "size";
      } else if (this.#phase === "size") {
        const m = /^([0-9a-fA-F]{1,6})(;[\x21-\x7e \t]*)?$/.exec(line);
        if (!m) return { kind: "invalid" };
        const size = parseInt(m[1]!, 16);
        if (size > AUTH_BODY_LIMIT) return { kind: "tooLarge" };
        if (size === 0) this.#phase = "trailer";
        else {
          this.#remaining = size;
          this.#phase = "data";
        }
      } else {
        // trailer fields until the empty line
        if (line === "") return { kind: "done", extra: chunk.length - i };
        if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\x20-\x7e\t]*$/.test(line)) return { kind: "invalid" };
      }
    }
    return { kind: "more" };
  }
}

/**
 * The IMAP auth-state front end: a command table for the
 * start state, one handler per SASL step, and nginx's reply forms. Handlers
 * return a `Step`; `ImapFrontEnd` turns steps into bytes and state changes.
 */
import type { FrontEnd, SessionPort } from "../front-end.js";
import {
  PASSWORD_CHALLENGE, USERNAME_CHALLENGE, cramMd5Challenge, decodeBase64Strict,
  saslCramMd5, saslExternal, saslLoginPassword, saslLoginUsername, saslPlain, type SaslResult,
} from "../sasl.js";
import type { Credentials } from "../types.js";
import { hasLineBreakOrNul } from "../line-bytes.js";
import { imapClientBufferDirective, imapWire } from "./module.js";
import { type ImapCommandName, ImapParser, asciiUpper } from "./parser.js";
import { cutAtAuthCommand, taggedWord } from "../too-long-log.js";

/** The commands that carry credentials: a too-long one is logged as tag and name only. */
const AUTH_WORD = taggedWord(["LOGIN", "AUTHENTICATE"]);

/** The session states, after nginx's ngx_imap_state_e, plus the hand-off and the end. */
export type ImapState =
  | "start" | "authLoginUsername" | "authLoginPassword" | "authPlain" | "authCramMd5" | "authExternal"
  | "authenticating" | "closed";

/** The states that wait for one SASL response line. */
type SaslState = "authLoginUsername" | "authLoginPassword" | "authPlain" | "authCramMd5" | "authExternal";

/** What a handler decided. */
type Step =
  /** `[untagged]<tag> OK completed`, then close if `quit` */
  | { readonly kind: "ok"; readonly untagged?: string; readonly quit?: boolean }
  /** a tagless challenge line; the next line is a SASL response for `next` */
  | { readonly kind: "challenge"; readonly line: string; readonly next: SaslState }
  /** `<tag> BAD invalid command`, not counted as a syntax error */
  | { readonly kind: "invalid" }
  /** `BAD invalid command` without any tag (nginx's AUTHENTICATE LOGIN username quirk) */
  | { readonly kind: "untaggedInvalid" }
  /** `<tag> OK completed`, then the TLS upgrade */
  | { readonly kind: "starttls" }
  /** credentials complete: hand them to auth_http */
  | { readonly kind: "authenticate"; readonly credentials: Credentials };

/** What a handler may read about its session. */
interface Context {
  readonly session: SessionPort;
  /** The login of an AUTHENTICATE LOGIN exchange, between its two steps. */
  login: Buffer;
}

type CommandHandler = (cx: Context, args: readonly Buffer[]) => Step;
type ResponseHandler = (cx: Context, response: Buffer) => Step;

const OK_COMPLETED = "OK completed\r\n";
const INVALID = "BAD invalid command\r\n";
const LITERAL_CONTINUATION = "+ OK\r\n";
const GREETING = "* OK IMAP4 ready\r\n";
const EMPTY = Buffer.alloc(0);

const INVALID_STEP: Step = { kind: "invalid" };

function starttlsOnly(cx: Context): boolean {
  return cx.session.starttls === "only";
}

/** Mirrors nginx's `s->login`, which the log context prints as `login: "..."`. */
function setLogLogin(cx: Context, login: Buffer): void {
  cx.session.log.context.login = login.length > 0 ? login.toString("latin1") : undefined;
}

/** A failed SASL step: nginx's info line, then the invalid reply. */
function saslFailure(cx: Context, result: SaslResult<unknown> & { ok: false }): Step {
  cx.session.log.info(result.log);
  return INVALID_STEP;
}

function authenticate(cx: Context, credentials: Credentials): Step {
  setLogLogin(cx, credentials.login);
  return { kind: "authenticate", credentials };
}

function noop(): Step {
  return { kind: "ok" };
}

function logout(): Step {
  return { kind: "ok", untagged: "* BYE\r\n", quit: true };
}

function capability(cx: Context): Step {
  const strings = imapWire(cx.session.server);
  const mode = cx.session.starttls;
  const untagged = mode === "on" ? strings.starttlsCapability : mode === "only" ? strings.starttlsOnlyCapability : strings.capability;
  return { kind: "ok", untagged };
}

function starttls(cx: Context): Step {
  return cx.session.starttls === "off" ? INVALID_STEP : { kind: "starttls" };
}

function login(cx: Context, args: readonly Buffer[]): Step {
  if (starttlsOnly(cx)) return INVALID_STEP;
  const [user, password] = args;
  if (args.length !== 2 || user!.length === 0) return INVALID_STEP;
  // a literal or a quoted string can carry CR, LF or NUL: never sent on
  if (hasLineBreakOrNul(user!) || hasLineBreakOrNul(password!)) {
    cx.session.log.info(`client sent invalid ${hasLineBreakOrNul(user!) ? "login" : "password"} in LOGIN command`);
    return INVALID_STEP;
  }
  return authenticate(cx, { method: "plain", login: user!, password: password! });
}

/** AUTHENTICATE's mechanisms: `args` are the arguments after the mechanism name. */
const MECHANISMS: ReadonlyMap<string, (cx: Context, args: readonly Buffer[]) => Step> = new Map([
  ["PLAIN", authenticatePlain],
  ["LOGIN", authenticateLogin],
  ["CRAM-MD5", authenticateCramMd5],
  ["EXTERNAL", authenticateExternal],
]);

function authenticateCommand(cx: Context, args: readonly Buffer[]): Step {
  if (starttlsOnly(cx) || args.length === 0) return INVALID_STEP;
  const mechanism = MECHANISMS.get(asciiUpper(args[0]!));
  return mechanism ? mechanism(cx, args.slice(1)) : INVALID_STEP;
}

function authenticatePlain(cx: Context, args: readonly Buffer[]): Step {
  if (args.length === 0) return { kind: "challenge", line: "+ \r\n", next: "authPlain" };
  return args.length === 1 ? plainResponse(cx, args[0]!) : INVALID_STEP;
}

function authenticateLogin(cx: Context, args: readonly Buffer[]): Step {
  if (args.length === 0) return { kind: "challenge", line: `+ ${USERNAME_CHALLENGE}\r\n`, next: "authLoginUsername" };
  if (args.length !== 1) return INVALID_STEP;
  // an initial response is the user name; a bad one gets the normal tagged reply
  const step = loginUsernameResponse(cx, args[0]!);
  return step.kind === "untaggedInvalid" ? INVALID_STEP : step;
}

function authenticateCramMd5(cx: Context, args: readonly Buffer[]): Step {
  if (args.length !== 0 || !imapWire(cx.session.server).authMethods.has("cram-md5")) return INVALID_STEP;
  return { kind: "challenge", line: `+ ${cramMd5Challenge(cx.session.salt())}\r\n`, next: "authCramMd5" };
}

function authenticateExternal(cx: Context, args: readonly Buffer[]): Step {
  // Postern is stricter than nginx: EXTERNAL with an initial response also needs `imap_auth external`
  if (args.length > 1 || !imapWire(cx.session.server).authMethods.has("external")) return INVALID_STEP;
  if (args.length === 0) return { kind: "challenge", line: `+ ${USERNAME_CHALLENGE}\r\n`, next: "authExternal" };
  return externalResponse(cx, args[0]!);
}

function plainResponse(cx: Context, response: Buffer): Step {
  const r = saslPlain(response);
  if (!r.ok) return saslFailure(cx, r);
  return authenticate(cx, { method: "plain", login: r.value.login, password: r.value.password });
}

function loginUsernameResponse(cx: Context, response: Buffer): Step {
  const r = saslLoginUsername(response);
  if (!r.ok) {
    cx.session.log.info(r.log);
    return { kind: "untaggedInvalid" };
  }
  cx.login = r.value;
  setLogLogin(cx, r.value);
  return { kind: "challenge", line: `+ ${PASSWORD_CHALLENGE}\r\n`, next: "authLoginPassword" };
}

function loginPasswordResponse(cx: Context, response: Buffer): Step {
  const r = saslLoginPassword(response);
  if (!r.ok) return saslFailure(cx, r);
  return authenticate(cx, { method: "plain", login: cx.login, password: r.value });
}

function cramMd5Response(cx: Context, response: Buffer): Step {
  const r = saslCramMd5(response);
  if (!r.ok) {
    // nginx keeps the decoded login even when the digest is refused; the log line shows it
    const decoded = decodeBase64Strict(response);
    if (decoded) {
      const space = decoded.indexOf(0x20);
      setLogLogin(cx, space < 0 ? decoded : decoded.subarray(0, space));
    }
    return saslFailure(cx, r);
  }
  return authenticate(cx, { method: "cram-md5", login: r.value.login, password: r.value.digest, salt: cx.session.salt() });
}

function externalResponse(cx: Context, response: Buffer): Step {
  const r = saslExternal(response);
  if (!r.ok) return saslFailure(cx, r);
  return authenticate(cx, { method: "external", login: r.value, password: EMPTY });
}

/** The start state's command table. */
const COMMANDS: Readonly<Record<ImapCommandName, CommandHandler>> = {
  noop,
  capability,
  logout,
  starttls,
  login,
  authenticate: authenticateCommand,
};

/** One handler per SASL state; each takes the line's first word. */
const RESPONSES: Readonly<Record<SaslState, ResponseHandler>> = {
  authLoginUsername: loginUsernameResponse,
  authLoginPassword: loginPasswordResponse,
  authPlain: plainResponse,
  authCramMd5: cramMd5Response,
  authExternal: externalResponse,
};

function isSaslState(state: ImapState): state is SaslState {
  return state in RESPONSES;
}

/** `<tag> ` as nginx writes it before a reply; `* ` when no tag was read. */
function tagPrefix(tag: string | undefined): string {
  return tag === undefined ? "* " : `${tag} `;
}

/** One IMAP session's front end. */
export class ImapFrontEnd implements FrontEnd {
  readonly #session: SessionPort;
  readonly #parser: ImapParser;
  readonly #cx: Context;
  #state: ImapState = "start";
  /** The tag of the command being answered: kept through a SASL exchange and the auth_http round trip. */
  #tag: string | undefined;
  /**
   * Where the next command starts in nginx's buffer, which is rewound only
   * when it has been read completely and no SASL exchange is running (the
   * rule that an invalid line ending in `+}` closes the connection depends on it).
   */
  #bufferOffset = 0;
  #discarding = false;
  /** Where the answered command's tag sits in nginx's buffer. */
  #tagOffset = 0;
  /**
   * After a refused authentication nginx keeps the old tag's length and
   * pointer into its (possibly rewound and overwritten) buffer, and answers
   * a line without a tag with whatever bytes now sit there: e.g.
   * `abcdef LOGIN u p` refused, then an empty line -> `\r\ncdef BAD invalid
   * command`. These are those bytes, kept up to date as input arrives.
   */
  #staleTag: { readonly offset: number; readonly bytes: Buffer } | undefined;

  constructor(session: SessionPort) {
    this.#session = session;
    this.#parser = new ImapParser(session.server.conf.get(imapClientBufferDirective));
    this.#cx = { session, login: EMPTY };
  }

  /**
   * True when nginx would rewind its command buffer once everything in it is
   * read: not while a SASL exchange waits for its next line (the core should
   * keep the buffer then, so a long exchange still has to fit).
   */
  get bufferRewindable(): boolean {
    return !this.#parser.awaitingResponse;
  }

  /** The current state (for tests and diagnostics). */
  get state(): ImapState {
    return this.#state;
  }

  start(): void {
    this.#session.send(GREETING);
    this.#session.armDeadline();
  }

  consume(input: Buffer): number {
    if (this.#state === "closed") return input.length;
    if (this.#state === "authenticating") return 0;
    this.#session.log.action = "in auth state";
    this.#overwriteStaleTag(input);
    for (;;) {
      const r = this.#parser.feed(input, this.#bufferOffset);
      switch (r.kind) {
        case "incomplete":
          return 0;
        case "literal":
          this.#session.send(LITERAL_CONTINUATION);
          continue;
        case "invalid":
          this.#syntaxError(r.tag, r.quit);
          return this.#consumed(r.length, input.length);
        case "command":
          this.#tag = r.tag;
          this.#tagOffset = this.#bufferOffset;
          this.#apply(COMMANDS[r.name](this.#cx, r.args));
          return this.#consumed(r.length, input.length);
        case "response":
          this.#apply(this.#response(r.args));
          return this.#consumed(r.length, input.length);
      }
    }
  }

  tooLongLogText(buffer: Buffer): Buffer {
    const cut = cutAtAuthCommand(buffer, AUTH_WORD);
    // the AUTHENTICATE line stays in the buffer during the exchange; should it
    // not, a SASL response is still never quoted
    if (cut.length === buffer.length && this.#parser.awaitingResponse) return Buffer.from(`${this.#tag ?? ""} AUTHENTICATE`, "latin1");
    return cut;
  }

  tooLong(_input: Buffer): string {
    const tag = this.#parser.awaitingResponse ? this.#tag : this.#parser.partialTag;
    this.#state = "closed";
    return this.#invalidPrefix(tag) + INVALID;
  }

  afterStartTls(): void {
    // IMAP keeps nothing that TLS would invalidate; the parser already stands at a command start
  }

  authFailedReply(message: string, _errorCode: string | undefined): string {
    return `${tagPrefix(this.#tag)}NO ${message}\r\n`;
  }

  afterAuthFailure(): void {
    this.#state = "start";
    this.#cx.login = EMPTY;
    if (this.#tag !== undefined) {
      this.#staleTag = { offset: this.#tagOffset, bytes: Buffer.from(`${this.#tag} `, "latin1") };
    }
  }

  imapTag(): string | undefined {
    return this.#tag;
  }

  /** Dispatches a SASL response line: only its first word matters. */
  #response(args: readonly Buffer[]): Step {
    const state = this.#state;
    if (!isSaslState(state)) return INVALID_STEP;
    return RESPONSES[state](this.#cx, args[0] ?? EMPTY);
  }

  #syntaxError(lineTag: string | undefined, quit: boolean): void {
    // a broken SASL response line is answered with the AUTHENTICATE command's tag
    const tag = isSaslState(this.#state) ? this.#tag : lineTag;
    const tooMany = this.#session.countSyntaxError();
    this.#backToStart();
    this.#session.send(this.#invalidPrefix(tag) + INVALID);
    if (tooMany || quit) this.#close();
  }

  #apply(step: Step): void {
    const prefix = tagPrefix(this.#tag);
    switch (step.kind) {
      case "ok":
        this.#session.send((step.untagged ?? "") + prefix + OK_COMPLETED);
        this.#backToStart();
        if (step.quit) this.#close();
        return;
      case "challenge":
        this.#state = step.next;
        this.#parser.awaitResponse();
        this.#session.send(step.line);
        return;
      case "invalid":
        this.#backToStart();
        this.#session.send(prefix + INVALID);
        return;
      case "untaggedInvalid":
        this.#backToStart();
        this.#session.send(INVALID);
        return;
      case "starttls":
        this.#backToStart();
        this.#session.send(prefix + OK_COMPLETED);
        this.#parser.reset();
        this.#discarding = true;
        this.#session.startTls();
        return;
      case "authenticate":
        this.#state = "authenticating";
        this.#session.authenticate(step.credentials);
        return;
    }
  }

  /** The tag for an invalid reply: the line's, else the stale one after a refusal, else `*`. */
  #invalidPrefix(tag: string | undefined): string {
    if (tag === undefined && this.#staleTag) return this.#staleTag.bytes.toString("latin1");
    return tagPrefix(tag);
  }

  /** Mirrors input landing in nginx's buffer over the stale tag's bytes. */
  #overwriteStaleTag(input: Buffer): void {
    const stale = this.#staleTag;
    if (!stale) return;
    const from = Math.max(stale.offset, this.#bufferOffset);
    const to = Math.min(stale.offset + stale.bytes.length, this.#bufferOffset + input.length);
    for (let i = from; i < to; i++) stale.bytes[i - stale.offset] = input[i - this.#bufferOffset]!;
  }

  #backToStart(): void {
    this.#state = "start";
  }

  /** Bookkeeping after one command of `length` bytes out of `available`. */
  #consumed(length: number, available: number): number {
    // every answered line resets nginx's tag
    this.#staleTag = undefined;
    if (this.#discarding) {
      // STARTTLS: the core discards the rest and the buffer starts afresh
      this.#discarding = false;
      this.#bufferOffset = 0;
    } else if (length === available && !this.#parser.awaitingResponse) {
      this.#bufferOffset = 0;
    } else {
      this.#bufferOffset += length;
    }
    return length;
  }

  #close(): void {
    this.#state = "closed";
    this.#session.close();
  }
}

/**
 * The IMAP front end (ngx_mail_imap_handler.c): the greeting, the command
 * table the dispatcher enforces, IMAP's wording of its outcomes (tags), and
 * nginx's buffer bookkeeping that decides which tag a broken line gets.
 * Rules: docs/behaviour/imap.md#imap-4-noop-capability-logout,
 * #imap-5-starttls, #imap-6-login, #imap-7-authenticate,
 * #imap-8-sasl-responses, #imap-9-invalid-commands,
 * #imap-10-too-long-commands, #imap-11-auth-failure-and-auth-wait.
 */
import { type CommandRule, Dispatcher, type Outcome, type Replies } from "../dispatch.js";
import type { FrontEnd, SessionPort } from "../front-end.js";
import { hasLineBreakOrNul } from "../line-bytes.js";
import { imapClientBufferDirective, imapIdDirective, imapWire } from "./module.js";
import { type ImapCommandName, ImapParser } from "./parser.js";
import { cutAtAuthCommand, taggedWord } from "../too-long-log.js";
import { imapBackendLogin } from "../proxy/login-imap.js";
import { imapOauthLoginSteps } from "../proxy/login-oauth.js";
import type { IdField } from "./id-syntax.js";
import type { BackendLoginInput, LoginStep } from "../proxy/login-step.js";

/** The commands that carry credentials: a too-long one is logged as tag and name only. */
const AUTH_WORD = taggedWord(["LOGIN", "AUTHENTICATE"]);

/** IMAP has one command state (nginx's ngx_imap_start); a SASL exchange is the dispatcher's step. */
type ImapState = "start";

type ImapOutcome = Outcome<ImapState>;

const OK_COMPLETED = "OK completed\r\n";
const INVALID = "BAD invalid command\r\n";
const LITERAL_CONTINUATION = "+ OK\r\n";
const GREETING = "* OK IMAP4 ready\r\n";
/** Postern's answer to ID: nothing about itself (RFC 2971 allows NIL). */
const ID_REPLY = "* ID NIL\r\n";
const EMPTY = Buffer.alloc(0);

const INVALID_OUTCOME: ImapOutcome = { kind: "invalid" };

function capability(session: SessionPort): ImapOutcome {
  const strings = imapWire(session.server);
  const mode = session.starttls;
  return { kind: "reply", text: mode === "on" ? strings.starttlsCapability : mode === "only" ? strings.starttlsOnlyCapability : strings.capability };
}

function login(session: SessionPort, [user, password]: readonly Buffer[]): ImapOutcome {
  if (user!.length === 0) return INVALID_OUTCOME;
  // a literal or a quoted string can carry CR, LF or NUL: never sent on
  if (hasLineBreakOrNul(user!) || hasLineBreakOrNul(password!)) {
    return { kind: "invalid", log: `client sent invalid ${hasLineBreakOrNul(user!) ? "login" : "password"} in LOGIN command` };
  }
  return { kind: "authenticate", credentials: { method: "plain", login: user!, password: password! } };
}

const ANY: readonly [number, number] = [0, Infinity];

/** The command table: the dispatcher enforces `starttls only`, arity and SASL. */
const COMMANDS: Readonly<Record<ImapCommandName, CommandRule<SessionPort, ImapState>>> = {
  noop: { states: ["start"], args: ANY, run: () => ({ kind: "reply", text: "" }) },
  capability: { states: ["start"], args: ANY, run: capability },
  logout: { states: ["start"], args: ANY, run: () => ({ kind: "quit" }) },
  starttls: { states: ["start"], args: ANY, run: (session) => (session.starttls === "off" ? INVALID_OUTCOME : { kind: "starttls" }) },
  login: { states: ["start"], tlsFirst: true, args: [2, 2], run: login },
  authenticate: { states: ["start"], tlsFirst: true, args: [1, Infinity], sasl: true },
  // parsed only with imap_id on (parser.ts); the fields are kept by the front end
  id: { states: ["start"], args: ANY, run: () => ({ kind: "reply", text: ID_REPLY }) },
};

/** `<tag> ` as nginx writes it before a reply; `* ` when no tag was read. */
function tagPrefix(tag: string | undefined): string {
  return tag === undefined ? "* " : `${tag} `;
}

/** One IMAP session's front end. */
export class ImapFrontEnd implements FrontEnd {
  readonly #session: SessionPort;
  readonly #parser: ImapParser;
  readonly #dispatcher: Dispatcher<SessionPort, ImapCommandName, ImapState>;
  /** The tag of the command being answered: kept through a SASL exchange and the auth_http round trip. */
  #tag: string | undefined;
  /**
   * Where the next command starts in nginx's buffer, which is rewound only
   * when it has been read completely and no SASL exchange is running (the
   * rule that an invalid line ending in `+}` closes the connection depends on it).
   */
  #bufferOffset = 0;
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
  /** The fields of the client's last ID (imap_id on), passed on to the backend. */
  #clientId: readonly IdField[] = [];

  constructor(session: SessionPort) {
    this.#session = session;
    this.#parser = new ImapParser(session.server.conf.get(imapClientBufferDirective), session.server.conf.get(imapIdDirective));
    const wire = imapWire(session.server);
    this.#dispatcher = new Dispatcher(
      session,
      {
        commands: COMMANDS,
        start: "start",
        badArguments: INVALID_OUTCOME,
        enabled: (m) => wire.authMethods.has(m),
      },
      this.#replies(),
    );
  }

  /** IMAP's wording of the dispatcher's outcomes: tagged with the command's tag. */
  #replies(): Replies {
    const prefix = (): string => tagPrefix(this.#tag);
    return {
      reply: (untagged) => untagged + prefix() + OK_COMPLETED,
      challenge: (base64) => `+ ${base64}\r\n`,
      // nginx answers a refused AUTHENTICATE LOGIN user name without any tag
      invalid: (o) => (o.afterChallenge === "loginUsername" ? INVALID : prefix() + INVALID),
      quit: () => `* BYE\r\n${prefix()}${OK_COMPLETED}`,
      starttls: () => prefix() + OK_COMPLETED,
    };
  }

  /**
   * True when nginx would rewind its command buffer once everything in it is
   * read: not while a SASL exchange waits for its next line (the core should
   * keep the buffer then, so a long exchange still has to fit).
   */
  get bufferRewindable(): boolean {
    return !this.#parser.awaitingResponse;
  }

  start(): void {
    this.#session.send(GREETING);
    this.#session.armDeadline();
  }

  consume(input: Buffer): number {
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
          if (r.id) this.#clientId = r.id;
          this.#dispatcher.command(this.#session, r.name, r.args);
          return this.#consumed(r.length, input.length);
        case "response":
          this.#dispatcher.response(r.args[0] ?? EMPTY);
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
    return this.#invalidPrefix(tag) + INVALID;
  }

  afterStartTls(): void {
    // the core discarded what followed STARTTLS: parser and buffer start afresh
    this.#parser.reset();
    this.#bufferOffset = 0;
    // and an ID from before TLS is forgotten: it could have been injected on the way (RFC 3501 6.2.1)
    this.#clientId = [];
  }

  authFailedReply(message: string, _errorCode: string | undefined): string {
    return `${tagPrefix(this.#tag)}NO ${message}\r\n`;
  }

  afterAuthFailure(): void {
    this.#dispatcher.reset();
    this.#dispatcher.forgetLogin();
    if (this.#tag !== undefined) {
      this.#staleTag = { offset: this.#tagOffset, bytes: Buffer.from(`${this.#tag} `, "latin1") };
    }
  }

  saslError(base64: string, failureReply: string | Buffer, closeAfter: boolean): void {
    // the AUTHENTICATE line's exchange goes on: the next line is a response under the same tag
    this.#parser.awaitResponse();
    this.#dispatcher.saslErrorChallenge(base64, failureReply, closeAfter, () => this.afterAuthFailure());
  }

  backendLogin(input: BackendLoginInput): LoginStep[] {
    // the backend LOGIN reuses the tag of the client's authenticating command
    const tag = this.#tag ?? "";
    const oauth = input.backendMechanism && imapOauthLoginSteps(tag, input.backendMechanism, input.login, input.password);
    return imapBackendLogin(input, tag, this.#clientId, oauth || undefined);
  }

  #syntaxError(lineTag: string | undefined, quit: boolean): void {
    // a broken SASL response line is answered with the AUTHENTICATE command's tag
    const tag = this.#dispatcher.step !== undefined ? this.#tag : lineTag;
    this.#dispatcher.syntaxError(this.#invalidPrefix(tag) + INVALID, quit);
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

  /** Bookkeeping after one command of `length` bytes out of `available`. */
  #consumed(length: number, available: number): number {
    // every answered line resets nginx's tag
    this.#staleTag = undefined;
    if (this.#dispatcher.step !== undefined) this.#parser.awaitResponse();
    if (length === available && !this.#parser.awaitingResponse) {
      this.#bufferOffset = 0;
    } else {
      this.#bufferOffset += length;
    }
    return length;
  }
}

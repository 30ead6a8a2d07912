/**
 * The SMTP front end (ngx_mail_smtp_handler.c): greeting, the command table
 * and the auth-state machine. Handlers are small functions that update the
 * session's SMTP state and return an Outcome; `SmtpFrontEnd` applies it.
 */
import type { FrontEnd, SessionPort } from "../front-end.js";
import { cramMd5Challenge, saslCramMd5, saslExternal, saslLoginPassword, saslLoginUsername, saslPlain } from "../sasl.js";
import type { Credentials, SmtpInfo } from "../types.js";
import { hasControlByte } from "../line-bytes.js";
import { logEscape } from "../../core/log.js";
import { resolveClientName } from "./client-name.js";
import { type SmtpWire, smtpWire } from "./module.js";
import { type SmtpParseResult, SmtpParser, type SmtpVerb } from "./parser.js";
import { SMTP_REPLY, rejectedText, smtpAuthFailedReply } from "./replies.js";
import { cutAtAuthCommand, leadingWord } from "../too-long-log.js";

/** AUTH carries credentials: a too-long one is logged by name only. */
const AUTH_WORD = leadingWord(["AUTH"]);

/** nginx's ngx_smtp_state_e in the auth phase: which line comes next. */
export type SmtpState = "start" | "authLoginUsername" | "authLoginPassword" | "authPlain" | "authCramMd5" | "authExternal";

/** What the front end knows about the client; handlers read and update it. */
interface SmtpContext {
  readonly session: SessionPort;
  readonly wire: SmtpWire;
  state: SmtpState;
  helo: Buffer;
  esmtp: boolean;
  from: Buffer | undefined;
  to: Buffer | undefined;
  /** The AUTH LOGIN user name, between the two challenges. */
  username: Buffer;
  clientHost: string;
}

/** What a handler decided. */
type Outcome =
  | { readonly kind: "reply"; readonly text: string }
  /** the invalid-command reply, not counted as a syntax error; back to the start state */
  | { readonly kind: "invalid"; readonly log?: string | undefined }
  | { readonly kind: "quit" }
  | { readonly kind: "starttls" }
  | { readonly kind: "authenticate"; readonly credentials: Credentials };

interface CommandInput {
  readonly args: readonly Buffer[];
  /** MAIL/RCPT: the raw line from the command word to its last argument */
  readonly line: Buffer;
  /** the command's own bytes, through its LF (for the `client was rejected` log) */
  readonly raw: Buffer;
}

type CommandHandler = (cx: SmtpContext, cmd: CommandInput) => Outcome;
type ResponseHandler = (cx: SmtpContext, response: Buffer) => Outcome;

const EMPTY = Buffer.alloc(0);
const INVALID: Outcome = { kind: "invalid" };

function reply(text: string): Outcome {
  return { kind: "reply", text };
}

function authenticate(credentials: Credentials): Outcome {
  return { kind: "authenticate", credentials };
}

function starttlsOnly(cx: SmtpContext): boolean {
  return cx.session.starttls === "only";
}

// ---- commands (start state) ---------------------------------------------

/**
 * HELO, EHLO, MAIL and RCPT arguments go raw into Auth-SMTP-* headers and
 * the backend's own HELO/MAIL/RCPT lines: a control byte (NUL, TAB, DEL...)
 * there is refused with the invalid-argument reply (nginx passes it on).
 */
function controlBytes(verb: string, value: Buffer, cx: SmtpContext): Outcome | undefined {
  if (!hasControlByte(value)) return undefined;
  cx.session.log.info(`client sent invalid argument in ${verb} command`);
  return reply(SMTP_REPLY.invalidArgument);
}

function helo(cx: SmtpContext, { args }: CommandInput): Outcome {
  if (args.length !== 1) return reply(SMTP_REPLY.invalidArgument);
  const refused = controlBytes("HELO", args[0]!, cx);
  if (refused) return refused;
  cx.helo = args[0]!;
  cx.from = cx.to = undefined;
  return reply(cx.wire.helo);
}

function ehlo(cx: SmtpContext, { args }: CommandInput): Outcome {
  if (args.length !== 1) return reply(SMTP_REPLY.invalidArgument);
  const refused = controlBytes("EHLO", args[0]!, cx);
  if (refused) return refused;
  cx.helo = args[0]!;
  cx.from = cx.to = undefined;
  cx.esmtp = true;
  const mode = cx.session.starttls;
  return reply(mode === "on" ? cx.wire.ehloStarttls : mode === "only" ? cx.wire.ehloStarttlsOnly : cx.wire.ehlo);
}

function auth(cx: SmtpContext, { args }: CommandInput): Outcome {
  if (starttlsOnly(cx)) return INVALID;
  if (args.length === 0) return reply(SMTP_REPLY.invalidArgument);
  const mechanism = AUTH_MECHANISMS.get(args[0]!.toString("latin1").toUpperCase());
  return mechanism ? mechanism(cx, args.slice(1)) : INVALID;
}

function quit(): Outcome {
  return { kind: "quit" };
}

function mail(cx: SmtpContext, { args, line, raw }: CommandInput): Outcome {
  if (!cx.wire.authMethods.has("none")) {
    // nginx logs its whole buffer (earlier and later pipelined commands too); the
    // MAIL line alone is the same text for a lone command and never holds a secret
    cx.session.log.info(`client was rejected: "${logEscape(rejectedText(raw))}"`);
    return reply(SMTP_REPLY.authRequired);
  }
  // Postern is stricter than nginx: no mail transaction in plaintext under `starttls only`
  if (starttlsOnly(cx)) return reply(SMTP_REPLY.starttlsRequired);
  if (cx.from) return reply(SMTP_REPLY.badSequence);
  if (args.length === 0) return reply(SMTP_REPLY.invalidArgument);
  const refused = controlBytes("MAIL", line, cx);
  if (refused) return refused;
  cx.from = line;
  return reply(SMTP_REPLY.ok);
}

function rcpt(cx: SmtpContext, { args, line }: CommandInput): Outcome {
  if (!cx.from) return reply(SMTP_REPLY.badSequence);
  if (starttlsOnly(cx)) return reply(SMTP_REPLY.starttlsRequired);
  if (args.length === 0) return reply(SMTP_REPLY.invalidArgument);
  const refused = controlBytes("RCPT", line, cx);
  if (refused) return refused;
  cx.to = line;
  // No credentials with `none`. nginx 1.22.1 resent those of an earlier failed
  // AUTH; latest nginx clears them at MAIL (so only MAIL, AUTH, RCPT still
  // leaks them there); Postern never sends any.
  return authenticate({ method: "none", login: EMPTY, password: EMPTY });
}

function rset(cx: SmtpContext): Outcome {
  cx.from = cx.to = undefined;
  return reply(SMTP_REPLY.ok);
}

function noop(): Outcome {
  return reply(SMTP_REPLY.ok);
}

function starttls(cx: SmtpContext): Outcome {
  if (cx.session.starttls === "off") return INVALID;
  // RFC 3207: forget what the client said before TLS
  cx.helo = EMPTY;
  cx.from = cx.to = undefined;
  return { kind: "starttls" };
}

/** VRFY, EXPN, HELP: refused, but not syntax errors. */
function refuse(): Outcome {
  return INVALID;
}

/**
 * Every verb the parser knows. Commands arrive only in the start state: in
 * the SASL states the parser reads response lines, never command words.
 */
const COMMANDS: Readonly<Record<SmtpVerb, CommandHandler>> = {
  HELO: helo, EHLO: ehlo, AUTH: auth, QUIT: quit, MAIL: mail, RCPT: rcpt,
  RSET: rset, NOOP: noop, STARTTLS: starttls, VRFY: refuse, EXPN: refuse, HELP: refuse,
};

// ---- AUTH mechanisms ----------------------------------------------------

type Mechanism = (cx: SmtpContext, rest: readonly Buffer[]) => Outcome;

function authLogin(cx: SmtpContext, rest: readonly Buffer[]): Outcome {
  if (rest.length === 0) {
    cx.state = "authLoginUsername";
    return reply(SMTP_REPLY.username);
  }
  return rest.length === 1 ? loginUsername(cx, rest[0]!) : INVALID;
}

function authPlain(cx: SmtpContext, rest: readonly Buffer[]): Outcome {
  if (rest.length === 0) {
    cx.state = "authPlain";
    return reply(SMTP_REPLY.next);
  }
  return rest.length === 1 ? plainResponse(cx, rest[0]!) : INVALID;
}

function authCramMd5(cx: SmtpContext, rest: readonly Buffer[]): Outcome {
  if (rest.length !== 0 || !cx.wire.authMethods.has("cram-md5")) return INVALID;
  cx.state = "authCramMd5";
  return reply(`334 ${cramMd5Challenge(cx.session.salt())}\r\n`);
}

/** Postern: EXTERNAL only when enabled, also with an initial response (nginx accepts that always). */
function authExternal(cx: SmtpContext, rest: readonly Buffer[]): Outcome {
  if (!cx.wire.authMethods.has("external")) return INVALID;
  if (rest.length === 0) {
    cx.state = "authExternal";
    return reply(SMTP_REPLY.username);
  }
  return rest.length === 1 ? externalResponse(cx, rest[0]!) : INVALID;
}

const AUTH_MECHANISMS: ReadonlyMap<string, Mechanism> = new Map([
  ["LOGIN", authLogin], ["PLAIN", authPlain], ["CRAM-MD5", authCramMd5], ["EXTERNAL", authExternal],
]);

// ---- SASL responses ---------------------------------------------------------

function loginUsername(cx: SmtpContext, response: Buffer): Outcome {
  const r = saslLoginUsername(response);
  if (!r.ok) return { kind: "invalid", log: r.log };
  cx.username = r.value;
  cx.state = "authLoginPassword";
  return reply(SMTP_REPLY.password);
}

function loginPassword(cx: SmtpContext, response: Buffer): Outcome {
  const r = saslLoginPassword(response);
  if (!r.ok) return { kind: "invalid", log: r.log };
  return authenticate({ method: "plain", login: cx.username, password: r.value });
}

function plainResponse(cx: SmtpContext, response: Buffer): Outcome {
  const r = saslPlain(response);
  if (!r.ok) return { kind: "invalid", log: r.log };
  return authenticate({ method: "plain", login: r.value.login, password: r.value.password });
}

function cramMd5Response(cx: SmtpContext, response: Buffer): Outcome {
  const r = saslCramMd5(response);
  if (!r.ok) return { kind: "invalid", log: r.log };
  return authenticate({ method: "cram-md5", login: r.value.login, password: r.value.digest, salt: cx.session.salt() });
}

function externalResponse(cx: SmtpContext, response: Buffer): Outcome {
  const r = saslExternal(response);
  if (!r.ok) return { kind: "invalid", log: r.log };
  return authenticate({ method: "external", login: r.value, password: EMPTY });
}

/** The handler of the response line each SASL state waits for. */
const RESPONSES: Readonly<Record<Exclude<SmtpState, "start">, ResponseHandler>> = {
  authLoginUsername: loginUsername,
  authLoginPassword: loginPassword,
  authPlain: plainResponse,
  authCramMd5: cramMd5Response,
  authExternal: externalResponse,
};

// ---- the front end -----------------------------------------------------------

/**
 * What an early talker sent, for the log: nginx logs it all, Postern stops at
 * an AUTH line's mechanism, since what follows may be credentials.
 */
function withoutSecrets(data: Buffer): Buffer {
  const auth = /(?:^|\n)(AUTH +[^ \r\n]*)/i.exec(data.toString("latin1"));
  if (!auth) return data;
  return data.subarray(0, auth.index + auth[0].length);
}

/** Resolves true as soon as the client has sent something, false after `ms`. */
function inputWithin(session: SessionPort, ms: number): Promise<boolean> {
  if (session.hasPendingInput()) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    void session.inputArrived().then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** One SMTP session's protocol side. */
export class SmtpFrontEnd implements FrontEnd {
  readonly #session: SessionPort;
  readonly #parser = new SmtpParser();
  readonly #cx: SmtpContext;

  constructor(session: SessionPort) {
    this.#session = session;
    this.#cx = {
      session, wire: smtpWire(session.server), state: "start",
      helo: EMPTY, esmtp: false, from: undefined, to: undefined,
      username: EMPTY, clientHost: "",
    };
  }

  /** The current state (tests). */
  get state(): SmtpState {
    return this.#cx.state;
  }

  async start(): Promise<void> {
    const session = this.#session;
    const wire = this.#cx.wire;
    this.#cx.clientHost = await resolveClientName(session);
    if (wire.greetingDelay > 0) {
      const early = await inputWithin(session, wire.greetingDelay);
      session.log.action = "in delay pipelining state";
      if (early) {
        const data = session.pendingInput().subarray(0, wire.bufferSize);
        session.log.info(`client was rejected before greeting: "${logEscape(rejectedText(withoutSecrets(data)))}"`);
        session.send(SMTP_REPLY.invalidPipelining);
        session.close();
        return;
      }
    }
    session.send(wire.greeting);
    session.armDeadline();
  }

  consume(input: Buffer): number {
    const parsed = this.#parser.parse(input);
    if (parsed.kind === "incomplete") return 0;
    if (parsed.kind === "invalid") {
      this.#syntaxError();
    } else {
      this.#apply(this.#handle(parsed, input));
    }
    this.#parser.setMode(this.#cx.state === "start" ? "command" : "response");
    return parsed.consumed;
  }

  tooLongLogText(buffer: Buffer): Buffer {
    // a SASL response fills the buffer alone (SMTP rewinds it after AUTH)
    return this.#cx.state !== "start" ? Buffer.from("AUTH") : cutAtAuthCommand(buffer, AUTH_WORD);
  }

  tooLong(_input: Buffer): string {
    return SMTP_REPLY.invalidCommand;
  }

  afterStartTls(): void {
    this.#cx.state = "start";
    this.#parser.setMode("command");
  }

  authFailedReply(message: string, errorCode: string | undefined): string {
    return smtpAuthFailedReply(message, errorCode);
  }

  afterAuthFailure(): void {
    // nginx keeps the HELO name and the MAIL/RCPT lines: a `none` client may just send RCPT again
    this.#cx.state = "start";
    this.#parser.setMode("command");
  }

  smtpInfo(): SmtpInfo {
    const cx = this.#cx;
    return {
      helo: cx.helo.toString("latin1"),
      esmtp: cx.esmtp,
      from: cx.from?.toString("latin1"),
      to: cx.to?.toString("latin1"),
      clientHost: cx.clientHost,
    };
  }

  #handle(parsed: Exclude<SmtpParseResult, { kind: "incomplete" | "invalid" }>, input: Buffer): Outcome {
    const cx = this.#cx;
    if (parsed.kind === "command") {
      // (the parser yields commands only in the start state)
      return COMMANDS[parsed.verb](cx, { args: parsed.args, line: parsed.line, raw: input.subarray(0, parsed.consumed) });
    }
    if (cx.state === "start") return INVALID; // unreachable: responses only follow AUTH
    return RESPONSES[cx.state](cx, parsed.args[0] ?? EMPTY);
  }

  #apply(outcome: Outcome): void {
    const session = this.#session;
    switch (outcome.kind) {
      case "reply":
        session.send(outcome.text);
        return;
      case "invalid":
        if (outcome.log) session.log.info(outcome.log);
        this.#cx.state = "start";
        session.send(SMTP_REPLY.invalidCommand);
        return;
      case "quit":
        session.send(SMTP_REPLY.bye);
        session.close();
        return;
      case "starttls":
        session.send(SMTP_REPLY.starttls);
        session.startTls();
        return;
      case "authenticate":
        this.#cx.state = "start";
        session.authenticate(outcome.credentials);
        return;
    }
  }

  /** A syntax error: counted toward max_errors; the reply is still sent before closing. */
  #syntaxError(): void {
    this.#cx.state = "start";
    const tooMany = this.#session.countSyntaxError();
    this.#session.send(SMTP_REPLY.invalidCommand);
    if (tooMany) this.#session.close();
  }
}

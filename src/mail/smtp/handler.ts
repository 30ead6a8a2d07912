/**
 * The SMTP front end (ngx_mail_smtp_handler.c): greeting, the command table
 * the dispatcher enforces, and SMTP's wording of its outcomes. Handlers are
 * small functions that update what the session knows of the client (HELO,
 * MAIL, RCPT) and return an Outcome.
 * Rules: docs/behaviour/smtp.md#smtp-2-greeting-and-smtp_greeting_delay,
 * #smtp-4-helo-and-ehlo, #smtp-5-auth, #smtp-6-sasl-responses,
 * #smtp-7-mail-and-rcpt, #smtp-8-rset-noop-quit-starttls-vrfy-expn-help,
 * #smtp-9-invalid-commands, #smtp-10-too-long-commands,
 * #smtp-11-auth-failure-and-auth-wait.
 */
import { type CommandRule, Dispatcher, type Outcome, type Replies } from "../dispatch.js";
import type { FrontEnd, SessionPort } from "../front-end.js";
import type { SmtpInfo } from "../types.js";
import { hasControlByte } from "../line-bytes.js";
import { logEscape } from "../../core/log.js";
import { resolveClientName } from "./client-name.js";
import { type SmtpWire, smtpWire } from "./module.js";
import { type SmtpParseResult, SmtpParser, type SmtpVerb } from "./parser.js";
import { SMTP_REPLY, rejectedText, smtpAuthFailedReply } from "./replies.js";
import { cutAtAuthCommand, leadingWord } from "../too-long-log.js";
import { smtpBackendLogin } from "../proxy/login-smtp.js";
import { smtpOauthLoginSteps } from "../proxy/login-oauth.js";
import type { BackendLoginInput, LoginStep } from "../proxy/login-step.js";

/** AUTH carries credentials: a too-long one is logged by name only. */
const AUTH_WORD = leadingWord(["AUTH"]);

/** SMTP has one command state (nginx's ngx_smtp_start); a SASL exchange is the dispatcher's step. */
type SmtpState = "start";

type SmtpOutcome = Outcome<SmtpState>;

/** What the front end knows about the client; handlers read and update it. */
interface SmtpContext {
  readonly session: SessionPort;
  readonly wire: SmtpWire;
  helo: Buffer;
  esmtp: boolean;
  from: Buffer | undefined;
  to: Buffer | undefined;
  clientHost: string;
  /** The command being handled. */
  command: CommandLine;
}

/** What MAIL and RCPT read of their line beyond the arguments. */
interface CommandLine {
  /** the raw line from the command word to its last argument */
  readonly line: Buffer;
  /** the command's own bytes, through its LF (for the `client was rejected` log) */
  readonly raw: Buffer;
}

const EMPTY = Buffer.alloc(0);
const INVALID: SmtpOutcome = { kind: "invalid" };

function reply(text: string): SmtpOutcome {
  return { kind: "reply", text };
}

// ---- commands (start state) ---------------------------------------------

/**
 * HELO, EHLO, MAIL and RCPT arguments go raw into Auth-SMTP-* headers and
 * the backend's own HELO/MAIL/RCPT lines: a control byte (NUL, TAB, DEL...)
 * there is refused with the invalid-argument reply (nginx passes it on).
 */
function controlBytes(verb: string, value: Buffer, cx: SmtpContext): SmtpOutcome | undefined {
  if (!hasControlByte(value)) return undefined;
  cx.session.log.info(`client sent invalid argument in ${verb} command`);
  return reply(SMTP_REPLY.invalidArgument);
}

/** HELO and EHLO: a new client name forgets the transaction. */
function helo(cx: SmtpContext, [name]: readonly Buffer[], esmtp: boolean): SmtpOutcome {
  const refused = controlBytes(esmtp ? "EHLO" : "HELO", name!, cx);
  if (refused) return refused;
  cx.helo = name!;
  cx.from = cx.to = undefined;
  if (!esmtp) return reply(cx.wire.helo);
  cx.esmtp = true;
  const mode = cx.session.starttls;
  return reply(mode === "on" ? cx.wire.ehloStarttls : mode === "only" ? cx.wire.ehloStarttlsOnly : cx.wire.ehlo);
}

function mail(cx: SmtpContext, args: readonly Buffer[]): SmtpOutcome {
  if (!cx.wire.authMethods.has("none")) {
    // nginx logs its whole buffer (earlier and later pipelined commands too); the
    // MAIL line alone is the same text for a lone command and never holds a secret
    cx.session.log.info(`client was rejected: "${logEscape(rejectedText(cx.command.raw))}"`);
    return reply(SMTP_REPLY.authRequired);
  }
  // Postern is stricter than nginx: no mail transaction in plaintext under `starttls only`
  if (cx.session.starttls === "only") return reply(SMTP_REPLY.starttlsRequired);
  if (cx.from) return reply(SMTP_REPLY.badSequence);
  if (args.length === 0) return reply(SMTP_REPLY.invalidArgument);
  const refused = controlBytes("MAIL", cx.command.line, cx);
  if (refused) return refused;
  cx.from = cx.command.line;
  return reply(SMTP_REPLY.ok);
}

function rcpt(cx: SmtpContext, args: readonly Buffer[]): SmtpOutcome {
  if (!cx.from) return reply(SMTP_REPLY.badSequence);
  if (cx.session.starttls === "only") return reply(SMTP_REPLY.starttlsRequired);
  if (args.length === 0) return reply(SMTP_REPLY.invalidArgument);
  const refused = controlBytes("RCPT", cx.command.line, cx);
  if (refused) return refused;
  cx.to = cx.command.line;
  // No credentials with `none`. nginx 1.22.1 resent those of an earlier failed
  // AUTH; latest nginx clears them at MAIL (so only MAIL, AUTH, RCPT still
  // leaks them there); Postern never sends any.
  return { kind: "authenticate", credentials: { method: "none", login: EMPTY, password: EMPTY } };
}

function rset(cx: SmtpContext): SmtpOutcome {
  cx.from = cx.to = undefined;
  return reply(SMTP_REPLY.ok);
}

function starttls(cx: SmtpContext): SmtpOutcome {
  if (cx.session.starttls === "off") return INVALID;
  // RFC 3207: forget what the client said before TLS
  cx.helo = EMPTY;
  cx.from = cx.to = undefined;
  return { kind: "starttls" };
}

/**
 * Every verb the parser knows, and what the dispatcher enforces for it.
 * MAIL and RCPT check their arguments themselves: nginx answers a missing
 * authentication or a bad sequence before it looks at them.
 */
const ANY: readonly [number, number] = [0, Infinity];
const COMMANDS: Readonly<Record<SmtpVerb, CommandRule<SmtpContext, SmtpState>>> = {
  HELO: { states: ["start"], args: [1, 1], run: (cx, args) => helo(cx, args, false) },
  EHLO: { states: ["start"], args: [1, 1], run: (cx, args) => helo(cx, args, true) },
  AUTH: { states: ["start"], tlsFirst: true, args: [1, Infinity], sasl: true },
  QUIT: { states: ["start"], args: ANY, run: () => ({ kind: "quit" }) },
  MAIL: { states: ["start"], args: ANY, run: mail },
  RCPT: { states: ["start"], args: ANY, run: rcpt },
  RSET: { states: ["start"], args: ANY, run: rset },
  NOOP: { states: ["start"], args: ANY, run: () => reply(SMTP_REPLY.ok) },
  STARTTLS: { states: ["start"], args: ANY, run: starttls },
  // VRFY, EXPN, HELP: refused, but not syntax errors
  VRFY: { states: ["start"], args: ANY, run: () => INVALID },
  EXPN: { states: ["start"], args: ANY, run: () => INVALID },
  HELP: { states: ["start"], args: ANY, run: () => INVALID },
};

/** SMTP's wording of the dispatcher's outcomes. */
const REPLIES: Replies = {
  reply: (text) => text,
  challenge: (base64) => `334 ${base64}\r\n`,
  invalid: () => SMTP_REPLY.invalidCommand,
  quit: () => SMTP_REPLY.bye,
  starttls: () => SMTP_REPLY.starttls,
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
  readonly #dispatcher: Dispatcher<SmtpContext, SmtpVerb, SmtpState>;

  constructor(session: SessionPort) {
    this.#session = session;
    const wire = smtpWire(session.server);
    this.#cx = { session, wire, helo: EMPTY, esmtp: false, from: undefined, to: undefined, clientHost: "", command: { line: EMPTY, raw: EMPTY } };
    this.#dispatcher = new Dispatcher(
      session,
      {
        commands: COMMANDS,
        start: "start",
        badArguments: reply(SMTP_REPLY.invalidArgument),
        enabled: (m) => wire.authMethods.has(m),
      },
      REPLIES,
    );
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
    this.#handle(parsed, input);
    this.#parser.setMode(this.#dispatcher.step === undefined ? "command" : "response");
    return parsed.consumed;
  }

  tooLongLogText(buffer: Buffer): Buffer {
    // a SASL response fills the buffer alone (SMTP rewinds it after AUTH)
    return this.#dispatcher.step !== undefined ? Buffer.from("AUTH") : cutAtAuthCommand(buffer, AUTH_WORD);
  }

  tooLong(_input: Buffer): string {
    return SMTP_REPLY.invalidCommand;
  }

  adopt(previous: FrontEnd): void {
    // what nginx keeps across STARTTLS: the resolved client name, HELO, MAIL and RCPT
    if (!(previous instanceof SmtpFrontEnd)) return;
    const { clientHost, helo, esmtp, from, to } = previous.#cx;
    Object.assign(this.#cx, { clientHost, helo, esmtp, from, to });
  }

  afterStartTls(): void {
    this.#dispatcher.reset();
    this.#parser.setMode("command");
  }

  authFailedReply(message: string, errorCode: string | undefined): string {
    return smtpAuthFailedReply(message, errorCode);
  }

  afterAuthFailure(): void {
    // nginx keeps the HELO name and the MAIL/RCPT lines: a `none` client may just send RCPT again
    this.#dispatcher.reset();
    this.#parser.setMode("command");
  }

  saslError(base64: string, failureReply: string | Buffer, closeAfter: boolean): void {
    this.#parser.setMode("response");
    this.#dispatcher.saslErrorChallenge(base64, failureReply, closeAfter, () => this.afterAuthFailure());
  }

  backendLogin(input: BackendLoginInput): LoginStep[] {
    if (input.backendMechanism) return smtpOauthLoginSteps(input, this.authFacts(), input.backendMechanism);
    return smtpBackendLogin(input, this.authFacts());
  }

  authFacts(): SmtpInfo {
    const cx = this.#cx;
    return {
      helo: cx.helo.toString("latin1"),
      esmtp: cx.esmtp,
      from: cx.from?.toString("latin1"),
      to: cx.to?.toString("latin1"),
      clientHost: cx.clientHost,
    };
  }

  #handle(parsed: Exclude<SmtpParseResult, { kind: "incomplete" }>, input: Buffer): void {
    const d = this.#dispatcher;
    switch (parsed.kind) {
      case "invalid":
        d.syntaxError(SMTP_REPLY.invalidCommand);
        return;
      case "command":
        // (the parser yields commands only while no SASL response is awaited)
        this.#cx.command = { line: parsed.line, raw: input.subarray(0, parsed.consumed) };
        d.command(this.#cx, parsed.verb, parsed.args);
        return;
      default:
        d.response(parsed.args[0] ?? EMPTY);
    }
  }
}

/**
 * The POP3 front end (ngx_mail_pop3_handler.c): the greeting, the command
 * table the dispatcher enforces, and POP3's wording of its outcomes.
 * Rules: docs/behaviour/pop3.md#pop3-1-greeting,
 * #pop3-3-states-and-the-command-table, #pop3-5-apop,
 * #pop3-6-auth-without-a-mechanism, #pop3-7-auth-mechanisms-and-challenges,
 * #pop3-8-invalid-commands, #pop3-9-too-long-commands,
 * #pop3-10-auth-failure-and-auth-wait.
 */
import { type CommandRule, Dispatcher, type Outcome, type Replies } from "../dispatch.js";
import type { FrontEnd, SessionPort } from "../front-end.js";
import { hasLineBreakOrNul } from "../line-bytes.js";
import { type Pop3Wire, pop3Wire } from "./module.js";
import { type Pop3Verb, Pop3Parser } from "./parser.js";
import { cutAtAuthCommand, leadingWord } from "../too-long-log.js";
import { pop3BackendLogin } from "../proxy/login-pop3.js";
import { pop3OauthLoginSteps } from "../proxy/login-oauth.js";
import type { BackendLoginInput, LoginStep } from "../proxy/login-step.js";

/** The commands that carry credentials: a too-long one is logged by name only. */
const AUTH_WORD = leadingWord(["USER", "PASS", "APOP", "AUTH"]);

/** Fixed replies. */
export const POP3_REPLIES = {
  greeting: "+OK POP3 ready\r\n",
  ok: "+OK\r\n",
  invalid: "-ERR invalid command\r\n",
} as const;

/** nginx's ngx_pop3_state_e for commands (a SASL exchange is the dispatcher's step). */
export type Pop3State = "start" | "user";

type Pop3Outcome = Outcome<Pop3State>;

/** What handlers may read. */
interface Pop3Context {
  readonly session: SessionPort;
  readonly wire: Pop3Wire;
  readonly state: Pop3State;
  /** The name from USER. */
  readonly login: Buffer;
}

const INVALID: Pop3Outcome = { kind: "invalid" };

function reply(text: string, next?: Pop3State): Pop3Outcome {
  return next === undefined ? { kind: "reply", text } : { kind: "reply", text, next };
}

/** A USER, PASS or APOP argument with CR, LF or NUL (only NUL survives the parser): refused. */
function invalidArgument(field: "login" | "password", command: string): Pop3Outcome {
  return { kind: "invalid", log: `client sent invalid ${field} in ${command} command` };
}

function user(_cx: Pop3Context, [name]: readonly Buffer[]): Pop3Outcome {
  if (hasLineBreakOrNul(name!)) return invalidArgument("login", "USER");
  return { kind: "reply", text: POP3_REPLIES.ok, next: "user", login: name! };
}

function pass(cx: Pop3Context, [password]: readonly Buffer[]): Pop3Outcome {
  if (hasLineBreakOrNul(password!)) return invalidArgument("password", "PASS");
  return { kind: "authenticate", credentials: { method: "plain", login: cx.login, password: password! } };
}

function apop(cx: Pop3Context, [name, digest]: readonly Buffer[]): Pop3Outcome {
  if (!cx.wire.authMethods.has("apop")) return INVALID;
  if (hasLineBreakOrNul(name!)) return invalidArgument("login", "APOP");
  if (hasLineBreakOrNul(digest!)) return invalidArgument("password", "APOP");
  return { kind: "authenticate", credentials: { method: "apop", login: name!, password: digest!, salt: cx.session.salt() } };
}

function capa(cx: Pop3Context): Pop3Outcome {
  // In the USER state nginx answers the plain list, never STLS.
  const offerTls = cx.state === "start" ? cx.session.starttls : "off";
  return reply(offerTls === "on" ? cx.wire.capaStarttls : offerTls === "only" ? cx.wire.capaStarttlsOnly : cx.wire.capa);
}

/** AUTH without a mechanism: the list (a mechanism is the dispatcher's SASL exchange). */
function authList(cx: Pop3Context): Pop3Outcome {
  return reply(cx.wire.authList, "start");
}

/** The command table: the dispatcher enforces states, `starttls only`, arity and SASL. */
const COMMANDS: Readonly<Record<Pop3Verb, CommandRule<Pop3Context, Pop3State>>> = {
  USER: { states: ["start"], tlsFirst: true, args: [1, 1], run: user },
  PASS: { states: ["user"], args: [1, 1], run: pass },
  APOP: { states: ["start"], tlsFirst: true, args: [2, 2], run: apop },
  AUTH: { states: ["start"], tlsFirst: true, args: [0, Infinity], sasl: true, run: authList },
  CAPA: { states: ["start", "user"], args: [0, Infinity], run: capa },
  NOOP: { states: ["start", "user"], args: [0, Infinity], run: () => reply(POP3_REPLIES.ok) },
  QUIT: { states: ["start", "user"], args: [0, Infinity], run: () => ({ kind: "quit" }) },
  STLS: { states: ["start"], args: [0, Infinity], run: (cx) => (cx.session.starttls === "off" ? INVALID : { kind: "starttls" }) },
};

/** POP3's wording of the dispatcher's outcomes. */
const REPLIES: Replies = {
  reply: (text) => text,
  challenge: (base64) => `+ ${base64}\r\n`,
  invalid: () => POP3_REPLIES.invalid,
  quit: () => POP3_REPLIES.ok,
  starttls: () => POP3_REPLIES.ok,
};

/** One POP3 session before authentication. */
export class Pop3FrontEnd implements FrontEnd {
  readonly #session: SessionPort;
  readonly #wire: Pop3Wire;
  readonly #parser = new Pop3Parser();
  readonly #dispatcher: Dispatcher<Pop3Context, Pop3Verb, Pop3State>;

  constructor(session: SessionPort) {
    this.#session = session;
    const wire = pop3Wire(session.server);
    this.#wire = wire;
    this.#dispatcher = new Dispatcher(
      session,
      {
        commands: COMMANDS,
        start: "start",
        badArguments: INVALID,
        enabled: (m) => wire.authMethods.has(m),
      },
      REPLIES,
    );
  }

  start(): void {
    // With APOP or CRAM-MD5 the salt is made now and shown in the greeting.
    const greeting = this.#wire.saltedGreeting ? `+OK POP3 ready ${this.#session.salt()}\r\n` : POP3_REPLIES.greeting;
    this.#session.send(greeting);
    this.#session.armDeadline();
  }

  consume(input: Buffer): number {
    const d = this.#dispatcher;
    const parsed = this.#parser.next(input, d.step !== undefined ? "saslResponse" : "command");
    switch (parsed.kind) {
      case "incomplete":
        return 0;
      case "invalid":
        d.syntaxError(POP3_REPLIES.invalid);
        break;
      case "command":
        d.command(this.#context(), parsed.verb, parsed.args);
        break;
      case "saslResponse":
        d.response(parsed.args[0]!);
        break;
    }
    return parsed.length;
  }

  tooLongLogText(buffer: Buffer): Buffer {
    // a SASL response fills the buffer alone (POP3 rewinds it after AUTH)
    return this.#dispatcher.step !== undefined ? Buffer.from("AUTH") : cutAtAuthCommand(buffer, AUTH_WORD);
  }

  tooLong(_input: Buffer): string {
    this.#parser.reset();
    this.#dispatcher.reset();
    return POP3_REPLIES.invalid;
  }

  afterStartTls(): void {
    this.#parser.reset();
    this.#dispatcher.reset();
  }

  authFailedReply(message: string, _errorCode: string | undefined): string {
    return `-ERR ${message}\r\n`;
  }

  afterAuthFailure(): void {
    // nginx's auth sleep handler: back to the start state, USER must be repeated.
    this.#parser.reset();
    this.#dispatcher.reset();
  }

  saslError(base64: string, failureReply: string | Buffer, closeAfter: boolean): void {
    this.#dispatcher.saslErrorChallenge(base64, failureReply, closeAfter, () => this.afterAuthFailure());
  }

  backendLogin(input: BackendLoginInput): LoginStep[] {
    // USER and PASS, whatever the client used
    const oauth = input.backendMechanism && pop3OauthLoginSteps(input.backendMechanism, input.login, input.password);
    return pop3BackendLogin(input, oauth || undefined);
  }

  #context(): Pop3Context {
    const d = this.#dispatcher;
    return { session: this.#session, wire: this.#wire, state: d.state, login: d.login };
  }
}

/**
 * The POP3 auth-state machine (ngx_mail_pop3_handler.c):
 * the command table, the SASL steps, and the FrontEnd the session core drives.
 */
import type { FrontEnd, SessionPort } from "../front-end.js";
import {
  PASSWORD_CHALLENGE, USERNAME_CHALLENGE, cramMd5Challenge, saslCramMd5, saslExternal, saslLoginPassword,
  saslLoginUsername, saslPlain, type SaslResult,
} from "../sasl.js";
import type { Credentials } from "../types.js";
import { hasLineBreakOrNul } from "../line-bytes.js";
import { type Pop3Wire, pop3Wire } from "./module.js";
import { type Pop3Verb, Pop3Parser } from "./parser.js";
import { cutAtAuthCommand, leadingWord } from "../too-long-log.js";

/** The commands that carry credentials: a too-long one is logged by name only. */
const AUTH_WORD = leadingWord(["USER", "PASS", "APOP", "AUTH"]);

/** Fixed replies. */
export const POP3_REPLIES = {
  greeting: "+OK POP3 ready\r\n",
  ok: "+OK\r\n",
  invalid: "-ERR invalid command\r\n",
  plainChallenge: "+ \r\n",
  usernameChallenge: `+ ${USERNAME_CHALLENGE}\r\n`,
  passwordChallenge: `+ ${PASSWORD_CHALLENGE}\r\n`,
} as const;

/** States that read commands. */
type CommandState = "start" | "user";
/** States that read the answer to a SASL challenge. */
type SaslState = "authLoginUsername" | "authLoginPassword" | "authPlain" | "authCramMd5" | "authExternal";
/** nginx's ngx_pop3_state_e, minus the states it never enters. */
export type Pop3State = CommandState | SaslState;

/** What handling one line leads to; `#apply` turns it into bytes and calls. */
type Outcome =
  /** send `text`, go to `next`; `login` remembers a name for the step that completes it */
  | { readonly kind: "reply"; readonly text: string; readonly next: Pop3State; readonly login?: Buffer }
  /** a refused command (not a syntax error): the invalid reply, back to the start state */
  | { readonly kind: "invalid"; readonly log?: string }
  | { readonly kind: "quit" }
  | { readonly kind: "stls" }
  | { readonly kind: "auth"; readonly credentials: Credentials };

/** What handlers may read. */
interface Pop3Context {
  readonly session: SessionPort;
  readonly wire: Pop3Wire;
  readonly state: Pop3State;
  /** The name from USER, or from AUTH LOGIN's first step. */
  readonly login: Buffer;
}

type CommandHandler = (cx: Pop3Context, args: readonly Buffer[]) => Outcome;
type SaslStep = (cx: Pop3Context, response: Buffer) => Outcome;

const INVALID: Outcome = { kind: "invalid" };
const EMPTY = Buffer.alloc(0);

function reply(text: string, next: Pop3State): Outcome {
  return { kind: "reply", text, next };
}

function authenticate(credentials: Credentials): Outcome {
  return { kind: "auth", credentials };
}

/** `starttls only` and the connection is still plaintext: no credentials yet. */
function starttlsOnly(cx: Pop3Context): boolean {
  return cx.session.starttls === "only";
}

/** A SASL decoding result as an outcome: `next` on success, the logged invalid reply otherwise. */
function onDecoded<T>(result: SaslResult<T>, next: (value: T) => Outcome): Outcome {
  return result.ok ? next(result.value) : { kind: "invalid", log: result.log };
}

// ---- commands ----------------------------------------------------------

/** A USER, PASS or APOP argument with CR, LF or NUL (only NUL survives the parser): refused. */
function invalidArgument(field: "login" | "password", command: string): Outcome {
  return { kind: "invalid", log: `client sent invalid ${field} in ${command} command` };
}

function user(cx: Pop3Context, args: readonly Buffer[]): Outcome {
  if (starttlsOnly(cx) || args.length !== 1) return INVALID;
  if (hasLineBreakOrNul(args[0]!)) return invalidArgument("login", "USER");
  return { kind: "reply", text: POP3_REPLIES.ok, next: "user", login: args[0]! };
}

function pass(cx: Pop3Context, args: readonly Buffer[]): Outcome {
  if (args.length !== 1) return INVALID;
  if (hasLineBreakOrNul(args[0]!)) return invalidArgument("password", "PASS");
  return authenticate({ method: "plain", login: cx.login, password: args[0]! });
}

function apop(cx: Pop3Context, args: readonly Buffer[]): Outcome {
  if (starttlsOnly(cx) || args.length !== 2 || !cx.wire.methods.apop) return INVALID;
  if (hasLineBreakOrNul(args[0]!)) return invalidArgument("login", "APOP");
  if (hasLineBreakOrNul(args[1]!)) return invalidArgument("password", "APOP");
  return authenticate({ method: "apop", login: args[0]!, password: args[1]!, salt: cx.session.salt() });
}

function capa(cx: Pop3Context): Outcome {
  // In the USER state nginx answers the plain list, never STLS.
  const offerTls = cx.state === "start" ? cx.session.starttls : "off";
  const text = offerTls === "on" ? cx.wire.capaStarttls : offerTls === "only" ? cx.wire.capaStarttlsOnly : cx.wire.capa;
  return reply(text, cx.state);
}

function noop(cx: Pop3Context): Outcome {
  return reply(POP3_REPLIES.ok, cx.state);
}

function quit(): Outcome {
  return { kind: "quit" };
}

function stls(cx: Pop3Context): Outcome {
  return cx.session.starttls === "off" ? INVALID : { kind: "stls" };
}

function auth(cx: Pop3Context, args: readonly Buffer[]): Outcome {
  if (starttlsOnly(cx)) return INVALID;
  if (args.length === 0) return reply(cx.wire.authList, "start");
  const mechanism = MECHANISMS.get(asciiUpper(args[0]!));
  return mechanism ? mechanism(cx, args.slice(1)) : INVALID;
}

/** The command table: where each command is allowed, and what it does. */
const COMMANDS: Readonly<Record<Pop3Verb, { readonly states: readonly CommandState[]; readonly run: CommandHandler }>> = {
  USER: { states: ["start"], run: user },
  PASS: { states: ["user"], run: pass },
  APOP: { states: ["start"], run: apop },
  AUTH: { states: ["start"], run: auth },
  CAPA: { states: ["start", "user"], run: capa },
  NOOP: { states: ["start", "user"], run: noop },
  QUIT: { states: ["start", "user"], run: quit },
  STLS: { states: ["start"], run: stls },
};

// ---- AUTH mechanisms (the arguments after the mechanism name) ---------------

function mechPlain(_cx: Pop3Context, rest: readonly Buffer[]): Outcome {
  if (rest.length === 0) return reply(POP3_REPLIES.plainChallenge, "authPlain");
  if (rest.length > 1) return INVALID;
  return onDecoded(saslPlain(rest[0]!), (v) => authenticate({ method: "plain", login: v.login, password: v.password }));
}

function mechLogin(_cx: Pop3Context, rest: readonly Buffer[]): Outcome {
  if (rest.length === 0) return reply(POP3_REPLIES.usernameChallenge, "authLoginUsername");
  if (rest.length > 1) return INVALID;
  return onDecoded(saslLoginUsername(rest[0]!), (login) => ({ kind: "reply", text: POP3_REPLIES.passwordChallenge, next: "authLoginPassword", login }));
}

function mechCramMd5(cx: Pop3Context, rest: readonly Buffer[]): Outcome {
  if (rest.length !== 0 || !cx.wire.methods.cramMd5) return INVALID;
  return reply(`+ ${cramMd5Challenge(cx.session.salt())}\r\n`, "authCramMd5");
}

function mechExternal(cx: Pop3Context, rest: readonly Buffer[]): Outcome {
  // Postern refuses EXTERNAL with an initial response unless enabled; nginx accepts it always.
  if (!cx.wire.methods.external || rest.length > 1) return INVALID;
  if (rest.length === 0) return reply(POP3_REPLIES.usernameChallenge, "authExternal");
  return onDecoded(saslExternal(rest[0]!), externalCredentials);
}

function externalCredentials(login: Buffer): Outcome {
  return authenticate({ method: "external", login, password: EMPTY });
}

/** Mechanism names, upper case (the client's are matched case-insensitively). */
const MECHANISMS: ReadonlyMap<string, CommandHandler> = new Map([
  ["PLAIN", mechPlain],
  ["LOGIN", mechLogin],
  ["CRAM-MD5", mechCramMd5],
  ["EXTERNAL", mechExternal],
]);

// ---- SASL answers -----------------------------------------------------------

const SASL_STEPS: Readonly<Record<SaslState, SaslStep>> = {
  authPlain: (cx, r) => mechPlain(cx, [r]),
  authLoginUsername: (cx, r) => mechLogin(cx, [r]),
  authLoginPassword: (cx, r) =>
    onDecoded(saslLoginPassword(r), (password) => authenticate({ method: "plain", login: cx.login, password })),
  authCramMd5: (cx, r) =>
    onDecoded(saslCramMd5(r), (v) => authenticate({ method: "cram-md5", login: v.login, password: v.digest, salt: cx.session.salt() })),
  authExternal: (_cx, r) => onDecoded(saslExternal(r), externalCredentials),
};

function isSaslState(state: Pop3State): state is SaslState {
  return state !== "start" && state !== "user";
}

/** Upper-cases ASCII letters only, as nginx's ngx_strncasecmp compares. */
function asciiUpper(b: Buffer): string {
  return b.toString("latin1").replace(/[a-z]+/g, (s) => s.toUpperCase());
}

/** One POP3 session before authentication. */
export class Pop3FrontEnd implements FrontEnd {
  readonly #session: SessionPort;
  readonly #wire: Pop3Wire;
  readonly #parser = new Pop3Parser();
  #state: Pop3State = "start";
  #login: Buffer = EMPTY;

  constructor(session: SessionPort) {
    this.#session = session;
    this.#wire = pop3Wire(session.server);
  }

  start(): void {
    // With APOP or CRAM-MD5 the salt is made now and shown in the greeting.
    const greeting = this.#wire.saltedGreeting ? `+OK POP3 ready ${this.#session.salt()}\r\n` : POP3_REPLIES.greeting;
    this.#session.send(greeting);
    this.#session.armDeadline();
  }

  consume(input: Buffer): number {
    const parsed = this.#parser.next(input, isSaslState(this.#state) ? "saslResponse" : "command");
    switch (parsed.kind) {
      case "incomplete":
        return 0;
      case "invalid":
        this.#syntaxError();
        break;
      case "command":
        this.#apply(this.#command(parsed.verb, parsed.args));
        break;
      case "saslResponse":
        this.#apply(SASL_STEPS[this.#state as SaslState](this.#context(), parsed.args[0]!));
        break;
    }
    return parsed.length;
  }

  tooLongLogText(buffer: Buffer): Buffer {
    // a SASL response fills the buffer alone (POP3 rewinds it after AUTH)
    return isSaslState(this.#state) ? Buffer.from("AUTH") : cutAtAuthCommand(buffer, AUTH_WORD);
  }

  tooLong(_input: Buffer): string {
    this.#parser.reset();
    this.#state = "start";
    return POP3_REPLIES.invalid;
  }

  afterStartTls(): void {
    this.#parser.reset();
    this.#state = "start";
  }

  authFailedReply(message: string, _errorCode: string | undefined): string {
    return `-ERR ${message}\r\n`;
  }

  afterAuthFailure(): void {
    // nginx's auth sleep handler: back to the start state, USER must be repeated.
    this.#parser.reset();
    this.#state = "start";
  }

  #context(): Pop3Context {
    return { session: this.#session, wire: this.#wire, state: this.#state, login: this.#login };
  }

  #command(verb: Pop3Verb, args: readonly Buffer[]): Outcome {
    const entry = COMMANDS[verb];
    // Any command not allowed here is refused, and the USER state is left.
    if (isSaslState(this.#state) || !entry.states.includes(this.#state)) return INVALID;
    return entry.run(this.#context(), args);
  }

  #syntaxError(): void {
    const tooMany = this.#session.countSyntaxError();
    this.#state = "start";
    this.#session.send(POP3_REPLIES.invalid);
    if (tooMany) this.#session.close();
  }

  #apply(outcome: Outcome): void {
    switch (outcome.kind) {
      case "reply":
        this.#state = outcome.next;
        if (outcome.login) {
          // nginx remembers the name at once: later log lines carry it
          this.#login = outcome.login;
          this.#session.log.context.login = outcome.login.toString("latin1");
        }
        this.#session.send(outcome.text);
        return;
      case "invalid":
        if (outcome.log) this.#session.log.info(outcome.log);
        this.#state = "start";
        this.#session.send(POP3_REPLIES.invalid);
        return;
      case "quit":
        this.#session.send(POP3_REPLIES.ok);
        this.#session.close();
        return;
      case "stls":
        this.#state = "start";
        this.#parser.reset();
        this.#session.send(POP3_REPLIES.ok);
        this.#session.startTls();
        return;
      case "auth":
        this.#state = "start";
        this.#session.authenticate(outcome.credentials);
        return;
    }
  }
}

/**
 * The one command policy of the three front ends (nginx's auth-state
 * handlers, ngx_mail_{imap,pop3,smtp}_auth_state, made one table-driven
 * loop). A front end parses a line and hands the dispatcher either a
 * command with its arguments or a SASL response; the dispatcher enforces
 * what the command's table entry declares, runs the SASL exchange from
 * sasl.ts, and applies the outcome through the protocol's `Replies`.
 *
 * What an entry declares, checked in this order (the order nginx's
 * handlers check in, so the replies are nginx's):
 *   1. `states`: the command states it is taken in (elsewhere: invalid);
 *   2. `tlsFirst`: refused (invalid) in plaintext under `starttls only`:
 *      the commands that carry credentials;
 *   3. `args`: the argument count, else the protocol's bad-arguments reply;
 *   4. `sasl`: the first argument names a mechanism (SASL_MECHANISMS), and
 *      the exchange runs here; with no argument, `run` answers (POP3's
 *      mechanism list);
 *   5. `run`: the command's own handler.
 * Syntax errors are not commands: the front end renders its invalid reply
 * and the session core counts them against max_errors
 * (SessionPort.syntaxError), as ngx_mail_read_command does.
 * Rules: docs/behaviour/session.md#session-6-syntax-errors-and-max_errors,
 * #session-12-sasl-mechanisms-and-steps.
 */
import type { SessionPort } from "./front-end.js";
import { debugCommand, debugCommandState, debugSaslResponse } from "./debug-log.js";
import { asciiUpper } from "./line-bytes.js";
import { SASL_MECHANISMS, SASL_STEPS, type SaslOption, type SaslStep, type SaslStepResult } from "./sasl.js";
import { isSaslErrorAck } from "./sasl-oauth.js";
import type { Credentials } from "./types.js";

/** What one command or SASL response leads to: the result type of all three front ends. */
export type Outcome<State extends string = string> =
  /**
   * send the reply `text`, then be in command state `next` (default: stay);
   * IMAP adds its tagged `OK completed` after `text` (its untagged lines).
   * `login` is a name the protocol remembers for a later step (POP3 USER).
   */
  | { readonly kind: "reply"; readonly text: string; readonly next?: State; readonly login?: Buffer }
  /** a SASL challenge (base64 text, unframed); the next line is a response for `step` */
  | { readonly kind: "challenge"; readonly text: string; readonly step: SaslStep }
  /**
   * refused, not a syntax error: the invalid reply, back to the start state;
   * `log` is nginx's info line for it; `afterChallenge` is the SASL step whose
   * response was refused (IMAP answers LOGIN's user name untagged)
   */
  | { readonly kind: "invalid"; readonly log?: string | undefined; readonly afterChallenge?: SaslStep | undefined }
  /** the protocol's goodbye, then close */
  | { readonly kind: "quit" }
  /** the protocol's go-ahead, then the TLS handshake */
  | { readonly kind: "starttls" }
  /** credentials complete: auth_http decides */
  | { readonly kind: "authenticate"; readonly credentials: Credentials };

/** One command table entry (see the file comment for the order of the checks). */
export interface CommandRule<Cx, State extends string> {
  /** Command states the command is taken in. */
  readonly states: readonly State[];
  /** Refused in plaintext under `starttls only`. */
  readonly tlsFirst?: boolean;
  /** Arguments taken: [least, most]. */
  readonly args: readonly [number, number];
  /** AUTH / AUTHENTICATE: a mechanism name and its initial response. */
  readonly sasl?: boolean;
  /** The handler (for a `sasl` entry: the command without arguments). */
  readonly run?: (cx: Cx, args: readonly Buffer[]) => Outcome<State>;
}

/** How a protocol words the outcomes (what differs between IMAP, POP3 and SMTP). */
export interface Replies {
  reply(text: string): string;
  challenge(base64: string): string;
  invalid(outcome: Extract<Outcome, { kind: "invalid" }>): string;
  quit(): string;
  starttls(): string;
}

/** A protocol's side of the dispatcher. */
export interface DispatchProtocol<Cx, Name extends string, State extends string> {
  readonly commands: Readonly<Record<Name, CommandRule<Cx, State>>>;
  /** The state a session starts in and returns to after a refusal, STARTTLS or auth_http. */
  readonly start: State;
  /** The outcome for a wrong argument count (SMTP: `501 5.5.4 Invalid argument`). */
  readonly badArguments: Outcome<State>;
  /** True when `*_auth` enables the method (CRAM-MD5, EXTERNAL). */
  enabled(method: SaslOption): boolean;
}

const INVALID = { kind: "invalid" } as const;
const EMPTY = Buffer.alloc(0);

/** One session's auth state: command state, SASL step, and the name taken so far. */
export class Dispatcher<Cx, Name extends string, State extends string> {
  readonly #session: SessionPort;
  readonly #protocol: DispatchProtocol<Cx, Name, State>;
  readonly #replies: Replies;
  #state: State;
  #step: SaslStep | undefined;
  /** nginx's `s->login`: from USER, or from an exchange's earlier step. */
  #login: Buffer = EMPTY;
  /** While an Auth-Error-SASL challenge waits for the client's dummy response: what follows it. */
  #saslErrorAck: ((acknowledged: boolean) => void) | undefined;

  constructor(session: SessionPort, protocol: DispatchProtocol<Cx, Name, State>, replies: Replies) {
    this.#session = session;
    this.#protocol = protocol;
    this.#replies = replies;
    this.#state = protocol.start;
  }

  /** The command state (meaningless while a SASL response is awaited). */
  get state(): State {
    return this.#state;
  }

  /** The SASL step whose response the next line is, if any. */
  get step(): SaslStep | undefined {
    return this.#step;
  }

  /** The name USER or an exchange's first step took. */
  get login(): Buffer {
    return this.#login;
  }

  /** A command line: the table's checks, then its handler or the SASL exchange. */
  command(cx: Cx, name: Name, args: readonly Buffer[]): void {
    // the name only: the arguments of LOGIN, USER, PASS, APOP and AUTH are credentials
    debugCommand(this.#session.log, this.#session.server.protocol, name);
    this.apply(this.#decide(cx, name, args));
  }

  /** A SASL response line (its first word): the step table decides. */
  response(line: Buffer): void {
    const step = this.#step;
    debugSaslResponse(this.#session.log, this.#session.server.protocol, step);
    if (step === "saslErrorAck") {
      this.#endSaslErrorAck(isSaslErrorAck(line));
      return;
    }
    if (step === undefined) {
      this.apply(INVALID);
      return;
    }
    this.apply(this.#saslOutcome(SASL_STEPS[step](line, this.#exchange()), step));
  }

  /** A line the parser refused: the protocol's reply, counted by the core; back to the start state. */
  syntaxError(reply: string, thenClose = false): void {
    // a broken line where the dummy response was due ends the session too
    const ack = this.#step === "saslErrorAck";
    this.reset();
    this.#session.syntaxError(reply, thenClose || ack);
  }

  /**
   * An Auth-Error-SASL challenge was sent (session-sasl-error.ts): the next
   * line must be the client's dummy response (RFC 7628 §3.2.3); `then` is
   * told whether it was.
   */
  awaitSaslErrorAck(then: (acknowledged: boolean) => void): void {
    this.#step = "saslErrorAck";
    this.#saslErrorAck = then;
  }

  /**
   * Auth-Error-SASL after a refused OAuth login: the error as the
   * mechanism's challenge, then, on the dummy response, the refusal
   * `failureReply` and `afterFailure` (or the close when `closeAfter`);
   * any other line gets the refusal and ends the session.
   */
  saslErrorChallenge(base64: string, failureReply: string | Buffer, closeAfter: boolean, afterFailure: () => void): void {
    const session = this.#session;
    this.awaitSaslErrorAck((acknowledged) => {
      session.send(failureReply);
      if (!acknowledged) {
        session.log.info("client sent invalid response to SASL error challenge");
        session.close("invalid response to SASL error challenge");
      } else if (closeAfter) {
        session.close("authentication refused");
      } else {
        afterFailure();
      }
    });
    session.send(this.#replies.challenge(base64));
  }

  #endSaslErrorAck(acknowledged: boolean): void {
    const then = this.#saslErrorAck;
    this.reset();
    then?.(acknowledged);
  }

  /** Back to the start state, no exchange running (STARTTLS, a refusal after Auth-Wait). */
  reset(): void {
    this.#state = this.#protocol.start;
    this.#step = undefined;
    this.#saslErrorAck = undefined;
  }

  /** Forgets the exchange's name too (IMAP after a refused login). */
  forgetLogin(): void {
    this.#login = EMPTY;
  }

  /** Turns an outcome into bytes, state and the core's next move. */
  apply(outcome: Outcome<State>): void {
    const session = this.#session;
    const replies = this.#replies;
    switch (outcome.kind) {
      case "reply":
        if (outcome.next !== undefined) {
          debugCommandState(session.log, session.server.protocol, this.#state, outcome.next);
          this.#state = outcome.next;
        }
        if (outcome.login) this.#takeLogin(outcome.login);
        session.send(replies.reply(outcome.text));
        return;
      case "challenge":
        this.#step = outcome.step;
        session.send(replies.challenge(outcome.text));
        return;
      case "invalid":
        if (outcome.log) session.log.info(outcome.log);
        this.reset();
        session.send(replies.invalid(outcome));
        return;
      case "quit":
        session.send(replies.quit());
        session.close("client quit");
        return;
      case "starttls":
        this.reset();
        session.send(replies.starttls());
        session.startTls();
        return;
      case "authenticate":
        this.reset();
        session.authenticate(outcome.credentials);
        return;
    }
  }

  #decide(cx: Cx, name: Name, args: readonly Buffer[]): Outcome<State> {
    const rule = this.#protocol.commands[name];
    if (this.#step !== undefined || !rule.states.includes(this.#state)) return INVALID;
    if (rule.tlsFirst && this.#session.starttls === "only") return INVALID;
    if (args.length < rule.args[0] || args.length > rule.args[1]) return this.#protocol.badArguments;
    if (rule.sasl && args.length > 0) return this.#mechanism(args[0]!, args.slice(1));
    return rule.run ? rule.run(cx, args) : INVALID;
  }

  /** AUTH <mechanism> [initial response]. */
  #mechanism(name: Buffer, rest: readonly Buffer[]): Outcome<State> {
    const mechanism = SASL_MECHANISMS.get(asciiUpper(name));
    if (!mechanism || (mechanism.enabledBy && !this.#protocol.enabled(mechanism.enabledBy))) return INVALID;
    if (rest.length > (mechanism.initialResponse ? 1 : 0)) return INVALID;
    if (rest.length === 0) return { kind: "challenge", text: mechanism.challenge(() => this.#session.salt()), step: mechanism.step };
    return this.#saslOutcome(SASL_STEPS[mechanism.step](rest[0]!, this.#exchange()), undefined);
  }

  #saslOutcome(result: SaslStepResult, afterChallenge: SaslStep | undefined): Outcome<State> {
    switch (result.kind) {
      case "challenge":
        this.#takeLogin(result.login);
        return { kind: "challenge", text: result.text, step: result.step };
      case "credentials":
        return { kind: "authenticate", credentials: result.credentials };
      case "failed":
        // nginx has already taken the name: its info line shows it
        if (result.login) this.#takeLogin(result.login);
        return { kind: "invalid", log: result.log, afterChallenge };
    }
  }

  #exchange(): { login: Buffer; salt: () => string } {
    return { login: this.#login, salt: () => this.#session.salt() };
  }

  /** Mirrors nginx's `s->login`, which its log lines show as `login: "..."`. */
  #takeLogin(login: Buffer): void {
    this.#login = login;
    this.#session.log.context.login = login.length > 0 ? login.toString("latin1") : undefined;
  }
}

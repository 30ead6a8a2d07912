/**
 * The POP3 backend login: USER and PASS, whatever the client used.
 * Rules: docs/behaviour/pop3.md#pop3-11-backend-login.
 */
import { type BackendLoginInput, type LoginStep, commandLine, startsWith } from "./login-step.js";
import { pop3XclientDirective } from "../pop3/module.js";
import { withPop3Xclient } from "./login-identity.js";

/** Inputs of the POP3 dialogue. */
export interface Pop3LoginInput {
  readonly login: Buffer;
  readonly password: Buffer;
}

const plusOk = startsWith("+OK");

/** The session's login: with `pop3_xclient on`, XCLIENT first if offered (login-identity.ts). */
export function pop3BackendLogin(input: BackendLoginInput, steps: LoginStep[] = pop3LoginSteps(input)): LoginStep[] {
  return input.conf.get(pop3XclientDirective) ? withPop3Xclient(steps, input.session) : steps;
}

/** greeting -> USER, +OK -> PASS, +OK -> relay that reply to the client. */
export function pop3LoginSteps(input: Pop3LoginInput): LoginStep[] {
  return [
    { state: "start", check: plusOk, next: { kind: "send", action: "sending user name to upstream", line: commandLine("login", "USER ", input.login) } },
    { state: "user", check: plusOk, next: { kind: "send", action: "sending password to upstream", line: commandLine("password", "PASS ", input.password) } },
    { state: "passwd", check: plusOk, next: { kind: "done", reply: "relay" } },
  ];
}

/**
 * The POP3 backend login: USER and PASS, whatever the client used.
 * Rules: docs/behaviour/pop3.md#pop3-11-backend-login.
 */
import { type LoginStep, commandLine, startsWith } from "./login-step.js";

/** Inputs of the POP3 dialogue. */
export interface Pop3LoginInput {
  readonly login: Buffer;
  readonly password: Buffer;
}

const plusOk = startsWith("+OK");

/** greeting -> USER, +OK -> PASS, +OK -> relay that reply to the client. */
export function pop3LoginSteps(input: Pop3LoginInput): LoginStep[] {
  return [
    { state: "start", check: plusOk, next: { kind: "send", action: "sending user name to upstream", line: commandLine("login", "USER ", input.login) } },
    { state: "user", check: plusOk, next: { kind: "send", action: "sending password to upstream", line: commandLine("password", "PASS ", input.password) } },
    { state: "passwd", check: plusOk, next: { kind: "done", reply: "relay" } },
  ];
}

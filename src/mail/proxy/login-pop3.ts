/** The POP3 backend login (protocols.md 9.4): USER and PASS, whatever the client used. */
import { type LoginStep, startsWith } from "./login-step.js";

/** Inputs of the POP3 dialogue. */
export interface Pop3LoginInput {
  readonly login: Buffer;
  readonly password: Buffer;
}

const plusOk = startsWith("+OK");
const crlf = Buffer.from("\r\n", "latin1");

/** greeting -> USER, +OK -> PASS, +OK -> relay that reply to the client. */
export function pop3LoginSteps(input: Pop3LoginInput): LoginStep[] {
  return [
    { state: "start", check: plusOk, next: { kind: "send", action: "sending user name to upstream", line: Buffer.concat([Buffer.from("USER ", "latin1"), input.login, crlf]) } },
    { state: "user", check: plusOk, next: { kind: "send", action: "sending password to upstream", line: Buffer.concat([Buffer.from("PASS ", "latin1"), input.password, crlf]) } },
    { state: "passwd", check: plusOk, next: { kind: "done", reply: "relay" } },
  ];
}

/**
 * The IMAP backend login: LOGIN with the client's tag and
 * both credentials as synchronising literals. Literals could carry any
 * bytes, but CR, LF and NUL are refused all the same (commandLine): IMAP
 * literals exclude NUL, and no login needs the others.
 * Rules: docs/behaviour/imap.md#imap-12-backend-login.
 */
import { AGAIN, INVALID, OK, type BackendLoginInput, type LoginStep, type ReplyCheck, commandLine, startsWith } from "./login-step.js";
import type { IdField } from "../imap/id-syntax.js";
import { imapIdDirective } from "../imap/module.js";
import { withImapId } from "./login-identity.js";

/** Inputs of the IMAP dialogue. */
export interface ImapLoginInput {
  /** The tag of the client's authenticating command, without the space. */
  readonly tag: string;
  readonly login: Buffer;
  readonly password: Buffer;
}

/**
 * `<tag> OK`, after at most one untagged line (latest nginx: Gmail and
 * SmarterMail send CAPABILITY first). nginx quotes a wrong reply from after
 * the untagged line, and past the tag when the tag matched.
 */
export function taggedOk(tag: string): ReplyCheck {
  const want = Buffer.from(`${tag} `, "latin1");
  return (buf, len) => {
    let p = 0;
    if (buf[0] === 0x2a && buf[1] === 0x20) {
      p = 2;
      while (p < len - 1) {
        if (buf[p] === 0x0d && buf[p + 1] === 0x0a) {
          p += 2;
          break;
        }
        p++;
      }
      if (len - p < 4) return AGAIN;
    }
    if (len - p >= want.length && buf.compare(want, 0, want.length, p, p + want.length) === 0) {
      p += want.length;
      if (buf[p] === 0x4f && buf[p + 1] === 0x4b && p + 1 < len) return OK;
    }
    return p === 0 ? INVALID : { kind: "invalid", from: p };
  };
}

/** The session's login: with `imap_id on`, ID with the client's identity first (login-identity.ts). */
export function imapBackendLogin(
  input: BackendLoginInput,
  tag: string,
  clientId: readonly IdField[],
  steps: LoginStep[] = imapLoginSteps({ tag, login: input.login, password: input.password }),
): LoginStep[] {
  return input.conf.get(imapIdDirective) ? withImapId(steps, tag, input.session, clientId) : steps;
}

/** greeting -> `tag LOGIN {n}`, + -> `login {m}`, + -> password, tagged OK -> relay. */
export function imapLoginSteps(input: ImapLoginInput): LoginStep[] {
  const cont = startsWith("+");
  return [
    {
      state: "start",
      check: startsWith("* OK"),
      next: { kind: "send", action: "sending LOGIN command to upstream", line: commandLine("tag", `${input.tag} LOGIN {${input.login.length}}`) },
    },
    {
      state: "login",
      check: cont,
      next: { kind: "send", action: "sending user name to upstream", line: commandLine("login", input.login, ` {${input.password.length}}`) },
    },
    { state: "user", check: cont, next: { kind: "send", action: "sending password to upstream", line: commandLine("password", input.password) } },
    { state: "passwd", check: taggedOk(input.tag), next: { kind: "done", reply: "relay" } },
  ];
}

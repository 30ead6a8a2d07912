/**
 * The demo mail backend's one mailbox: messages in memory, for the demo
 * user only, gone when the process ends. Bounded in count and bytes, so a
 * client that sends mail in a loop cannot grow the process without limit.
 */

/** One stored message. IMAP sessions keep the object, so flags live here. */
export interface DemoMessage {
  readonly uid: number;
  /** The message as delivered: CRLF line ends, dot-unstuffed. */
  readonly data: Buffer;
  readonly received: Date;
  readonly flags: Set<string>;
}

/** Limits of the demo mailbox (small: it is a demonstration, not a store). */
export const MAX_MESSAGES = 100;
export const MAX_MESSAGE_BYTES = 1024 * 1024;
export const MAX_MAILBOX_BYTES = 16 * 1024 * 1024;

export class DemoMailbox {
  readonly uidValidity = Math.floor(Date.now() / 1000);
  #messages: DemoMessage[] = [];
  #nextUid = 1;
  #bytes = 0;

  /** The messages now held, oldest first. */
  get messages(): readonly DemoMessage[] {
    return this.#messages;
  }

  get uidNext(): number {
    return this.#nextUid;
  }

  /** True when a message of `size` bytes still fits. */
  fits(size: number): boolean {
    return size <= MAX_MESSAGE_BYTES && this.#messages.length < MAX_MESSAGES && this.#bytes + size <= MAX_MAILBOX_BYTES;
  }

  /** Stores a message; null when it does not fit. */
  deliver(data: Buffer, received = new Date()): DemoMessage | null {
    if (!this.fits(data.length)) return null;
    const message: DemoMessage = { uid: this.#nextUid++, data, received, flags: new Set() };
    this.#messages.push(message);
    this.#bytes += data.length;
    return message;
  }

  /** Removes messages by UID (POP3's DELE, committed at QUIT). */
  remove(uids: ReadonlySet<number>): void {
    const kept = this.#messages.filter((m) => !uids.has(m.uid));
    for (const m of this.#messages) if (uids.has(m.uid)) this.#bytes -= m.data.length;
    this.#messages = kept;
  }
}

/** Logins and addresses compare ASCII case-insensitively, as mail systems usually do. */
export function sameLogin(a: string, b: string): boolean {
  return a.length === b.length && a.toLowerCase() === b.toLowerCase();
}

/** RFC 5322 date: `Wed, 02 Dec 2026 07:50:00 +0000`. */
export function rfc5322Date(d: Date): string {
  return d.toUTCString().replace(/GMT$/, "+0000");
}

/** The message every start of the demo backend puts in the mailbox. */
export function welcomeMessage(user: string, now = new Date()): Buffer {
  const lines = [
    "From: Postern demo <postmaster@localhost>",
    `To: ${user}`,
    "Subject: Welcome to Postern",
    `Date: ${rfc5322Date(now)}`,
    `Message-ID: <welcome.${now.getTime()}@postern-demo.localhost>`,
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=us-ascii",
    "",
    "Welcome to Postern!",
    "",
    "You are reading this through Postern: it took your login, asked the",
    "auth service (postern auth-server, users in conf/users) whether the",
    "password is right and where your mailbox is, logged in there for you,",
    "and now relays your session.",
    "",
    "This mailbox is the demo mail backend that `npm start` runs beside",
    "Postern (src/demo/). It keeps mail in memory only: what you send to",
    `${user} through Postern's SMTP submission port lands here, and`,
    "all of it is gone when npm start stops. It is not a mail server.",
    "",
    "To use your own servers, point the user at them:",
    `  node bin/postern.js passwd conf/users ${user} imap=HOST:PORT pop3=HOST:PORT smtp=HOST:PORT`,
    "",
  ];
  return Buffer.from(lines.join("\r\n"), "latin1");
}

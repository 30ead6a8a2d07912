/**
 * The demo mail backend's program, run by `npm start` (scripts/start.js)
 * beside Postern, never by the `postern` command:
 *
 *   node dist/src/demo/main.js [--imap ADDR:PORT] [--pop3 ADDR:PORT] [--smtp ADDR:PORT] [--user LOGIN]
 *
 * What it serves and what it trusts: backend.ts.
 */
import { type DemoBackend, type Listen, parseDemoArgs, startDemoBackend } from "./backend.js";
import { consoleLog } from "./log.js";

async function main(): Promise<void> {
  const options = parseDemoArgs(process.argv.slice(2));
  if (typeof options === "string") {
    process.stderr.write(`postern demo mail backend: ${options}\n`);
    process.exit(2);
  }
  let demo: DemoBackend;
  try {
    demo = await startDemoBackend(options);
  } catch (e) {
    process.stderr.write(`postern demo mail backend: cannot listen: ${(e as Error).message}\n`);
    process.exit(1);
  }
  const at = (l: Listen, p: number): string => `${l.host.includes(":") ? `[${l.host}]` : l.host}:${p}`;
  consoleLog(
    `IMAP ${at(options.imap, demo.ports.imap)}, POP3 ${at(options.pop3, demo.ports.pop3)}, SMTP ${at(options.smtp, demo.ports.smtp)}: ` +
      `an in-memory mailbox for ${options.user} with a welcome message (a demo for npm start, not a mail server)`,
  );
  const stop = (): void => {
    void demo.close().then(() => process.exit(0));
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  process.on("SIGQUIT", stop);
}

void main();

/** The demo backend's log: one line per event, each saying it is the demo. */
export type DemoLog = (message: string) => void;

/** Writes `postern demo mail backend: MESSAGE` lines to stdout. */
export function consoleLog(message: string): void {
  process.stdout.write(`postern demo mail backend: ${message.replace(/[^\x20-\x7e]/g, "?")}\n`);
}

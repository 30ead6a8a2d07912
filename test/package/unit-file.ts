/**
 * Reads a systemd unit file as systemd does (systemd.syntax(7),
 * systemd.service(7) "Command lines"), for running a unit's commands by
 * hand where systemd itself is not running: sections, `Key=value` lines,
 * comments, backslash continuations, and an Exec line's prefix characters
 * and quoted words. Specifiers (`%n`) and environment variables (`$X`) are
 * refused rather than half-understood.
 */

/** One `[Section]`: its keys in order (a key may repeat, as ExecStartPre may). */
export type UnitSection = [key: string, value: string][];

export function parseUnit(text: string): Map<string, UnitSection> {
  const sections = new Map<string, UnitSection>();
  let current: UnitSection | undefined;
  const lines = text.replace(/\\\n/g, " ").split("\n");
  for (const raw of lines) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header) {
      current = [];
      sections.set(header[1]!, current);
      continue;
    }
    const eq = line.indexOf("=");
    if (eq <= 0 || !current) throw new Error(`not a unit file line: ${line}`);
    current.push([line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
  }
  return sections;
}

/** The one value of `key` in a section (an error if it is missing or repeated). */
export function only(section: UnitSection | undefined, key: string): string {
  const values = (section ?? []).filter(([k]) => k === key).map(([, v]) => v);
  if (values.length !== 1) throw new Error(`${key}= appears ${values.length} times`);
  return values[0]!;
}

export interface ExecLine {
  /** `-`: a failure is ignored; the others (`@ + ! !! :`) change how systemd runs it. */
  prefixes: string;
  argv: string[];
}

const ESCAPES: Record<string, string> = { n: "\n", t: "\t", "\\": "\\", '"': '"', "'": "'", " ": " " };

/** Splits an Exec line into its prefix characters and words. */
export function parseExec(value: string): ExecLine {
  const m = /^([-@+!:]*)(.*)$/s.exec(value)!;
  const body = m[2]!;
  if (/[%$]/.test(body)) throw new Error(`specifiers and variables are not supported here: ${value}`);
  const argv: string[] = [];
  let i = 0;
  while (i < body.length) {
    while (i < body.length && /\s/.test(body[i]!)) i++;
    if (i >= body.length) break;
    let word = "";
    const quote = body[i] === '"' || body[i] === "'" ? body[i]! : undefined;
    if (quote) i++;
    for (; i < body.length; i++) {
      const c = body[i]!;
      if (quote ? c === quote : /\s/.test(c)) break;
      if (c === "\\") {
        const e = ESCAPES[body[i + 1] ?? ""];
        if (e === undefined) throw new Error(`unsupported escape in: ${value}`);
        word += e;
        i++;
      } else word += c;
    }
    if (quote) {
      if (body[i] !== quote) throw new Error(`unterminated quote in: ${value}`);
      i++;
      if (i < body.length && !/\s/.test(body[i]!)) throw new Error(`a quoted word must end at a space: ${value}`);
    }
    argv.push(word);
  }
  if (argv.length === 0 || !argv[0]!.startsWith("/")) throw new Error(`the command must be an absolute path: ${value}`);
  return { prefixes: m[1]!, argv };
}

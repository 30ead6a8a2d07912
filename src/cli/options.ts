/**
 * nginx's command-line switches, read the way nginx reads them: letters may
 * be combined (`-tq`), a value may be attached (`-c/etc/x.conf`) or be the
 * next argument.
 *
 * Rule: docs/behaviour/cli.md#cli-1-switches.
 */

/** The signals `-s` knows, with the signal each sends. */
export const SIGNAL_NAMES: Readonly<Record<string, NodeJS.Signals>> = {
  stop: "SIGTERM",
  quit: "SIGQUIT",
  reopen: "SIGUSR1",
  reload: "SIGHUP",
};

/** What the command line asked for. */
export interface Options {
  help: boolean;
  version: boolean;
  configure: boolean;
  test: boolean;
  dump: boolean;
  quiet: boolean;
  signal: string | undefined;
  prefix: string | undefined;
  errorLog: string | undefined;
  conf: string | undefined;
  globals: string | undefined;
}

/** Parses the switches; returns the message nginx prints (after `nginx: `) on error. */
export function parseOptions(argv: readonly string[]): Options | { error: string } {
  const o: Options = {
    help: false,
    version: false,
    configure: false,
    test: false,
    dump: false,
    quiet: false,
    signal: undefined,
    prefix: undefined,
    errorLog: undefined,
    conf: undefined,
    globals: undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith("-")) return { error: `invalid option: "${arg}"` };
    let p = 1;
    while (p < arg.length) {
      const ch = arg[p++]!;
      switch (ch) {
        case "?":
        case "h":
          o.help = true;
          o.version = true;
          continue;
        case "v":
          o.version = true;
          continue;
        case "V":
          o.version = true;
          o.configure = true;
          continue;
        case "t":
          o.test = true;
          continue;
        case "T":
          o.test = true;
          o.dump = true;
          continue;
        case "q":
          o.quiet = true;
          continue;
      }
      const takes: Record<string, [keyof Options, string]> = {
        p: ["prefix", "directory name"],
        e: ["errorLog", "file name"],
        c: ["conf", "file name"],
        g: ["globals", "parameter"],
        s: ["signal", "parameter"],
      };
      const t = takes[ch];
      if (!t) return { error: `invalid option: "${ch}"` };
      let value: string | undefined;
      if (p < arg.length) value = arg.slice(p);
      else if (i + 1 < argv.length) value = argv[++i];
      if (value === undefined) return { error: `option "-${ch}" requires ${t[1]}` };
      if (ch === "s" && !(value in SIGNAL_NAMES)) return { error: `invalid option: "-s ${value}"` };
      (o as unknown as Record<string, string>)[t[0]] = value;
      break; // the value ends this argument
    }
  }
  return o;
}

/**
 * Reads and checks a configuration for start, reload, -t and -s. Every
 * error is a ConfError; callers report its `.text` at level emerg.
 */
import { isAbsolute, join } from "node:path";
import { type ConfSource, type ParsedConf, parseConfiguration } from "../conf/engine.js";
import { checkCoreConf } from "../core/core-module.js";
import { ConfError } from "../core/errors.js";
import { confModules } from "../modules.js";
import type { Options } from "./options.js";
import { DEFAULT_CONF, DEFAULT_PREFIX } from "./version.js";

/** Where the configuration is, from the command line. */
export function confSource(o: Options): ConfSource {
  let prefix = o.prefix ?? DEFAULT_PREFIX;
  if (!prefix.endsWith("/")) prefix += "/";
  if (!isAbsolute(prefix)) prefix = join(process.cwd(), prefix) + "/";
  const conf = o.conf ?? DEFAULT_CONF;
  const file = isAbsolute(conf) ? conf : join(prefix, conf);
  return o.globals === undefined ? { prefix, file } : { prefix, file, globals: o.globals };
}

/** Parses only (what `-t` calls "syntax"); warnings go to `onWarning`. Throws ConfError. */
export function parseOnly(source: ConfSource, onWarning: (text: string) => void): ParsedConf {
  return parseConfiguration(source, confModules(), onWarning);
}

/** The checks nginx makes after "syntax is ok" (module init_conf). Throws ConfError. */
export function checkConfiguration(conf: ParsedConf): void {
  checkCoreConf(conf);
}

/** Parses and checks; warnings go to `onWarning`. Throws ConfError. */
export function loadConfiguration(source: ConfSource, onWarning: (text: string) => void): ParsedConf {
  const conf = parseOnly(source, onWarning);
  checkConfiguration(conf);
  return conf;
}

/** The message of a ConfError (with its location), or of any other error. */
export function errorText(err: unknown): string {
  return err instanceof ConfError ? err.text : err instanceof Error ? err.message : String(err);
}

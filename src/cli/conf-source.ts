/**
 * Where the configuration is: `-p`, `-c` and `-g` against the defaults.
 *
 * Rule: docs/behaviour/cli.md#cli-2-prefix-configuration-file-and-start-up-log.
 */
import { isAbsolute, join } from "node:path";
import type { ConfSource } from "../conf/engine.js";
import { DEFAULT_CONF, DEFAULT_PREFIX } from "../core/version.js";
import type { Options } from "./options.js";

/** Where the configuration is, from the command line. */
export function confSource(o: Options): ConfSource {
  let prefix = o.prefix ?? DEFAULT_PREFIX;
  if (!prefix.endsWith("/")) prefix += "/";
  if (!isAbsolute(prefix)) prefix = join(process.cwd(), prefix) + "/";
  const conf = o.conf ?? DEFAULT_CONF;
  const file = isAbsolute(conf) ? conf : join(prefix, conf);
  return o.globals === undefined ? { prefix, file } : { prefix, file, globals: o.globals };
}

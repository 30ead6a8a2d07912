/**
 * Reads and checks a configuration for start, reload, -t and -s, and
 * rebuilds it in a worker from what the master validated. A lifecycle step
 * (cli/ calls it for -t and -s, process/ for start, reload and workers).
 * Every error is a ConfError; callers report its `.text` at level emerg.
 */
import { type ConfSource, type ParsedConf, parseConfiguration } from "../conf/engine.js";
import { type ConfSnapshot, recordInputs, replayInputs } from "../core/conf-inputs.js";
import { checkCoreConf } from "../core/core-module.js";
import { ConfError } from "../core/errors.js";
import { confModules } from "../modules.js";
import { checkSharedStore } from "../mail/shared-store/check.js";
// zones saying `sync` register with the check above; imported here, after the mail modules, so no import cycle runs it early
import "../mail/ssl/sync.js";

/** Parses only (what `-t` calls "syntax"); warnings go to `onWarning`. Throws ConfError. */
export function parseOnly(source: ConfSource, onWarning: (text: string) => void): ParsedConf {
  return parseConfiguration(source, confModules(), onWarning);
}

/** The checks nginx makes after "syntax is ok" (module init_conf). Throws ConfError. */
export function checkConfiguration(conf: ParsedConf): void {
  checkCoreConf(conf);
  checkSharedStore(conf);
}

/** What each configuration loaded here was built from (see conf-inputs.ts). */
const inputsOf = new WeakMap<ParsedConf, ConfSnapshot>();

/** Parses and checks, recording every input; warnings go to `onWarning`. Throws ConfError. */
export function loadConfiguration(source: ConfSource, onWarning: (text: string) => void): ParsedConf {
  const { result: conf, snapshot } = recordInputs(() => {
    const parsed = parseOnly(source, onWarning);
    checkConfiguration(parsed);
    return parsed;
  });
  inputsOf.set(conf, snapshot);
  return conf;
}

/** The inputs a configuration from loadConfiguration() was built from: what workers are given. */
export function validatedInputs(conf: ParsedConf): ConfSnapshot {
  const snapshot = inputsOf.get(conf);
  if (!snapshot) throw new Error("configuration was not loaded by loadConfiguration");
  return snapshot;
}

/** A worker's load: the master's validated inputs, never the disk. Throws ConfError. */
export function loadValidatedConfiguration(source: ConfSource, snapshot: ConfSnapshot, onWarning: (text: string) => void): ParsedConf {
  return replayInputs(snapshot, () => {
    const parsed = parseOnly(source, onWarning);
    checkConfiguration(parsed);
    return parsed;
  });
}

/** The message of a ConfError (with its location), or of any other error. */
export function errorText(err: unknown): string {
  return err instanceof ConfError ? err.text : err instanceof Error ? err.message : String(err);
}

/**
 * Synchronous host name resolution for configuration time. nginx resolves
 * `listen` and `auth_http` host names while it parses, so its errors come
 * out in file order; Node's resolver is asynchronous, so we ask the
 * system resolver (NSS, like getaddrinfo) through `getent`.
 */
import { execFileSync } from "node:child_process";
import { isIP } from "node:net";
import { confInput } from "./conf-inputs.js";

/** The addresses `name` resolves to (IPv4 first), or [] when not found. */
export function resolveHostSync(name: string): string[] {
  // a worker replays the master's answer (conf-inputs.ts)
  return confInput(`host:${name}`, () => resolve(name));
}

function resolve(name: string): string[] {
  if (isIP(name)) return [name];
  if (name === "localhost") return ["127.0.0.1"];
  let out: string;
  try {
    out = execFileSync("getent", ["ahosts", name], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 10_000 });
  } catch {
    return [];
  }
  const seen = new Set<string>();
  for (const line of out.split("\n")) {
    const addr = line.split(/\s+/)[0];
    if (addr && isIP(addr)) seen.add(addr);
  }
  return [...seen].sort((a, b) => isIP(a) - isIP(b));
}

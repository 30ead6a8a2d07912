/**
 * getpwnam/getgrnam for the `user` directive. Node has no binding for them,
 * so the system databases are read directly (files only, as in a container;
 * NSS modules such as LDAP are not consulted).
 */
import { readConfFile } from "./conf-inputs.js";

function lookup(file: string, name: string): string[] | undefined {
  let text: string;
  try {
    text = readConfFile(file).toString("utf8");
  } catch {
    return undefined;
  }
  for (const line of text.split("\n")) {
    const fields = line.split(":");
    if (fields[0] === name) return fields;
  }
  return undefined;
}

/** The uid and primary gid of a user, or undefined. */
export function getpwnam(name: string): { uid: number; gid: number } | undefined {
  const f = lookup("/etc/passwd", name);
  if (!f || f.length < 4) return undefined;
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

/** The gid of a group, or undefined. */
export function getgrnam(name: string): number | undefined {
  const f = lookup("/etc/group", name);
  return f && f.length >= 3 ? Number(f[2]) : undefined;
}

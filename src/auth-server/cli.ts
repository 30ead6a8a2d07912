/**
 * TEMPORARY stand-in: the auth-server helper's branch provides the real
 * file; this one is replaced at merge.
 */

/** `postern auth-server ...` (not built yet in this branch). */
export async function runAuthServer(_argv: string[]): Promise<number> {
  process.stderr.write("postern: auth-server: not built yet\n");
  return 1;
}

/** `postern passwd ...` (not built yet in this branch). */
export async function runPasswd(_argv: string[]): Promise<number> {
  process.stderr.write("postern: passwd: not built yet\n");
  return 1;
}

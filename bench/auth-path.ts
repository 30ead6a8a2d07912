/**
 * The auth_http path rows of the bench (issue 14): IMAP logins through
 * nginx (a new HTTP/1.0 connection to the auth service per login) and
 * through Postern with each option, against an auth service that spends a
 * few milliseconds of CPU on a password hash (auth-cost-server.ts). Every
 * login uses the same credentials, so with the cache every login after the
 * first is a hit: the cache row is the upper bound for a user logging in
 * again within the success lifetime.
 */

export const AUTH_PATH_WORKLOADS: readonly { readonly name: string; readonly postern: string }[] = [
  { name: "auth path: login, scrypt auth, connection per login", postern: "" },
  { name: "auth path: login, scrypt auth, Postern auth_http_keepalive 16", postern: "auth_http_keepalive 16;" },
  { name: "auth path: login, scrypt auth, Postern auth_http_cache", postern: "auth_http_keepalive 16; auth_http_cache zone=bench:1m ok=60s;" },
];

export const AUTH_PATH_HEADER = [
  "| auth path workload | nginx logins/s | Postern logins/s | Postern / nginx | proxy CPU ms per login (nginx / Postern) | auth service CPU ms per login (nginx / Postern) | total CPU ms per login (nginx / Postern) |",
  "|---|---|---|---|---|---|---|",
].join("\n");

/** One table row; perCpu is logins per CPU second of the proxy, auth*PerOp CPU seconds of the auth service per login. */
export function authPathRow(
  name: string,
  nginxRate: number,
  posternRate: number,
  nginxPerCpu: number,
  posternPerCpu: number,
  nginxAuth: number,
  posternAuth: number,
): string {
  const ms = (s: number): string => (Number.isFinite(s) ? (s * 1000).toFixed(2) : "-");
  const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : "-");
  const proxyN = 1 / nginxPerCpu;
  const proxyP = 1 / posternPerCpu;
  return `| ${name} | ${f1(nginxRate)} | ${f1(posternRate)} | ${(posternRate / nginxRate).toFixed(2)} | ${ms(proxyN)} / ${ms(proxyP)} | ${ms(nginxAuth)} / ${ms(posternAuth)} | ${ms(proxyN + nginxAuth)} / ${ms(proxyP + posternAuth)} |`;
}

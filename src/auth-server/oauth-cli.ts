/**
 * The auth service's OAuth options (`postern auth-server`): `--jwks FILE`
 * (a JWKS of public keys for JWT access tokens), `--introspect URL` (an
 * RFC 7662 endpoint, with `--introspect-credentials-file FILE` holding
 * `client_id:client_secret`), `--issuer`, `--audience`, `--user-claim`
 * (default `email`). Neither --jwks nor --introspect: OAuth logins are
 * refused as an unsupported method.
 * Rule: docs/auth-server.md#oauth-bearer-tokens.
 */
import { readFile } from "node:fs/promises";
import { JwksKeys } from "./jwt.js";
import type { OauthSettings } from "./oauth.js";

/** The options that take a value. */
export const OAUTH_OPTIONS: readonly string[] = ["--jwks", "--introspect", "--introspect-credentials-file", "--issuer", "--audience", "--user-claim"];

/** Clock skew allowed on exp and nbf. */
const LEEWAY_SECONDS = 60;

/** The settings from the options, undefined without --jwks or --introspect, or an error message. */
export async function oauthSettings(args: ReadonlyMap<string, string>): Promise<OauthSettings | undefined | string> {
  const jwksFile = args.get("--jwks");
  const url = args.get("--introspect");
  const others = ["--introspect-credentials-file", "--issuer", "--audience", "--user-claim"].filter((o) => args.has(o));
  if (jwksFile === undefined && url === undefined) return others.length > 0 ? `option "${others[0]}" needs --jwks or --introspect` : undefined;
  const userClaim = args.get("--user-claim") ?? "email";
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(userClaim)) return `invalid --user-claim "${userClaim}"`;
  let jwks: JwksKeys | undefined;
  if (jwksFile !== undefined) {
    try {
      jwks = JwksKeys.parse(await readFile(jwksFile, "utf8"));
    } catch (e) {
      return `cannot load JWKS file "${jwksFile}": ${(e as Error).message}`;
    }
  }
  let introspection: OauthSettings["introspection"];
  if (url !== undefined) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(url);
    } catch {
      parsed = undefined;
    }
    if (!parsed || (parsed.protocol !== "https:" && parsed.protocol !== "http:")) return `invalid --introspect "${url}" (expected an http or https URL)`;
    let clientCredentials: string | undefined;
    const file = args.get("--introspect-credentials-file");
    if (file !== undefined) {
      try {
        clientCredentials = (await readFile(file, "utf8")).replace(/\r?\n$/, "");
      } catch (e) {
        return `cannot read introspection credentials file "${file}": ${(e as Error).message}`;
      }
      if (!/^[^:\s]+:\S+$/.test(clientCredentials)) return `introspection credentials file "${file}" must hold one line client_id:client_secret`;
    }
    introspection = { url, clientCredentials, timeoutMs: 5000 };
  }
  return { jwks, introspection, policy: { issuer: args.get("--issuer"), audience: args.get("--audience"), userClaim, leewaySeconds: LEEWAY_SECONDS } };
}

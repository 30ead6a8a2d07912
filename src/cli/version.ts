/**
 * Version, help and build texts. Postern prints `nginx version:
 * nginx/1.22.1 (postern/X)`: tools that match `nginx version:
 * nginx/([0-9.]+)` see the nginx release whose behaviour Postern follows,
 * and a human sees what is really running (docs/compat.md).
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";

/** The package root (where package.json and bin/ live); dist/src/cli/ is three levels below. */
export const PACKAGE_ROOT = fileURLToPath(new URL("../../../", import.meta.url));

/** Postern's own version, from package.json. */
export const POSTERN_VERSION: string = (JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string }).version;

/** The nginx release whose behaviour Postern reproduces. */
export const NGINX_COMPAT_VERSION = "1.22.1";

/** What the startup notice and `-v` name: `postern/0.1.0`. */
export const POSTERN_NAME = `postern/${POSTERN_VERSION}`;

/** Default prefix: the package root, with a trailing slash. */
export const DEFAULT_PREFIX = PACKAGE_ROOT.endsWith("/") ? PACKAGE_ROOT : PACKAGE_ROOT + "/";
/** Default configuration file, relative to the prefix. */
export const DEFAULT_CONF = "conf/nginx.conf";
/** Default pid file, relative to the prefix (also the `pid` directive's default). */
export const DEFAULT_PID = "logs/nginx.pid";

/** The `-v` line. */
export function versionLine(): string {
  return `nginx version: nginx/${NGINX_COMPAT_VERSION} (${POSTERN_NAME})`;
}

/** The `-h` text, after the version line. */
export function helpText(): string {
  return [
    "Usage: postern [-?hvVtTq] [-s signal] [-p prefix]",
    "               [-e filename] [-c filename] [-g directives]",
    "       postern auth-server ...   (test auth_http server, see --help)",
    "       postern passwd ...        (password file tool, see --help)",
    "",
    "Options:",
    "  -?,-h         : this help",
    "  -v            : show version and exit",
    "  -V            : show version and configure options then exit",
    "  -t            : test configuration and exit",
    "  -T            : test configuration, dump it and exit",
    "  -q            : suppress non-error messages during configuration testing",
    "  -s signal     : send signal to a master process: stop, quit, reopen, reload",
    `  -p prefix     : set prefix path (default: ${DEFAULT_PREFIX})`,
    "  -e filename   : set error log file (default: stderr)",
    `  -c filename   : set configuration file (default: ${DEFAULT_CONF})`,
    "  -g directives : set global directives out of configuration file",
    "",
    "",
  ].join("\n");
}

/** The `-V` lines after the version line. */
export function configureText(): string {
  const ssl = process.versions.openssl;
  return [
    `built with OpenSSL ${ssl} (Node.js ${process.version})`,
    "TLS SNI support enabled",
    "configure arguments: --with-mail --with-mail_ssl_module --with-debug" +
      ` --prefix=${DEFAULT_PREFIX.replace(/\/$/, "")} --conf-path=${DEFAULT_CONF} --pid-path=${DEFAULT_PID}` +
      " --error-log-path=stderr --without-http --without-stream",
    "",
  ].join("\n");
}

/**
 * The `-v`, `-V` and `-h` texts. The facts they print (versions, default
 * paths) are in core/version.ts.
 */
import { DEFAULT_CONF, DEFAULT_PID, DEFAULT_PREFIX, VERSION_PAIR } from "../core/version.js";

/** The `-v` line. */
export function versionLine(): string {
  return `nginx version: ${VERSION_PAIR}`;
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

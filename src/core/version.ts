/**
 * What Postern is and where it is installed: its version, the nginx release
 * whose behaviour it follows, and the default prefix, configuration and pid
 * paths. Facts of the product, below every layer that reports or uses them
 * (the start-up notice, `-v`, the `pid` default). Postern names itself
 * `nginx/1.22.1 (postern/X)`, in `-v` (`nginx version: ...`) and in the
 * start-up notice alike: tools that match `nginx/([0-9.]+)` see the nginx
 * release whose behaviour Postern follows, and a human sees what is really
 * running (docs/compat.md).
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";

/** The package root (where package.json and bin/ live); dist/src/core/ is three levels below. */
export const PACKAGE_ROOT = fileURLToPath(new URL("../../../", import.meta.url));

/** Postern's own version, from package.json. */
export const POSTERN_VERSION: string = (JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string }).version;

/** The nginx release whose behaviour Postern reproduces. */
export const NGINX_COMPAT_VERSION = "1.22.1";

/** Postern's own name and version: `postern/0.1.0`. */
export const POSTERN_NAME = `postern/${POSTERN_VERSION}`;

/** What `-v` and the start-up notice name: `nginx/1.22.1 (postern/0.1.0)`, nginx's pair first. */
export const VERSION_PAIR = `nginx/${NGINX_COMPAT_VERSION} (${POSTERN_NAME})`;

/** Default prefix: the package root, with a trailing slash. */
export const DEFAULT_PREFIX = PACKAGE_ROOT.endsWith("/") ? PACKAGE_ROOT : PACKAGE_ROOT + "/";
/** Default configuration file, relative to the prefix. */
export const DEFAULT_CONF = "conf/nginx.conf";
/** Default pid file, relative to the prefix (also the `pid` directive's default). */
export const DEFAULT_PID = "logs/nginx.pid";

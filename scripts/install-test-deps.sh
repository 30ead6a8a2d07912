#!/usr/bin/env bash
# System packages the tests need. Debian/Ubuntu only; run as root or with sudo.
set -euo pipefail

need=()
[ -x /usr/sbin/nginx ] || need+=(nginx-light)
[ -f /usr/lib/nginx/modules/ngx_mail_module.so ] || need+=(libnginx-mod-mail)
# limit_conn is compared with nginx's stream module (test/mail/limits/)
[ -f /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
command -v dovecot >/dev/null || need+=(dovecot-core)
[ -f /usr/lib/dovecot/imap ] || need+=(dovecot-imapd)
[ -f /usr/lib/dovecot/pop3 ] || need+=(dovecot-pop3d)
command -v swaks >/dev/null || need+=(swaks)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
command -v python3 >/dev/null || need+=(python3)
# the metrics page is read by the Prometheus client library's own parser (test/mail/observability/)
/usr/bin/python3 -c "import prometheus_client.parser" 2>/dev/null || need+=(python3-prometheus-client)
# the cluster tests (test/cluster/): HAProxy in front of three nodes sharing one Redis
[ -x /usr/sbin/haproxy ] || need+=(haproxy)
[ -x /usr/bin/redis-server ] || need+=(redis-server)
command -v getent >/dev/null || need+=(libc-bin)
# contrib/logrotate/postern is run through the real logrotate (test/package/)
[ -x /usr/sbin/logrotate ] || need+=(logrotate)
# systemd-analyze verify reads contrib/systemd/postern.service as systemd would
[ -x /usr/bin/systemd-analyze ] || need+=(systemd)
# start-stop-daemon: the systemd unit's ExecStop, as nginx's
[ -x /sbin/start-stop-daemon ] || [ -x /usr/sbin/start-stop-daemon ] || need+=(dpkg)

[ ${#need[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then sudo="sudo"; else
    echo "The tests need these Debian packages: ${need[*]} (run as root or install them)" >&2
    exit 1
  fi
fi
echo "Installing test dependencies: ${need[*]}" >&2
# Keep the packages' own services (nginx on :80, dovecot, haproxy, redis) from starting: the
# tests start private instances on loopback ports.
policy=/usr/sbin/policy-rc.d
created_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod +x "$policy"
  created_policy=1
fi
trap '[ -n "$created_policy" ] && $sudo rm -f "$policy"' EXIT
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

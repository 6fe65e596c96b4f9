#!/bin/sh
# Runs the example in the foreground: examples/openresty/run.sh [LISTEN]   (default 127.0.0.1:8080)
# Needs IG_APP_ID, IG_APP_SECRET, IG_REDIRECT_URI (https://, as registered) and optionally IG_API,
# IG_COOKIE_SECRET, IG_TIMEOUT, IG_ENDPOINT_BASE (a fake server) in the environment; app.lua's
# header explains each. CA_FILE, RESOLVER, PREFIX and NGINX may be overridden from the environment
# too. It serves plain http on LISTEN: put TLS in front (tls-front.conf is a sample). To try it
# against the fake Instagram, with that front, run `make example` instead.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
listen=${1:-127.0.0.1:8080}
prefix=${PREFIX:-$(mktemp -d /tmp/lua-instagram-example.XXXXXX)}
ca=${CA_FILE:-/etc/ssl/certs/ca-certificates.crt}
resolver=${RESOLVER:-$(awk '/^nameserver/ { print $2; exit }' /etc/resolv.conf 2>/dev/null)}
resolver=${resolver:-127.0.0.53}
mkdir -p "$prefix"
sed -e "s|\${ROOT}|$root|g" -e "s|\${PREFIX}|$prefix|g" -e "s|\${LISTEN}|$listen|g" \
    -e "s|\${CA_FILE}|$ca|g" -e "s|\${RESOLVER}|$resolver|g" \
    "$here/nginx.conf" >"$prefix/nginx.conf"
echo "lua-instagram example on http://$listen/ behind your TLS front (prefix $prefix)" >&2
exec "${NGINX:-nginx}" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" -g "daemon off;"

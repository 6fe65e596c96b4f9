#!/bin/sh
# Runs the example in the foreground: examples/openresty/run.sh [LISTEN]   (default 127.0.0.1:8080)
# Needs IG_APP_ID, IG_APP_SECRET, IG_REDIRECT_URI (and optionally IG_API, IG_COOKIE_SECRET) in the
# environment. CA_FILE, RESOLVER, PREFIX and NGINX may be overridden from the environment too.
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
echo "lua-instagram example on http://$listen/ (prefix $prefix)" >&2
exec "${NGINX:-nginx}" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" -g "daemon off;"

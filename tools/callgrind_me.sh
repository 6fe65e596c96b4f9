#!/bin/sh
# Callgrind instructions per sequential keep-alive `ig:me`, module vs a raw libcurl loop.
# Starts Debian nginx (master off, one worker) on a free loopback port serving a static /me
# JSON over HTTP keep-alive, then runs each contender under valgrind --tool=callgrind twice,
# with N1 and N2 calls; (I(N2) - I(N1)) / (N2 - N1) is the cost per call with start-up and
# warm-up subtracted. Usage: tools/callgrind_me.sh [N1 [N2]]   (defaults 50 and 550)
#   CG_LUA=luajit  runs the module on LuaJIT (build/5.1) instead of Lua 5.4 (build/5.4)
#   CG_KEEP=1      keeps the callgrind output files (printed) for callgrind_annotate
#   CG_SCRIPT=f    measures the Lua script f (args: BASE N) instead of tools/callgrind/me_loop.lua,
#                  e.g. tools/callgrind/perform_loop.lua (the C core alone: core.session:perform)
set -eu
N1=${1:-50}
N2=${2:-550}
LUA=${CG_LUA:-lua5.4}
case "$LUA" in *jit*) CPATH=build/5.1/?.so ;; *) CPATH=build/5.4/?.so ;; esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ -f "${CPATH%%\?.so}instagram/core.so" ] || make build >/dev/null
DIR=$(mktemp -d /tmp/lua-instagram-callgrind.XXXXXX)
mkdir -p "$DIR/conf" "$DIR/logs" "$DIR/tmp"
PORT=$(lua5.4 -e 'local s=require("socket").bind("127.0.0.1",0); local _,p=s:getsockname(); print(p); s:close()')
cat >"$DIR/conf/nginx.conf" <<CONF
worker_processes 1;
pid $DIR/nginx.pid;
error_log $DIR/logs/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $DIR/tmp/body;
    proxy_temp_path $DIR/tmp/proxy;
    fastcgi_temp_path $DIR/tmp/fastcgi;
    uwsgi_temp_path $DIR/tmp/uwsgi;
    scgi_temp_path $DIR/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$PORT;
        location ~ /me\$ {
            default_type application/json;
            return 200 '{"id":"17841405793187219","username":"jayposiris"}';
        }
    }
}
CONF
stop() { [ -f "$DIR/nginx.pid" ] && kill "$(cat "$DIR/nginx.pid")" 2>/dev/null; sleep 0.2; [ -n "${CG_KEEP:-}" ] || rm -rf "$DIR"; }
trap stop EXIT INT TERM
env -u LD_PRELOAD nginx -p "$DIR" -c "$DIR/conf/nginx.conf" -e "$DIR/logs/error.log" -g 'daemon on; master_process off;'
sleep 0.2
BASE=http://127.0.0.1:$PORT
mkdir -p build/callgrind
cc -O2 -g -o build/callgrind/raw_loop tools/callgrind/raw_loop.c -lcurl

total() { # command... -> total instructions
    out="$DIR/cg.$$.$(date +%s%N)"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >/dev/null 2>"$out.log" || { cat "$out.log" >&2; exit 1; }
    sed -n 's/^summary: *//p; s/^totals: *//p' "$out" | head -1
    [ -n "${CG_KEEP:-}" ] && echo "  kept: $out" >&2
    return 0
}
per_call() { # label command... (N appended)
    label=$1; shift
    a=$(total "$@" "$N1"); b=$(total "$@" "$N2")
    echo $(( (b - a) / (N2 - N1) ))
}
TOKEN=IGQVJ$(printf "%160s" "" | tr " " x)
# the very URL ig:me sends (tools/callgrind/me_loop.lua uses the same token)
RAW=$(per_call raw build/callgrind/raw_loop "$BASE/me?fields=id%2Cusername&access_token=$TOKEN")
[ -n "${CG_SCRIPT:-}" ] && MOD=$(LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$CPATH;;" per_call module "$LUA" "$CG_SCRIPT" "$BASE") || MOD=$(LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$CPATH;;" per_call module "$LUA" tools/callgrind/me_loop.lua "$BASE")
echo "callgrind instructions per sequential keep-alive ig:me ($LUA, calls $N1..$N2):"
echo "  raw libcurl loop: $RAW"
echo "  module ig:me:     $MOD"
awk -v m="$MOD" -v r="$RAW" 'BEGIN { printf "  ratio:            %.2f\n", m / r }'

#!/bin/sh
# Installs the rock the way a user would, offline, for Lua 5.4 and LuaJIT, and requires it from /.
set -eu
rockspec=$1
root=$(pwd)
work=$(mktemp -d /tmp/lua-instagram-rock.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
# luarocks builds in the source tree: build from a clean copy so the work tree stays untouched
git ls-files -z | tar --null -T - -cf - | (mkdir -p "$work/src" && cd "$work/src" && tar -xf -)
luarocks lint "$work/src/$rockspec"
check='local ig = require "instagram"
assert(package.searchpath("instagram", package.path):find(os.getenv("TREE"), 1, true), "not the installed copy")
local c = ig.new({ app_id = "1", redirect_uri = "https://localhost/auth/" })
assert(c:authorize_url():find("^https://www%.instagram%.com/oauth/authorize%?client_id=1&"))
assert(ig.core.quote_big_ints("[17841405793187219]") == "[\"17841405793187219\"]")
print(_VERSION .. (jit and (" " .. jit.version) or "") .. ": lua-instagram " .. ig.VERSION .. " installed and loads")'
for v in 5.4 5.1; do
  tree="$work/tree$v"
  extra=""
  [ "$v" = 5.1 ] && extra="LUA_INCDIR=/usr/include/luajit-2.1"
  (cd "$work/src" && luarocks --lua-version="$v" --tree="$tree" make --deps-mode=none $extra "$rockspec" >"$work/make$v.log" 2>&1) \
    || { cat "$work/make$v.log"; exit 1; }
  lua=lua5.4
  [ "$v" = 5.1 ] && lua=luajit
  (cd / && eval "$(luarocks --lua-version="$v" --tree="$tree" path)" && TREE="$tree" "$lua" -e "$check")
done
cd "$root"

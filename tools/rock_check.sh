#!/bin/sh
# make rock-check: the rock as a user gets it, offline.
#   1. luarocks lint both rockspecs (scm-1 and the versioned one);
#   2. luarocks pack the versioned rockspec into a .src.rock; its git+https source is served from a
#      throwaway local clone of the work tree (tracked files, tagged v<version>) through git's
#      url.<base>.insteadOf in a private git config, so nothing leaves the machine;
#   3. install that .src.rock with --deps-mode=none (dependencies come from Debian) into a temp
#      tree for Lua 5.4 and for LuaJIT;
#   4. from /, require the module from the tree, run the tree's bin/instagram --version and
#      `instagram me --fake` (the fake shipped by the rock: needs nginx with the Lua module).
# Usage: tools/rock_check.sh VERSION   (the module's instagram.VERSION, e.g. 0.2.0)
set -eu
version=$1
root=$(pwd)
spec="rockspec/lua-instagram-$version-1.rockspec"
[ -f "$spec" ] || { echo "rock-check: $spec is missing (instagram.VERSION is $version)" >&2; exit 1; }
work=$(mktemp -d /tmp/lua-instagram-rock.XXXXXX)
[ -n "${ROCK_CHECK_KEEP:-}" ] || trap 'rm -rf "$work"' EXIT INT TERM

step() { printf 'rock-check: %s\n' "$*"; }

luarocks lint "$spec"
luarocks lint rockspec/lua-instagram-scm-1.rockspec
step "lint clean: $spec, rockspec/lua-instagram-scm-1.rockspec"

# the source the rockspec names, served from a local clone of the tracked files
url=$(sed -n 's/^ *url = "git+\(https:[^"]*\)".*/\1/p' "$spec" | head -1)
[ -n "$url" ] || { echo "rock-check: no git+https source url in $spec" >&2; exit 1; }
mkdir -p "$work/origin"
git ls-files -z | tar --null -T - -cf - | (cd "$work/origin" && tar -xf -)
(
  cd "$work/origin"
  git init -q
  git add -A
  git -c user.name=rock-check -c user.email=rock-check@localhost commit -qm "v$version"
  git tag "v$version"
)
export GIT_CONFIG_NOSYSTEM=1
export GIT_CONFIG_GLOBAL="$work/gitconfig"
git config --global url."file://$work/origin".insteadOf "$url"
git config --global protocol.file.allow always

mkdir -p "$work/pack"
(cd "$work/pack" && luarocks pack "$root/$spec" >"$work/pack.log" 2>&1) || { cat "$work/pack.log"; exit 1; }
rock="$work/pack/lua-instagram-$version-1.src.rock"
[ -f "$rock" ] || { cat "$work/pack.log"; echo "rock-check: luarocks pack made no $rock" >&2; exit 1; }
step "packed $(basename "$rock") ($(wc -c <"$rock") bytes)"

check='local ig = require "instagram"
assert(package.searchpath("instagram", package.path):find(os.getenv("TREE"), 1, true), "not the installed copy")
assert(package.searchpath("instagram.core", package.cpath):find(os.getenv("TREE"), 1, true), "not the installed core")
local c = ig.new({ app_id = "1", redirect_uri = "https://localhost/auth/" })
assert(c:authorize_url():find("^https://www%.instagram%.com/oauth/authorize%?client_id=1&"))
assert(ig.core.quote_big_ints("[17841405793187219]") == "[\"17841405793187219\"]")
assert(require("instagram.cli").parser())
print(_VERSION .. (jit and (" " .. jit.version) or "") .. ": lua-instagram " .. ig.VERSION .. " installed and loads")'

for lua in lua5.4 luajit; do
  tree="$work/tree-$lua"
  if [ "$lua" = luajit ]; then
    v=5.1
    # wrappers and builds for LuaJIT, not Debian's lua5.1
    printf 'lua_interpreter = "luajit"\nvariables = { LUA_BINDIR = "/usr/bin", LUA_INCDIR = "/usr/include/luajit-2.1" }\n' \
      >"$work/luarocks-luajit.lua"
    cfg="$work/luarocks-luajit.lua"
  else
    v=5.4
    cfg="$work/luarocks-none.lua"
    : >"$cfg"
  fi
  (cd "$work" && LUAROCKS_CONFIG="$cfg" luarocks --lua-version="$v" --tree="$tree" install --deps-mode=none \
    "$rock" >"$work/install-$lua.log" 2>&1) || { cat "$work/install-$lua.log"; exit 1; }
  grep -q "$lua" "$tree/bin/instagram" || { echo "rock-check: $tree/bin/instagram does not run $lua" >&2; exit 1; }
  (cd / && eval "$(LUAROCKS_CONFIG="$cfg" luarocks --lua-version="$v" --tree="$tree" path)" && TREE="$tree" "$lua" -e "$check")
  out=$(cd / && "$tree/bin/instagram" --version)
  [ "$out" = "instagram (lua-instagram) $version" ] || { echo "rock-check: --version said: $out" >&2; exit 1; }
  me=$(cd / && env -u XDG_CONFIG_HOME HOME="$work" "$tree/bin/instagram" me --fake) \
    || { echo "rock-check: $tree/bin/instagram me --fake failed" >&2; exit 1; }
  case "$me" in
    *'"id":"27640875392278831"'*) ;;
    *) echo "rock-check: instagram me --fake printed: $me" >&2; exit 1 ;;
  esac
  step "$lua: $tree/bin/instagram --version: $out; me --fake: $me"
done
cd "$root"

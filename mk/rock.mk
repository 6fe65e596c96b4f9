# make rock-check: both rockspecs lint; the versioned one (rockspec/lua-instagram-<VERSION>-1.rockspec,
# VERSION read from lua/instagram/init.lua) is packed into a .src.rock and installed offline
# (--deps-mode=none, dependencies from Debian) into throwaway trees for Lua 5.4 and LuaJIT; the
# module loads from outside the repository, and the tree's `instagram --version` and
# `instagram me --fake` run. See tools/rock_check.sh.
INSTAGRAM_VERSION := $(shell sed -n 's/^  VERSION = "\(.*\)",$$/\1/p' lua/instagram/init.lua)

.PHONY: rock-check

rock-check:
	@tools/rock_check.sh $(INSTAGRAM_VERSION)

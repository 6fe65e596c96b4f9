# make rock-check: the rockspec lints, installs offline into throwaway trees for Lua 5.4 and
# LuaJIT (dependencies come from Debian: --deps-mode=none), and the installed module loads from
# outside the repository, so nothing in the work tree can stand in for it.
ROCKSPEC = rockspec/lua-instagram-scm-1.rockspec

.PHONY: rock-check

rock-check:
	@tools/rock_check.sh $(ROCKSPEC)

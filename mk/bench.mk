# make bench: bench/bench.lua measures the module side by side with its baselines in one run.
#   BENCH_LUA=luajit make bench   runs it on the LuaJIT build
BENCH_LUA ?= lua5.4

.PHONY: bench

bench: build
	LUA_CPATH='build/$(if $(findstring luajit,$(BENCH_LUA)),5.1,5.4)/?.so;;' $(BENCH_LUA) bench/bench.lua

# make bench: lua-instagram against raw libcurl, Python requests, LuaSocket, nginx's proxy_pass and
# pure-Lua code, in one run on loopback (bench/run.lua; README "Performance"). A report: a target
# not met does not fail it, a contender that crashes does. About 3 minutes on 2 cores.
#   make bench-callgrind        only the instructions-per-call part
#   BENCH_ROUNDS=5 BENCH_SECONDS=0.5 BENCH_ONLY=wall,callgrind,counts,overlap,openresty,pure,memory
# The table is also written to build/bench/report.md.
# (the raw loop's path is literal on purpose: a make variable here could be pointed at any file)
BENCH_ENV     = LUA_PATH='lua/?.lua;lua/?/init.lua;./?.lua;;' LUA_CPATH='build/5.4/?.so;;'

.PHONY: bench bench-callgrind bench-deps

bench-deps:
	@scripts/ensure-deps base bench

build/bench/rawcurl: bench/rawcurl.c bench/body.h mk/bench.mk
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) -D_POSIX_C_SOURCE=200809L -o $@ $< $(LDFLAGS) -lcurl

# the floor contender: a Lua 5.4 C module of one function (bench/floor.c)
build/bench/5.4/benchfloor.so: bench/floor.c bench/body.h mk/bench.mk
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) -fPIC -D_POSIX_C_SOURCE=200809L $(LUA54_INC) -shared -o $@ $< $(LDFLAGS) -lcurl

bench: bench-deps
	@$(MAKE) --no-print-directory build build/bench/rawcurl build/bench/5.4/benchfloor.so
	$(BENCH_ENV) lua5.4 bench/run.lua

bench-callgrind: bench-deps
	@$(MAKE) --no-print-directory build build/bench/rawcurl
	$(BENCH_ENV) BENCH_ONLY=callgrind lua5.4 bench/run.lua

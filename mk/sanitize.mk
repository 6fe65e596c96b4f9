# make test-asan: the C core built with AddressSanitizer + UBSan into
# build/asan/5.4/instagram/core.so, and the busted suite run under Lua 5.4 with it
# (.busted task "asan"), without the in-nginx specs: nginx loads its own LuaJIT build
# of the core, not this one. The stock lua5.4 is not instrumented, so the
# ASan runtime must be loaded first: LD_PRELOAD of the compiler's libasan (and
# libubsan) -- otherwise "ASan runtime does not come first in initial library
# list" (SECURITY.md 3). detect_leaks=0 because the interpreter itself does not
# free everything at exit (leaks are the job of make test-valgrind). Any
# sanitizer report fails the target (tools/asan_run.sh).
#   ASAN_CC=clang make test-asan   uses clang's shared runtime instead of gcc's.
ASAN_CC    ?= gcc
ASAN_CORE   = build/asan/5.4/instagram/core.so
ASAN_SAN    = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ifeq ($(findstring clang,$(ASAN_CC)),clang)
ASAN_SAN   += -shared-libasan
ASAN_PRELOAD = $(shell $(ASAN_CC) -print-file-name=libclang_rt.asan-x86_64.so)
else
ASAN_PRELOAD = $(shell $(ASAN_CC) -print-file-name=libasan.so):$(shell $(ASAN_CC) -print-file-name=libubsan.so)
endif

.PHONY: test-asan asan-build

asan-build: $(ASAN_CORE)

$(ASAN_CORE): $(SRCS) $(HDRS) mk/sanitize.mk
	@mkdir -p $(dir $@)
	$(ASAN_CC) -O1 -g $(ASAN_SAN) $(WARN) -fPIC -D_POSIX_C_SOURCE=200809L $(LUA54_INC) -shared -o $@ \
	  $(SRCS) $(LDFLAGS) $(LIBS)

test-asan: $(ASAN_CORE)
	@tools/asan_run.sh "$(ASAN_PRELOAD)" $(BUSTED) -r asan -o utfTerminal --exclude-tags=nginx

# make test-valgrind: tools/valgrind_loop.lua (VALGRIND_CALLS iterations over the
# success and failure paths of every core function, and the fake server's paths
# when it starts) under valgrind with the plain build; a definite leak or any
# memory error exits 3. libcurl/OpenSSL global state shows as "still reachable"
# only, which is not an error (tools/valgrind.supp documents suppressions).
VALGRIND_CALLS ?= 10000
VALGRIND = valgrind -q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=3 \
           --suppressions=tools/valgrind.supp

.PHONY: test-valgrind soak

test-valgrind: $(CORE54)
	@scripts/ensure-deps valgrind
	VALGRIND_CALLS=$(VALGRIND_CALLS) $(VALGRIND) lua5.4 tools/valgrind_loop.lua

# make soak: tools/soak.lua, SOAK_CALLS (default 100000; CI: a few thousand) calls of
# the public API against the fake Instagram; fails if VmRSS grows by more than
# SOAK_MAX_GROWTH_KIB (10 MiB) between 10% and 100% of the calls. SOAK_LUA=luajit
# runs it on the LuaJIT build.
SOAK_CALLS ?= 100000
SOAK_LUA   ?= lua5.4

soak: build
	SOAK_CALLS=$(SOAK_CALLS) IG_CPATH='build/$(if $(findstring luajit,$(SOAK_LUA)),5.1,5.4)/?.so' \
	  $(SOAK_LUA) tools/soak.lua

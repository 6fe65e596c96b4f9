# make test-torture: allocation-failure torture of the C core (tools/torture/).
# build/torture/torture embeds Lua 5.4 and makes every allocation a core call
# can make fail in turn (Lua's allocator, libcurl's via curl_global_init_mem,
# OpenSSL's via CRYPTO_set_mem_functions, and the core's own malloc family,
# redirected by force-including tools/torture/hooks.h into a separate build of
# the core, build/torture/instagram/core.so). Harness and core are built with
# ASan + UBSan (the harness is the executable, so the runtime comes first; no
# LD_PRELOAD) and each run ends with lua_close, so LeakSanitizer reports leaks.
# ASan rather than valgrind: one run is ~0.1 s instead of seconds, so every
# allocation of the pass can be failed. LSan ignores leaks allocated inside
# libcrypto (tools/torture/lsan.supp: OpenSSL's own leaks on its failure paths).
# tools/torture/run.lua starts the fake Instagram for the http transfers.
# Failed runs keep their log in build/torture/logs/ (emptied at each start).
#   TORTURE_JOBS     parallel runs (default: number of CPUs)
#   TORTURE_SHALLOW  fail only this many allocations, evenly spread (0: all)
#   TORTURE_ONLY     fail only allocation number N (debugging one run; add
#                    TORTURE_TRACE=1 for the stack of the failed allocation)
#   TORTURE_TLS=1    also an https transfer (~10000 allocations, mostly
#                    OpenSSL's: use with TORTURE_SHALLOW). A run where a later
#                    call fails on a new session too (OpenSSL keeps some failed
#                    one-time initialisations for the whole process) is a
#                    note, not a failure: that state is not the session's.
TORTURE_CC      ?= gcc
TORTURE_JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
TORTURE_SHALLOW ?= 0
TORTURE_ONLY    ?= 0
TORTURE_SAN      = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
TORTURE_CFLAGS   = -O1 -g $(TORTURE_SAN) $(WARN) -D_POSIX_C_SOURCE=200809L $(LUA54_INC)
TORTURE_CORE     = build/torture/instagram/core.so
TORTURE_BIN      = build/torture/torture

.PHONY: test-torture torture-build

torture-build: $(TORTURE_CORE) $(TORTURE_BIN)

$(TORTURE_CORE): $(SRCS) $(HDRS) tools/torture/hooks.h mk/torture.mk
	@mkdir -p $(dir $@)
	$(TORTURE_CC) $(TORTURE_CFLAGS) -fPIC -include tools/torture/hooks.h -shared -o $@ $(SRCS) $(LIBS)

$(TORTURE_BIN): tools/torture/torture.c mk/torture.mk
	@mkdir -p $(dir $@)
	$(TORTURE_CC) $(TORTURE_CFLAGS) -rdynamic -o $@ $< -llua5.4 $(LIBS) -ldl

test-torture: torture-build
	@rm -rf build/torture/logs
	ASAN_OPTIONS=detect_leaks=1:exitcode=97$${ASAN_OPTIONS:+:$$ASAN_OPTIONS} \
	LSAN_OPTIONS=exitcode=98:suppressions=tools/torture/lsan.supp:print_suppressions=0$${LSAN_OPTIONS:+:$$LSAN_OPTIONS} \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1$${UBSAN_OPTIONS:+:$$UBSAN_OPTIONS} \
	TORTURE_CPATH='build/torture/?.so' \
	  lua5.4 tools/torture/run.lua -j $(TORTURE_JOBS) -s $(TORTURE_SHALLOW) -n $(TORTURE_ONLY)

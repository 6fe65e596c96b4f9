# make test-asan: the C core built with AddressSanitizer + UBSan into
# build/asan/5.4/instagram/core.so, and the whole busted suite run under Lua 5.4
# with it (.busted task "asan"). The stock lua5.4 is not instrumented, so the
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
	@tools/asan_run.sh "$(ASAN_PRELOAD)" $(BUSTED) -r asan -o utfTerminal

# libFuzzer targets (fuzz/): one per pure-C parser of the core.
#   make fuzz            build all targets into build/fuzz/ and run each for FUZZ_SECONDS (60)
#   make fuzz-short      the same for 10 s each (CI)
#   make fuzz-build      build only
# Each run works on a copy of fuzz/corpus/<target> in build/fuzz/corpus/<target>
# (new inputs stay there, never in the repo); crashes go to build/fuzz/artifacts/.
# Deps: scripts/ensure-deps fuzz (clang, libfuzzer-14-dev, libclang-rt-14-dev).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   ?=
FUZZ_TARGETS  = base64url query quote_big_ints signed utf8 webhook
FUZZ_CFLAGS   = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer -std=c99 -Wall -Wextra -pedantic -Werror -Wshadow \
                -Wstrict-prototypes -Wmissing-prototypes -Wdeclaration-after-statement \
                -D_POSIX_C_SOURCE=200809L -Isrc $(LUA54_INC)
FUZZ_LIBS     = -llua5.4 -lcrypto

# the src/ files each target links (no libcurl, no module loading)
FUZZ_SRC_base64url      = src/crypto.c
FUZZ_SRC_query          = src/url.c
FUZZ_SRC_quote_big_ints = src/exactid.c src/utf8.c
FUZZ_SRC_signed         = src/signed.c src/crypto.c
FUZZ_SRC_utf8           = src/utf8.c
FUZZ_SRC_webhook        = src/webhook.c src/crypto.c

FUZZ_BINS = $(patsubst %,build/fuzz/fuzz_%,$(FUZZ_TARGETS))

.PHONY: fuzz fuzz-short fuzz-build fuzz-deps

fuzz-deps:
	@scripts/ensure-deps fuzz

fuzz-build: fuzz-deps
	@$(MAKE) --no-print-directory $(FUZZ_BINS)

.SECONDEXPANSION:
build/fuzz/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_common.h $$(FUZZ_SRC_$$*) $(HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_SRC_$*) $(FUZZ_LIBS)

fuzz: fuzz-build
	@tools/fuzz_run.sh $(FUZZ_SECONDS) "$(FUZZ_FLAGS)" $(FUZZ_TARGETS)

fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10

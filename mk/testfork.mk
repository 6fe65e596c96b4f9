# Test-only C helper for the fork-safety specs (tools/testfork/): a separate
# module, build/<ver>/ig_testfork.so, on the specs' cpath but never part of
# the shipped instagram.core nor of the rock. Built with `make build`.
TESTFORK54 = build/5.4/ig_testfork.so
TESTFORK51 = build/5.1/ig_testfork.so

build: $(TESTFORK54) $(TESTFORK51)

$(TESTFORK54): tools/testfork/testfork.c mk/testfork.mk
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) $(LUA54_INC) -shared -o $@ $<

$(TESTFORK51): tools/testfork/testfork.c mk/testfork.mk
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) $(LUAJIT_INC) -shared -o $@ $<

# LD_PRELOAD free() shim for spec/core_wipe_spec.lua (GNU extensions: not the C99 flags)
FREESHIM = build/test/freeshim.so

build: $(FREESHIM)

$(FREESHIM): tools/testfork/freeshim.c mk/testfork.mk
	@mkdir -p $(dir $@)
	$(CC) -O1 -g -Wall -Wextra -Werror -fPIC -shared -o $@ $< -ldl

# the same helper next to the sanitizer build of the core (make test-asan's cpath)
TESTFORK_ASAN = build/asan/5.4/ig_testfork.so

asan-build test-asan: $(TESTFORK_ASAN)

$(TESTFORK_ASAN): tools/testfork/testfork.c mk/testfork.mk
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) $(LUA54_INC) -shared -o $@ $<

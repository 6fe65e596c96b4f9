# make test-all: the rockspec says "lua >= 5.1, < 5.5", so the core is built and the specs run under
# Debian's lua5.1, lua5.2 and lua5.3 as well (make test covers Lua 5.4 and LuaJIT). Each core goes to
# build/lua<V>/ (build/5.1 is LuaJIT's); busted runs with the lua51/lua52/lua53 profiles of .busted.
# The in-nginx specs (tag nginx) run nginx's own LuaJIT, whatever busted runs on: make test has them.
MATRIX_LUAS  ?= 5.1 5.2 5.3
MATRIX_CORES  = $(foreach v,$(MATRIX_LUAS),build/lua$(v)/instagram/core.so)
# the specs' test-only fork helper (mk/testfork.mk), for each interpreter of the matrix too
MATRIX_CORES += $(foreach v,$(MATRIX_LUAS),build/lua$(v)/ig_testfork.so)

build/lua%/instagram/core.so: $(SRCS) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) -I/usr/include/lua$* -shared -o $@ $(SRCS) $(LDFLAGS) $(LIBS)

build/lua%/ig_testfork.so: tools/testfork/testfork.c mk/matrix.mk
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) -I/usr/include/lua$* -shared -o $@ $<

.PHONY: build-matrix test-all

build-matrix: $(MATRIX_CORES)

test-all:
	@scripts/ensure-deps base matrix
	@# some specs run helpers under lua5.4 or LuaJIT whatever busted runs on: their cores too
	@$(MAKE) --no-print-directory build build-matrix
	@for v in $(MATRIX_LUAS); do \
	  echo "== Lua $$v: busted -r lua$$(echo $$v | tr -d .) --exclude-tags=nginx"; \
	  $(BUSTED) -r lua$$(echo $$v | tr -d .) -o utfTerminal --exclude-tags=nginx || exit 1; \
	done

# lua-instagram: build the C core for Lua 5.4 and LuaJIT side by side, test, demo.
CC      ?= gcc
WARN     = -std=c99 -Wall -Wextra -pedantic -Werror -Wshadow -Wstrict-prototypes \
           -Wmissing-prototypes -Wdeclaration-after-statement
CFLAGS  ?= -O2 -g
ALLFLAGS = $(CFLAGS) $(WARN) -fPIC -D_POSIX_C_SOURCE=200809L
LDFLAGS ?=
LIBS     = -lcurl -lcrypto

SRCS     = $(sort $(wildcard src/*.c))
HDRS     = $(wildcard src/*.h)
LUA54_INC = -I/usr/include/lua5.4
LUAJIT_INC = -I/usr/include/luajit-2.1

CORE54  = build/5.4/instagram/core.so
CORE51  = build/5.1/instagram/core.so

BUSTED  = busted

.PHONY: all build deps test test-lua54 test-luajit lint demo clean

all: build

build: $(CORE54) $(CORE51)

deps:
	@scripts/ensure-deps base fuzz valgrind redis

$(CORE54): $(SRCS) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) $(LUA54_INC) -shared -o $@ $(SRCS) $(LDFLAGS) $(LIBS)

$(CORE51): $(SRCS) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) $(LUAJIT_INC) -shared -o $@ $(SRCS) $(LDFLAGS) $(LIBS)

lint:
	luacheck -q lua spec examples bench tools fuzz bin/instagram
	cppcheck --quiet --error-exitcode=1 --enable=warning,style,performance,portability \
	  --inline-suppr --suppress=missingIncludeSystem --std=c99 --force \
	  -I/usr/include/lua5.4 src

test-lua54: build
	$(BUSTED) -r lua54 -o utfTerminal

# the in-nginx specs (spec/ngx, tag nginx) run nginx's own LuaJIT whatever busted runs on: once is enough
test-luajit: build
	$(BUSTED) -r luajit -o utfTerminal --exclude-tags=nginx

# everything CI checks; the last line is busted's own summary of the LuaJIT run
CI_VALGRIND_CALLS ?= 3000
CI_SOAK_CALLS ?= 5000
test: deps
	@$(MAKE) --no-print-directory build
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory rock-check
	@$(MAKE) --no-print-directory fuzz-short
	@$(MAKE) --no-print-directory test-valgrind VALGRIND_CALLS=$(CI_VALGRIND_CALLS)
	@$(MAKE) --no-print-directory soak SOAK_CALLS=$(CI_SOAK_CALLS)
	@$(MAKE) --no-print-directory test-asan
	@$(MAKE) --no-print-directory test-torture
	@$(MAKE) --no-print-directory test-lua54
	@$(MAKE) --no-print-directory test-luajit

demo: deps
	@$(MAKE) --no-print-directory build
	lua5.4 examples/get_started.lua --fake

clean:
	rm -rf build src/*.o instagram

# further targets (fuzzing, sanitizers, valgrind, OpenResty) live one concern per file
include $(sort $(wildcard mk/*.mk))

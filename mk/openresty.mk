# OpenResty side: the cosocket transport (lua/instagram/ngx.lua) inside a real Debian nginx.
#   make test-nginx   start the fake Instagram and a second nginx whose handlers run the client
#                     with transport "ngx" (spec/ngx/), driven from busted under Lua 5.4
# Needs nginx, libnginx-mod-http-lua, lua-resty-core (as the fake does) and the LuaJIT build
# of the core (build/5.1, made by `build`). NGINX=/path/to/nginx picks another binary.
.PHONY: test-nginx

test-nginx: build
	$(BUSTED) -r lua54 -o utfTerminal spec/ngx

# make example: examples/openresty (the login app) against the fake Instagram, behind the sample
# TLS front (examples/openresty/tls-front.conf), all on 127.0.0.1; prints the URL to open and
# stays up until Ctrl-C. examples/openresty/with_fake.lua does the work.
#   make example EXAMPLE_PORT=9443 EXAMPLE_API=basic_display
EXAMPLE_PORT ?= 8443
EXAMPLE_API  ?= instagram_login

.PHONY: example

example:
	@scripts/ensure-deps base
	@$(MAKE) --no-print-directory build
	lua5.4 examples/openresty/with_fake.lua --port $(EXAMPLE_PORT) --api $(EXAMPLE_API)

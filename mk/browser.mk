# make test-browser: examples/openresty driven in headless Chromium against the fake Instagram
# (spec/browser/example_browser.py): login, logout then Back, deny, wrong state, login CSRF from a
# second browser, code reuse, Instagram down, data deletion. Debian's chromium, chromium-driver and
# python3-selenium (scripts/ensure-deps browser); the test CA is trusted through an NSS database
# (libnss3-tools' certutil), TLS is verified. The last line is the summary; -v: more detail
#   make test-browser BROWSER_FLAGS=-v
BROWSER_FLAGS ?=

.PHONY: test-browser

test-browser:
	@scripts/ensure-deps base browser
	@$(MAKE) --no-print-directory build
	/usr/bin/python3 spec/browser/example_browser.py $(BROWSER_FLAGS)

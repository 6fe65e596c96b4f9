rockspec_format = "3.0"
package = "lua-instagram"
version = "scm-1"
source = {
  url = "git+https://example.invalid/lua-instagram.git",
}
description = {
  summary = "Instagram OAuth and Graph client: a C core on libcurl and OpenSSL with a thin Lua API",
  detailed = [[
Builds the authorization URL, parses the callback, exchanges the code, reads
users and media from the Graph API, verifies signed_request callbacks, and
keeps every ID exact. Secure by default: TLS verified, https only, no
redirects followed, CSPRNG state compared in constant time. Installs the
`instagram` command: log in from a shell, keep the token file, read the Graph API.
]],
  license = "MIT",
  homepage = "https://example.invalid/lua-instagram",
  labels = { "instagram", "oauth", "graph", "curl", "openresty" },
}
dependencies = {
  "lua >= 5.1, < 5.5",
  "lua-cjson",
  "argparse", -- bin/instagram
}
external_dependencies = {
  -- Debian keeps curl/curl.h under the multiarch include dir: check the library, not the header
  CURL = { library = "curl" },
  CRYPTO = { library = "crypto" },
}
build = {
  type = "builtin",
  modules = {
    ["instagram.core"] = {
      sources = {
        "src/core.c", "src/url.c", "src/exactid.c", "src/crypto.c", "src/signed.c", "src/session.c",
        "src/utf8.c", "src/webhook.c", "src/fileio.c",
      },
      libraries = { "curl", "crypto" },
      incdirs = { "$(CURL_INCDIR)", "$(CRYPTO_INCDIR)", "src" },
      libdirs = { "$(CURL_LIBDIR)", "$(CRYPTO_LIBDIR)" },
      defines = { "_POSIX_C_SOURCE=200809L" },
    },
    ["instagram"] = "lua/instagram/init.lua",
    ["instagram.errors"] = "lua/instagram/errors.lua",
    ["instagram.json"] = "lua/instagram/json.lua",
    ["instagram.profiles"] = "lua/instagram/profiles.lua",
    ["instagram.transport"] = "lua/instagram/transport.lua",
    ["instagram.ngx"] = "lua/instagram/ngx.lua",
    ["instagram.tokens"] = "lua/instagram/tokens.lua",
    ["instagram.media"] = "lua/instagram/media.lua",
    ["instagram.batch"] = "lua/instagram/batch.lua",
    ["instagram.singleflight"] = "lua/instagram/singleflight.lua",
    ["instagram.buckets"] = "lua/instagram/buckets.lua",
    ["instagram.publishing"] = "lua/instagram/publishing.lua",
    ["instagram.comments"] = "lua/instagram/comments.lua",
    ["instagram.insights"] = "lua/instagram/insights.lua",
    ["instagram.subscriptions"] = "lua/instagram/subscriptions.lua",
    ["instagram.webhook"] = "lua/instagram/webhook.lua",
    ["instagram.resty.webhook"] = "lua/instagram/resty/webhook.lua",
    ["instagram.store"] = "lua/instagram/store/init.lua",
    ["instagram.store.file"] = "lua/instagram/store/file.lua",
    ["instagram.store.shared_dict"] = "lua/instagram/store/shared_dict.lua",
    ["instagram.store.redis"] = "lua/instagram/store/redis.lua",
    ["instagram.store.resp"] = "lua/instagram/store/resp.lua",
    ["instagram.keeper"] = "lua/instagram/keeper.lua",
    ["instagram.feed"] = "lua/instagram/feed.lua",
    ["instagram.resty.feed"] = "lua/instagram/resty/feed.lua",
    ["instagram.download"] = "lua/instagram/download.lua",
    ["instagram.cli"] = "lua/instagram/cli/init.lua",
    ["instagram.cli.tokenfile"] = "lua/instagram/cli/tokenfile.lua",
    ["instagram.cli.fake"] = "lua/instagram/cli/fake.lua",
    ["instagram.cli.export"] = "lua/instagram/cli/export.lua",
  },
  install = {
    bin = { instagram = "bin/instagram" },
  },
  -- `instagram --fake` runs the fake Instagram of the specs (nginx with the Lua module, lua-socket):
  -- shipped next to the installed command, which finds it there
  copy_directories = { "spec/support" },
}
test = {
  type = "command",
  command = "make test",
}

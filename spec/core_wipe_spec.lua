-- libcurl's own copies of URLs, request headers and POST bodies are wiped before they are freed
-- (review C9): a child interpreter runs GETs with a token in the query and in an Authorization
-- header and POSTs with a secret in the body, over http and https, under an LD_PRELOAD free()
-- shim (tools/testfork/freeshim.c) that counts freed blocks still holding the secret. The child
-- ends with os.exit(0, false), so Lua's own strings (which hold the secret by design) are never
-- freed; the secret is built at run time, so the parser's buffers never hold it either.
local Echo = require "spec.support.echo"
local Nginx = require "spec.support.nginx"

local SCRIPT = [[
local core = require "instagram.core"
local secret = ("SENTINEL") .. ("SECRET") .. ("x"):rep(40)
local s = core.session({ allow_http = true, ca_file = arg[2] })
-- every Lua value holding the secret is kept alive (the collection below must free none of them)
local keep = {}
for i = 1, 3 do
  local get = { url = arg[1] .. "/echo?n=" .. i .. "&access_token=" .. secret,
    headers = { Authorization = "Bearer " .. secret } }
  local post = { method = "POST", url = arg[1] .. "/echo?n=p" .. i, body = "client_secret=" .. secret }
  keep[#keep + 1] = { get, post, assert(s:perform(get)), assert(s:perform(post)) }
end
-- prepared requests (sess:prepare) hold copies of their URL, headers and body: collected, they are
-- wiped
for i = 1, 2 do
  local get = { url = arg[1] .. "/echo?n=r" .. i .. "&access_token=" .. secret,
    headers = { Authorization = "Bearer " .. secret } }
  local post = { method = "POST", url = arg[1] .. "/echo?n=q" .. i, body = "client_secret=" .. secret }
  keep[#keep + 1] = { get, post, assert(s:perform(s:prepare(get))), assert(s:perform(s:prepare(post))) }
end
collectgarbage()
collectgarbage()
s:close()
os.exit(0, false)
]]

describe("libcurl's copies of secrets", function()
  local echo, dir
  local root = Nginx.repo_root()
  local jit = rawget(_G, "jit") ~= nil
  local lua = jit and "luajit" or "lua5.4"
  local cpath = root .. (jit and "/build/5.1/?.so" or "/build/5.4/?.so")

  setup(function()
    echo = Echo.start()
    dir = Nginx.mktemp_dir("wipe")
    local f = assert(io.open(dir .. "/probe.lua", "w"))
    f:write(SCRIPT)
    f:close()
  end)

  teardown(function()
    if echo then echo:stop() end
    if dir then Nginx.run("rm -rf " .. Nginx.q(dir)) end
  end)

  for _, scheme in ipairs({ "http", "https" }) do
    it("are wiped before libcurl frees them, over " .. scheme, function()
      if (os.getenv("LD_PRELOAD") or "") ~= "" then
        pending("a sanitizer runtime is preloaded: the free() shim cannot go first")
        return
      end
      local out = dir .. "/count." .. scheme
      local ok = Nginx.run(string.format("FREESHIM_OUT=%s LD_PRELOAD=%s LUA_CPATH=%s %s %s %s %s",
        Nginx.q(out), Nginx.q(root .. "/build/test/freeshim.so"), Nginx.q(cpath .. ";;"), lua,
        Nginx.q(dir .. "/probe.lua"), Nginx.q(echo[scheme]), Nginx.q(echo.ca_file)))
      assert.is_true(ok)
      assert.equal("0", (Nginx.read_file(out) or "missing"):match("%S+"))
    end)
  end
end)

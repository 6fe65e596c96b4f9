-- N sequential core.session:perform GETs of the URL ig:me sends, for tools/callgrind_me.sh
-- (CG_SCRIPT=tools/callgrind/perform_loop.lua): the C core and libcurl without the Lua layer.
-- Usage: lua perform_loop.lua BASE N
local core = require "instagram.core"
local base, n = arg[1], tonumber(arg[2])
local s = core.session({ allow_http = true })
local req = {
  method = "GET", url = base .. "/me?fields=id%2Cusername&access_token=IGQVJ" .. ("x"):rep(160),
  headers = { Accept = "application/json" },
}
for _ = 1, n do
  local res = assert(s:perform(req))
  assert(res.status == 200)
end

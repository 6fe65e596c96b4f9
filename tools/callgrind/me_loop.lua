-- N sequential ig:me calls against BASE (plain HTTP keep-alive), for tools/callgrind_me.sh.
-- Usage: lua me_loop.lua BASE N
local instagram = require "instagram"
local base, n = arg[1], tonumber(arg[2])
local ig = instagram.new({
  app_id = "684477648739411", app_secret = "eb8c7a1b2c3d4e5f60718293a4b5c6d7",
  redirect_uri = "https://localhost/auth/", api = "basic_display", allow_http = true,
  transport = "curl", retries = 0,
  endpoints = { authorize = base .. "/oauth/authorize", token = base .. "/oauth/access_token", graph = base },
})
local token = "IGQVJ" .. ("x"):rep(160)
for _ = 1, n do
  local me, err = ig:me(token)
  if not me then error(tostring(err)) end
  assert(me.id == "17841405793187219")
end

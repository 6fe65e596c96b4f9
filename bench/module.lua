-- make bench: lua-instagram as a contender, on whichever interpreter and build runs it
-- (bench/run.lua sets LUA_PATH and LUA_CPATH). Every call is the public API a user makes:
-- ig:me builds the URL, sends it over the client's kept-alive connection and decodes the answer.
--   module.lua serve BASE [CA]              ig:me in the time slices read from stdin (common.serve)
--   module.lua calls BASE N [CA]            exactly N ig:me (callgrind; connection counts)
--   module.lua exchange BASE N [CA]         N ig:exchange_code -> RESULT {calls}
--   module.lua batch BASE C ROUNDS          ig:batch of 200 ig:me, concurrency C -> RESULT {seconds = {...}}
--   module.lua memory BASE CALLS            Lua bytes per ig:me; with CALLS >= 100000, RSS after 10k and 100k
-- Any failed call raises, so the process exits non-zero and run.lua stops with its message.
local common = require "bench.common"
local instagram = require "instagram"

local cmd, base = arg[1], arg[2]

local function client(ca)
  local conf = {
    endpoints = { graph = base, token = base .. "/oauth/access_token" },
    allow_http = base:match("^http:") ~= nil, ca_file = ca, retries = 0,
  }
  for k, v in pairs(common.APP) do conf[k] = v end
  return instagram.new(conf)
end

local function me(ig)
  local user, err = ig:me(common.TOKEN)
  if not user then error("ig:me failed: " .. tostring(err), 0) end
  if user.id ~= common.USER_ID then error("ig:me: wrong id " .. tostring(user.id), 0) end
  return user
end

if cmd == "serve" then
  local ig = client(arg[3])
  common.serve(function() me(ig) end)
  ig:close()

elseif cmd == "calls" then
  local ig = client(arg[4])
  for _ = 1, tonumber(arg[3]) do me(ig) end
  ig:close()

elseif cmd == "exchange" then
  local ig = client(arg[4])
  local n = tonumber(arg[3])
  for i = 1, n do
    local token, err = ig:exchange_code("AQ-bench-code-" .. i)
    if not token then error("ig:exchange_code failed: " .. tostring(err), 0) end
    if token.user_id ~= common.USER_ID then
      error("ig:exchange_code: inexact user_id " .. tostring(token.user_id), 0)
    end
  end
  ig:close()
  common.result({ calls = n })

elseif cmd == "batch" then
  local ig = client(nil)
  local c, rounds = tonumber(arg[3]), tonumber(arg[4])
  local calls = {}
  for i = 1, 200 do calls[i] = { "me", common.TOKEN } end
  local function run(list)
    local t0 = common.now()
    local results = ig:batch(list, { concurrency = c })
    local s = common.now() - t0
    for i = 1, #list do
      local r = results[i]
      if not (r and r.ok and r.value.id == common.USER_ID) then
        error("ig:batch: call " .. i .. " failed: " .. tostring(r and r.err), 0)
      end
    end
    return s
  end
  local warm = {}
  for i = 1, c do warm[i] = calls[i] end
  run(warm) -- opens the connections
  local seconds = {}
  for r = 1, rounds do seconds[r] = run(calls) end
  ig:close()
  common.result({ seconds = seconds })

elseif cmd == "memory" then
  local ig = client(nil)
  for _ = 1, 200 do me(ig) end
  collectgarbage("collect")
  collectgarbage("stop")
  local k0 = collectgarbage("count")
  for _ = 1, 1000 do me(ig) end
  local bytes = (collectgarbage("count") - k0) * 1024 / 1000
  collectgarbage("restart")
  collectgarbage("collect")
  local done, rss = 1200, {}
  if (tonumber(arg[3]) or 0) >= 100000 then
    for _, mark in ipairs({ 10000, 100000 }) do
      for _ = done + 1, mark do me(ig) end
      done = mark
      rss[#rss + 1] = common.rss_kib()
    end
  end
  ig:close()
  common.result({ bytes_per_call = bytes, rss_10k = rss[1], rss_100k = rss[2] })

else
  io.stderr:write("usage: module.lua serve|calls|exchange|batch|memory BASE ...\n")
  os.exit(2)
end

-- make bench: the floor contender (bench/floor.c) on Lua 5.4. Per call: one C call that makes the
-- transfer on a kept easy handle with a URL set once, then plain cjson.decode, as the raw loop
-- plus the least a Lua program must do to use the answer.
--   floor.lua URL [CA]   calls in the time slices read from stdin (common.serve)
local common = require "bench.common"
local cjson = require "cjson"
local get = require("benchfloor").get

local url, ca = arg[1], arg[2]

common.serve(function()
  local user = cjson.decode(get(url, ca))
  if user.id ~= common.USER_ID then error("floor: wrong id " .. tostring(user.id), 0) end
end)

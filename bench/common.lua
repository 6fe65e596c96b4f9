-- Shared by the bench scripts: the fixed token, app and answers of the bench server, the result
-- line every contender prints, and a clock. Nothing here is secret: the token is made up.
local socket = require "socket"
local cjson = require "cjson"

local M = {}

M.TOKEN = "IGQVJ" .. string.rep("XbT0kq9zW3", 16) -- 165 characters, like a Basic Display token
M.USER_ID = "17841405793187219"
M.ME_JSON = '{"id":"17841405793187219","username":"jayposiris"}'
-- the Basic Display code-exchange answer: user_id as a bare number above 2^53
M.TOKEN_JSON = '{"access_token":"' .. M.TOKEN .. '","user_id":17841405793187219}'
M.APP = {
  app_id = "684477648739411", app_secret = "eb8c7a1b2c3d4e5f60718293a4b5c6d7",
  redirect_uri = "https://localhost/auth/", api = "basic_display",
}

M.now = socket.gettime

-- "RESULT <json>" on stdout: what bench/run.lua reads from every contender
function M.result(t)
  io.stdout:write("RESULT ", cjson.encode(t), "\n")
  io.stdout:flush()
end

function M.median(list)
  local t = {}
  for i, v in ipairs(list) do t[i] = v end
  table.sort(t)
  local n = #t
  if n == 0 then return nil end
  if n % 2 == 1 then return t[(n + 1) / 2] end
  return (t[n / 2] + t[n / 2 + 1]) / 2
end

-- The time slices of bench/run.lua: `warm` warm-up calls, then for each line of stdin (a number
-- of seconds) calls fn until that much time has passed, and prints the RESULT {calls, seconds}
-- of that slice. Returns at the end of input. The clock is read after every call, as the raw
-- loop's serve mode does, so a slow contender's slice is not many times too long.
function M.serve(fn, warm)
  for _ = 1, warm or 20 do fn() end
  local now = M.now
  for line in io.stdin:lines() do
    local slice = tonumber(line)
    if not slice then error("bench: a slice must be a number of seconds, not " .. line, 0) end
    local n, t0 = 0, now()
    local elapsed
    repeat
      fn()
      n = n + 1
      elapsed = now() - t0
    until elapsed >= slice
    M.result({ calls = n, seconds = elapsed })
  end
end

-- VmRSS of this process in KiB (Linux)
function M.rss_kib()
  local f = io.open("/proc/self/status", "r")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  return tonumber(text:match("VmRSS:%s*(%d+)"))
end

return M

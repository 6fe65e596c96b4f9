-- Memory-flatness soak of the public API against the fake Instagram:
-- SOAK_CALLS (default 100000) calls, mostly ig:me(token) successes over https
-- with keep-alive, plus error paths (a token the server does not know, a bad
-- code exchange, a signed_request). Prints VmRSS and the Lua heap at 10% and
-- 100% of the calls, and exits 1 if RSS grew by more than SOAK_MAX_GROWTH_KIB
-- (default 10240 = 10 MiB) between the two: a leak check, not a timing test.
-- Run from the repository root with Lua 5.4 (make soak) or LuaJIT
-- (SOAK_LUA=luajit, with IG_CPATH=build/5.1/?.so).
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path
package.cpath = (os.getenv("IG_CPATH") or "build/5.4/?.so") .. ";" .. package.cpath

local instagram = require "instagram"
local Fake = require "spec.support.fake"

local CALLS = tonumber(os.getenv("SOAK_CALLS")) or 100000
local MAX_GROWTH_KIB = tonumber(os.getenv("SOAK_MAX_GROWTH_KIB")) or 10240

local function rss_kib()
  local f = io.open("/proc/self/status", "r")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  return tonumber(text:match("VmRSS:%s*(%d+)%s*kB"))
end

local function report(label, i)
  collectgarbage()
  collectgarbage()
  local rss = rss_kib()
  print(("soak: %-5s %7d calls  VmRSS %7s KiB  Lua heap %8.1f KiB"):format(label, i, tostring(rss),
    collectgarbage("count")))
  return rss
end

local META_SR = "N32LNcvDGXq0GI1jxm-tj1ysJh2uqkNIBcUhUmTp19k.eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsImV4cGlyZXMiOjEyOT"
  .. "E4NDA0MDAsImlzc3VlZF9hdCI6MTI5MTgzNjgwMCwidXNlcl9pZCI6IjIxODQ3MSJ9"

local f = Fake.start({ quiet = true })
local ok, err = pcall(function()
  local ig = instagram.new({
    app_id = "684477648739411", app_secret = "eb8c7a1b2c3d4e5f60718293a4b5c6d7",
    redirect_uri = "https://localhost/auth/", api = "basic_display",
    endpoints = f:endpoints("https"), ca_file = f.ca_file, retries = 0,
  })
  local token = f:issue_token("jayposiris", { kind = "short" })
  local counts = { ok = 0, api_error = 0, exchange_error = 0, signed = 0 }
  local mark = math.max(1, math.floor(CALLS / 10))
  local rss10
  local t0 = os.time()
  for i = 1, CALLS do
    if i % 10 == 0 then
      local me, e = ig:me("IGQVJunknown" .. i)
      assert(me == nil and e ~= nil, "an unknown token must fail")
      counts.api_error = counts.api_error + 1
    elseif i % 101 == 0 then
      local tok, e = ig:exchange_code("AQnot-a-code-" .. i)
      assert(tok == nil and e ~= nil, "a bad code must fail")
      counts.exchange_error = counts.exchange_error + 1
    elseif i % 103 == 0 then
      assert(instagram.parse_signed_request(META_SR, "appsecret") ~= nil)
      assert(instagram.parse_signed_request(META_SR, "wrong") == nil)
      counts.signed = counts.signed + 1
    else
      local me, e = ig:me(token)
      assert(me and me.username == "jayposiris", e and tostring(e.message or e))
      counts.ok = counts.ok + 1
    end
    if i == mark then rss10 = report("10%", i) end
  end
  local rss100 = report("100%", CALLS)
  print(("soak: %d me() ok, %d API errors, %d exchange errors, %d signed_request pairs in %d s"):format(
    counts.ok, counts.api_error, counts.exchange_error, counts.signed, os.time() - t0))
  ig:close()
  if rss10 and rss100 then
    local growth = rss100 - rss10
    print(("soak: RSS growth from 10%% to 100%%: %d KiB (limit %d KiB)"):format(growth, MAX_GROWTH_KIB))
    if growth > MAX_GROWTH_KIB then error("RSS grew by more than the limit", 0) end
  else
    print("soak: /proc/self/status not readable; RSS not checked")
  end
end)
f:stop()
if not ok then
  io.stderr:write("soak: FAILED: ", tostring(err), "\n")
  os.exit(1)
end
print("soak: ok")

-- Leak gate for the C core: a loop over the success and failure paths of every
-- instagram.core function, meant to run under valgrind (make test-valgrind):
--   valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=3 \
--     --suppressions=tools/valgrind.supp lua5.4 tools/valgrind_loop.lua
-- Run from the repository root. VALGRIND_CALLS (default 10000) iterations;
-- IG_CPATH overrides where instagram/core.so is found (default build/5.4/?.so).
-- When the fake Instagram (spec/support/fake.lua) starts, every FAKE_EVERY-th
-- iteration (default 50) also performs a success, a 4xx, a timeout and an
-- oversize response against it, over http and https.
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path
package.cpath = (os.getenv("IG_CPATH") or "build/5.4/?.so") .. ";" .. package.cpath

local core = require "instagram.core"

local N = tonumber(os.getenv("VALGRIND_CALLS")) or 10000
local FAKE_EVERY = tonumber(os.getenv("FAKE_EVERY")) or 50

-- a loopback port nobody listens on
local function closed_port() return require("spec.support.nginx").free_ports(1)[1] end

local REFUSED_URL = "http://127.0.0.1:" .. closed_port() .. "/me?access_token=SECRET"

local META_SR = "N32LNcvDGXq0GI1jxm-tj1ysJh2uqkNIBcUhUmTp19k.eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsImV4cGlyZXMiOjEyOT"
  .. "E4NDA0MDAsImlzc3VlZF9hdCI6MTI5MTgzNjgwMCwidXNlcl9pZCI6IjIxODQ3MSJ9"
local TOKEN_JSON = '{"access_token":"IGQVJtest","user_id":17841405793187219}'
local PLAIN_JSON = '{"access_token":"IGQVJlonglived","token_type":"bearer","expires_in":5183944}'

local function raises(f, ...)
  local ok = pcall(f, ...)
  assert(not ok, "expected an error")
end

local function check_pure(i)
  local s = "k" .. i .. " &=/?#%+\0\xff"
  assert(core.url_decode(core.url_encode(s)) == s)
  assert(core.url_decode("a%2", true) == "a%2")
  assert(core.url_decode("a+b%20c", true) == "a b c")
  raises(core.url_encode, nil)
  local q = core.parse_query("https://h/cb?code=AQ" .. i .. "&state=x&state=y&flag#_")
  assert(q.code == "AQ" .. i and q.state[2] == "y" and q.flag == "")
  assert(core.parse_query("code=abc%23_").code == "abc")
  assert(core.build_query({ { "b", i }, { "a", true } }) == "b=" .. i .. "&a=true")
  assert(core.build_query({ z = "1", a = "2" }) == "a=2&z=1")
  raises(core.build_query, { { "k", {} } })
  raises(core.build_query, { k = function() end })
  raises(core.build_query, "x")

  assert(core.quote_big_ints(TOKEN_JSON):find('"17841405793187219"', 1, true))
  assert(core.quote_big_ints(PLAIN_JSON) == PLAIN_JSON)
  assert(core.quote_big_ints('{"a":"unterminated 12345678901234567') ~= nil)
  raises(core.quote_big_ints, {})

  assert(#core.random_state() == 43)
  assert(#core.random_state(16) == 22)
  raises(core.random_state, 15)
  raises(core.random_state, 257)
  assert(core.constant_time_equal("abc", "abc") and not core.constant_time_equal("abc", "abd"))
  assert(not core.constant_time_equal("abc", "ab"))
  assert(core.hmac_sha256_hex("key", "value") == "90fbfcf15e74a36b89dbdb2a721d9aecffdfdddc5c83e27f7592594f71932481")
  assert(#core.hmac_sha256_hex("", "") == 64)
  raises(core.hmac_sha256_hex, "k")
  assert(core.base64url_decode(core.base64url_encode(s)) == s)
  assert(core.base64url_decode("ZmFsc2U=") == "false")
  assert(core.base64url_decode("foo!") == nil)
  assert(core.base64url_decode("AB") == nil)
  raises(core.base64url_decode, nil)

  assert(core.verify_signed_request(META_SR, "appsecret"):find('"218471"', 1, true))
  local bad = { META_SR:sub(1, 42) .. "l" .. META_SR:sub(44), "no-dot", "a.b.c", ".e30", "foo!.e30",
    "fake_signature.e30=", META_SR .. ("A"):rep(70000) }
  for _, sr in ipairs(bad) do
    local v, why = core.verify_signed_request(sr, "appsecret")
    assert(v == nil and type(why) == "string")
  end
  assert(core.verify_signed_request(META_SR, "other") == nil)
  assert(core.verify_signed_request(META_SR, "") == nil)
  raises(core.verify_signed_request, META_SR)

  local wh_body = '{"object":"instagram","entry":[]}' .. i
  local wh_sig = "sha256=" .. core.hmac_sha256_hex("appsecret", wh_body)
  assert(core.webhook_verify(wh_body, wh_sig, { "other", "appsecret" }) == 2)
  assert(select(2, core.webhook_verify(wh_body, wh_sig:upper(), { "appsecret" })) == "malformed")
  assert(select(2, core.webhook_verify(wh_body, wh_sig, {})) == "no_secret")
  raises(core.webhook_verify, wh_body, wh_sig, { "" })
end

local function check_sessions(i)
  -- create/close, double close, close by __gc only, misuse
  local s = core.session({ allow_http = true, timeout = 2, connect_timeout = 1, user_agent = "vg/" .. i,
    ca_file = "/nonexistent/ca.pem", max_response_bytes = 1024 })
  assert(tostring(s):find("instagram.session", 1, true))
  s:close()
  s:close()
  assert(tostring(s) == "instagram.session (closed)")
  raises(s.perform, s, { url = REFUSED_URL })
  core.session({ ca_file = "x" }) -- left to the garbage collector
  raises(core.session, { user_agent = "a\r\nb", ca_file = "y" })
  raises(core.session, { timeout = -1 })
  raises(core.session, { allow_http = "yes" })
  raises(core.session, { max_response_bytes = 1.5 })

  -- connection refused
  s = core.session({ allow_http = true, connect_timeout = 1, timeout = 2 })
  local res, kind, msg = s:perform({ method = "GET", url = REFUSED_URL, headers = { Accept = "application/json" } })
  assert(res == nil and kind == "network" and not msg:find("SECRET", 1, true), tostring(kind) .. " " .. tostring(msg))
  res, kind = s:perform({ method = "POST", url = REFUSED_URL, body = "a=1&b=2" })
  assert(res == nil and kind == "network")
  raises(s.perform, s, { url = REFUSED_URL .. "\r\n" })
  raises(s.perform, s, { url = REFUSED_URL, headers = { ["Bad Name"] = "v" } })
  raises(s.perform, s, { url = REFUSED_URL, headers = { X = "a\nb" } })
  raises(s.perform, s, { method = "PUT", url = REFUSED_URL })
  raises(s.perform, s, { url = REFUSED_URL, body = "x" })
  if i % 10 == 0 then
    local all = s:perform_many({ { url = REFUSED_URL }, { url = REFUSED_URL, method = "POST", body = "x" } }, 2)
    assert(#all == 2 and all[1].error == "network" and all[2].error == "network")
    raises(s.perform_many, s, { { url = REFUSED_URL }, { url = 1 } }, 2)
  end
  -- https refused by policy when allow_http is off
  local strict = core.session({})
  res, kind = strict:perform({ url = REFUSED_URL })
  assert(res == nil and kind ~= nil)
  strict:close()
  if i % 2 == 0 then s:close() end -- else the collector closes it
end

-- files of the fileio and download paths
local FS_DIR = require("spec.support.nginx").mktemp_dir("valgrind-fs")

local fake, fake_sessions
local function start_fake()
  local ok, Fake = pcall(require, "spec.support.fake")
  if not ok then
    io.stderr:write("valgrind_loop: no fake server (", tostring(Fake), "): skipping its paths\n")
    return
  end
  local started, f = pcall(Fake.start, { quiet = true })
  if not started then
    io.stderr:write("valgrind_loop: the fake server did not start: ", tostring(f), "\n")
    return
  end
  fake = f
  fake:fault("/stall", { mode = "stall", seconds = 5 })
  fake:fault("/bad", { status = 400 })
  fake:fault("/big", { mode = "oversize", bytes = 100000 })
  fake:fault("/big_chunked", { mode = "oversize", bytes = 100000, length = false })
  local token = fake:issue_token("jayposiris", { kind = "short" })
  fake_sessions = {
    http = core.session({ allow_http = true, max_response_bytes = 20000, timeout = 5 }),
    https = core.session({ ca_file = fake.ca_file, max_response_bytes = 20000, timeout = 5 }),
  }
  fake.token = token
end

local fake_calls = 0
local function check_fake(i)
  local base = (i / FAKE_EVERY) % 2 == 0 and "https" or "http"
  local s = fake_sessions[base]
  local root = fake[base]
  local res, kind = s:perform({ url = root .. "/me?fields=id,username&access_token=" .. fake.token })
  assert(res and res.status == 200 and res.body:find("jayposiris", 1, true), tostring(kind))
  res = s:perform({ url = root .. "/bad" })
  assert(res and res.status == 400)
  res, kind = s:perform({ url = root .. "/stall", timeout = 0.2 })
  assert(res == nil and kind == "timeout", tostring(kind))
  res, kind = s:perform({ url = root .. "/big" })
  assert(res == nil and kind == "response", tostring(kind))
  res, kind = s:perform({ url = root .. "/big_chunked" })
  assert(res == nil and kind == "response", tostring(kind))
  local all = s:perform_many({ { url = root .. "/me?fields=id&access_token=" .. fake.token }, { url = root .. "/bad" },
    { url = root .. "/big" } }, 2)
  assert(all[1].status == 200 and all[2].status == 400 and all[3].error == "response")
  -- a download: the body streamed to a file (req.file), within and over its cap
  local file = FS_DIR .. "/download-" .. i
  res, kind = s:perform({ url = root .. "/me?fields=id&access_token=" .. fake.token, file = file, max_bytes = 10000 })
  assert(res and res.status == 200 and res.bytes > 0 and res.body == "", tostring(kind))
  os.remove(file)
  res, kind = s:perform({ url = root .. "/me?fields=id&access_token=" .. fake.token, file = file, max_bytes = 5 })
  assert(res == nil and kind == "response", tostring(kind))
  os.remove(file)
  res, kind = s:perform({ url = root .. "/me", file = FS_DIR .. "/missing/x" })
  assert(res == nil and kind == "file", tostring(kind))
  fake_calls = fake_calls + 10
end

-- the one-shot file helpers of the instagram command (src/fileio.c), every 10th iteration
local function check_files(i)
  local path = FS_DIR .. "/d" .. (i % 3) .. "/token.json"
  assert(core.fs_mkdir(FS_DIR .. "/d" .. (i % 3)) == true)
  assert(core.fs_write(path, '{"access_token":"IGQVJ' .. i .. '"}') == true)
  local mode, kind, uid = core.fs_mode(path)
  assert(mode == 384 and kind == "file" and type(uid) == "number")
  local none, msg, why = core.fs_mode(FS_DIR .. "/missing")
  assert(none == nil and msg and why == "missing")
  none, msg, why = core.fs_write(FS_DIR .. "/missing/token.json", "x")
  assert(none == nil and msg and why == "missing")
  none = core.fs_write(path .. "\0x", "x")
  assert(none == nil)
  none = core.fs_mkdir(FS_DIR .. "/missing/a")
  assert(none == nil)
  assert(type(core.fs_isatty(2)) == "boolean")
  raises(core.fs_write, path, nil)
end

start_fake()
local t0 = os.time()
for i = 1, N do
  check_pure(i)
  if i % 10 == 0 then check_files(i) end
  check_sessions(i)
  if fake and i % FAKE_EVERY == 0 then check_fake(i) end
  if i % 1000 == 0 then collectgarbage() end
end
if fake then
  fake_sessions.http:close()
  fake_sessions.https:close()
  fake:stop()
end
require("spec.support.nginx").run("rm -rf '" .. FS_DIR .. "'")
collectgarbage()
print(("valgrind_loop: %d iterations, %d requests against the fake%s, %d s"):format(N, fake_calls,
  fake and "" or " (not available)", os.time() - t0))

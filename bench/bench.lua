-- Side-by-side benchmarks, in one run, of lua-instagram against its baselines:
--   lua5.4 bench/bench.lua      (or: make bench; BENCH_LUA=luajit make bench)
-- Each row times the module and a baseline on the same input, on the same machine, in the same
-- process, interleaved, and reports the median of several rounds. Numbers are for comparison
-- within one run, not absolute claims.
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path
local socket = require "socket"
local instagram = require "instagram"
local cjson = require "cjson.safe"
local json = require "instagram.json"
local core = instagram.core

local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS")) or 7

local function median(t)
  table.sort(t)
  return t[math.ceil(#t / 2)]
end

-- time(fn, n) -> seconds per call, median over ROUNDS
local function time(fn, n)
  local samples = {}
  for r = 1, ROUNDS do
    local t0 = socket.gettime()
    for _ = 1, n do fn() end
    samples[r] = (socket.gettime() - t0) / n
  end
  return median(samples)
end

local rows = {}
local function row(name, module_fn, baseline_name, baseline_fn, n)
  local m, b = {}, {}
  for r = 1, ROUNDS do -- interleave so drift hits both sides alike
    local t0 = socket.gettime()
    for _ = 1, n do module_fn() end
    m[r] = (socket.gettime() - t0) / n
    t0 = socket.gettime()
    for _ = 1, n do baseline_fn() end
    b[r] = (socket.gettime() - t0) / n
  end
  rows[#rows + 1] = { name, median(m), baseline_name, median(b) }
end

local function fmt(s)
  if s >= 1e-3 then return string.format("%8.3f ms", s * 1e3) end
  return string.format("%8.2f us", s * 1e6)
end

-- 1. Decoding a media page: the exact-ID path (UTF-8 check + quote_big_ints + cjson) vs plain cjson
local items = {}
for i = 1, 25 do
  items[i] = string.format('{"id":%d,"caption":"caf\\u00e9 %d \226\152\128","media_type":"IMAGE",'
    .. '"media_url":"https://cdn.example/%d.jpg","timestamp":"2017-08-31T18:10:00+0000","username":"jayposiris"}',
    17895695668004550 + i, i, i)
end
local page = '{"data":[' .. table.concat(items, ",") .. '],"paging":{"cursors":{"before":"QVFIUk1","after":'
  .. '"QVFIUk2"},"next":"https://graph.instagram.com/me/media?access_token=TOKEN&limit=25&after=QVFIUk2"}}'
local exact = json.decode(page)
local plain = cjson.decode(page)
assert(exact.data[1].id == "17895695668004551", "exact path lost digits")
assert(string.format("%.0f", plain.data[1].id) ~= "17895695668004551", "baseline unexpectedly exact")
row("decode media page (exact IDs)", function() json.decode(page) end,
  "cjson.safe.decode (IDs corrupted)", function() cjson.decode(page) end, 2000)

-- 2. Building the authorize query: C RFC 3986 encoder vs the usual pure-Lua gsub encoder
local function lua_encode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end
local params = {
  { "client_id", "684477648739411" }, { "redirect_uri", "https://example.com/auth/callback?x=1" },
  { "scope", "instagram_business_basic,instagram_business_content_publish" },
  { "response_type", "code" }, { "state", "U4ScIDecRQSUvA5NOVk1GFqqeBiSwYnUWZqxy_6ncG8" },
}
local function lua_build(p)
  local out = {}
  for i, kv in ipairs(p) do out[i] = lua_encode(kv[1]) .. "=" .. lua_encode(kv[2]) end
  return table.concat(out, "&")
end
assert(core.build_query(params) == lua_build(params))
row("build_query (C)", function() core.build_query(params) end,
  "pure-Lua gsub encoder", function() lua_build(params) end, 20000)

-- 3. GET /me against the fake over HTTPS: one client reusing its connection vs a new client per call
local Fake = require "spec.support.fake"
local fake = Fake.start({ quiet = true })
local ok, err = pcall(function()
  local app = fake.apps.basic_display
  local function client()
    return instagram.new({ api = "basic_display", app_id = app.client_id, app_secret = app.secret,
      redirect_uri = app.redirect_uri, endpoints = fake:endpoints("https"), ca_file = fake.ca_file })
  end
  local token = fake:issue_token("jayposiris")
  local warm = client()
  assert(warm:me(token))
  row("ig:me over HTTPS, kept-alive client", function() assert(warm:me(token)) end,
    "a new client per call (TLS handshake each time)", function()
      local c = client()
      assert(c:me(token))
      c:close()
    end, 50)
  -- 4. 20 calls with a 50 ms server delay: ig:batch vs one after the other
  fake:fault("/me", { delay = 0.05 })
  local calls = {}
  for i = 1, 20 do calls[i] = { "me", token } end
  local batch_t = time(function() warm:batch(calls, { concurrency = 8 }) end, 1)
  local seq_t = time(function() for _ = 1, 20 do assert(warm:me(token)) end end, 1)
  rows[#rows + 1] = { "20 x ig:me, 50 ms server delay: ig:batch", batch_t, "sequential ig:me", seq_t }
  warm:close()
end)
fake:stop()
if not ok then error(err, 0) end

print(string.format("lua-instagram %s on %s%s, median of %d rounds", instagram.VERSION, _VERSION,
  rawget(_G, "jit") and (" (" .. jit.version .. ")") or "", ROUNDS))
print(string.format("%-42s %12s   %-48s %12s %8s", "module", "time", "baseline", "time", "ratio"))
for _, r in ipairs(rows) do
  print(string.format("%-42s %12s   %-48s %12s %7.2fx", r[1], fmt(r[2]), r[3], fmt(r[4]), r[4] / r[2]))
end
print(string.format("memory: Lua heap %.0f KiB after the run", collectgarbage("count")))

-- make bench: pure work (no network), the module against plain lua-cjson and against the pure-Lua
-- versions in bench/purelua.lua, in one process, interleaved, the fastest of ROUNDS short rounds:
-- this is CPU-bound work, where a round the scheduler interrupted only gets slower, so on a shared
-- machine the minimum is the steady figure (the network figures of bench/run.lua are medians).
--   pure.lua [ROUNDS]  -> RESULT {rows = {{name, module, cjson, purelua, bytes, vs_cjson, speedup}, ...}}
--                         (seconds per call in the fastest round; bytes: Lua bytes the module
--                         allocates per call, collector stopped; vs_cjson and speedup: the
--                         medians of the per-round ratios module/cjson and purelua/module)
-- Before timing, each baseline must give the module's answer, so a broken baseline fails the run.
local common = require "bench.common"
local instagram = require "instagram"
local json = require "instagram.json"
local purelua = require "bench.purelua"
local cjson = require "cjson.safe"

local ROUNDS = tonumber(arg[1]) or 7
local ROUND_SECONDS = 0.01 -- per contender per round
local core = instagram.core
local unpack = table.unpack or unpack -- luacheck: ignore 143
local app = common.APP

---------------------------------------------------------------------------
-- inputs

-- a Graph media page as Instagram sends it: string IDs (nothing to quote), UTF-8 captions
local function media_page(count)
  local items = {}
  for i = 1, count do
    items[i] = string.format('{"id":"1789569566800%04d","caption":"Sunset at the beach %d \\u2600 caf\195\169 '
      .. '#travel #photography","media_type":"IMAGE","media_url":"https://scontent.cdninstagram.com/v/t51.29350-15/'
      .. '%d_n.jpg?_nc_cat=10&ccb=1-7&_nc_sid=8ae9d6","permalink":"https://www.instagram.com/p/CxYz%04d/",'
      .. '"timestamp":"2017-08-31T18:10:00+0000","username":"jayposiris"}', i, i, 3000000000 + i, i)
  end
  return '{"data":[' .. table.concat(items, ",") .. '],"paging":{"cursors":{"before":"QVFIUk1aNXNHV1V0",'
    .. '"after":"QVFIUjhfcTBiR2R3"},"next":"https://graph.instagram.com/v21.0/me/media?access_token='
    .. common.TOKEN .. '&fields=id%2Ccaption&limit=' .. count .. '&after=QVFIUjhfcTBiR2R3"}}'
end

local page25, page100 = media_page(25), media_page(100)
local token_body = common.TOKEN_JSON

local ig = instagram.new({
  app_id = app.app_id, app_secret = app.app_secret, redirect_uri = app.redirect_uri, api = app.api,
})
local STATE = "U4ScIDecRQSUvA5NOVk1GFqqeBiSwYnUWZqxy_6ncG8"
local CODE = "AQ" .. string.rep("Bx7-kQ_2mZ", 12) .. "abcdef"
local callback = app.redirect_uri .. "?code=" .. CODE .. "&state=" .. STATE .. "#_"

local payload = '{"algorithm":"HMAC-SHA256","expires":1700003600,"issued_at":1700000000,'
  .. '"user_id":"17841405793187219"}'
local payload64 = purelua.b64url_encode(payload)
local sig_hex = core.hmac_sha256_hex(app.app_secret, payload64)
local sig = sig_hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
local signed_request = purelua.b64url_encode(sig) .. "." .. payload64

---------------------------------------------------------------------------
-- the contenders, each checked against the module's answer

local function check(what, ok, msg)
  if not ok then error("pure: " .. what .. ": " .. msg, 0) end
end

local rows = {}

local function add(name, module_fn, cjson_fn, lua_fn)
  rows[#rows + 1] = { name = name, fns = { module_fn, cjson_fn or false, lua_fn } }
end

-- authorize_url with a given state (the random state is the same RAND_bytes call for anyone)
local auth_opts = { state = STATE }
local auth_endpoint = "https://api.instagram.com/oauth/authorize"
local url = ig:authorize_url(auth_opts)
check("authorize_url", url == purelua.authorize_url(auth_endpoint, app.app_id, app.redirect_uri, ig.scope, STATE),
  "pure-Lua URL differs from the module's: " .. url)
add("authorize_url", function() return ig:authorize_url(auth_opts) end, nil,
  function() return purelua.authorize_url(auth_endpoint, app.app_id, app.redirect_uri, ig.scope, STATE) end)

check("parse_callback", ig:parse_callback(callback, STATE) == CODE and purelua.parse_callback(callback, STATE) == CODE,
  "codes differ")
add("parse_callback", function() return ig:parse_callback(callback, STATE) end, nil,
  function() return purelua.parse_callback(callback, STATE) end)

local sr = instagram.parse_signed_request(signed_request, app.app_secret)
local sr_lua = purelua.parse_signed_request(signed_request, app.app_secret, core.hmac_sha256_hex)
check("parse_signed_request", sr and sr_lua and sr.user_id == sr_lua.user_id and sr.issued_at == sr_lua.issued_at,
  "payloads differ")
add("parse_signed_request", function() return instagram.parse_signed_request(signed_request, app.app_secret) end,
  nil, function() return purelua.parse_signed_request(signed_request, app.app_secret, core.hmac_sha256_hex) end)

local function check_page(name, text, count)
  local a, b = json.decode(text), purelua.decode(text)
  check(name, a and b and #a.data == count and #b.data == count, "page not decoded")
  for i = 1, count do
    check(name, a.data[i].id == b.data[i].id and a.data[i].caption == b.data[i].caption, "item " .. i .. " differs")
  end
end
check_page("decode 25", page25, 25)
check_page("decode 100", page100, 100)
add("decode media page, 25 items (" .. #page25 .. " B)", function() return json.decode(page25) end,
  function() return cjson.decode(page25) end, function() return purelua.decode(page25) end)
add("decode media page, 100 items (" .. #page100 .. " B)", function() return json.decode(page100) end,
  function() return cjson.decode(page100) end, function() return purelua.decode(page100) end)

local t1, t2 = json.decode(token_body), purelua.decode(token_body)
check("decode token", t1 and t2 and t1.user_id == common.USER_ID and t2.user_id == common.USER_ID,
  "big user_id not exact")
check("decode token", string.format("%.0f", cjson.decode(token_body).user_id) ~= common.USER_ID,
  "plain cjson unexpectedly exact")
add("decode token response, big user_id", function() return json.decode(token_body) end,
  function() return cjson.decode(token_body) end, function() return purelua.decode(token_body) end)

---------------------------------------------------------------------------
-- timing: n calls per contender per round, n calibrated so the slowest takes ROUND_SECONDS

local now = common.now

-- a timing loop of its own for each contender: one shared loop would let LuaJIT compile its trace
-- for the first contender and slow down the others
local RUNNER = "local fn, n, now = ... local t0 = now() for _ = 1, n do fn() end return (now() - t0) / n"
local load_source = rawget(_G, "loadstring") or load
local function runner(fn)
  local loop = assert(load_source(RUNNER, "=runner"))
  return function(n) return loop(fn, n, now) end
end

local function calibrate(runs)
  local slowest = 0
  for _, run in ipairs(runs) do
    if run then
      local n, t = 1, 0
      while t < 0.005 do
        n = n * 2
        t = run(n) * n
      end
      slowest = math.max(slowest, t / n)
    end
  end
  return math.max(10, math.floor(ROUND_SECONDS / slowest))
end

local function bytes_per_call(fn)
  collectgarbage("collect")
  collectgarbage("stop")
  local k0 = collectgarbage("count")
  for _ = 1, 100 do fn() end
  local bytes = (collectgarbage("count") - k0) * 1024 / 100
  collectgarbage("restart")
  return bytes
end

local out = {}
for i, row in ipairs(rows) do
  local fns, runs = row.fns, {}
  for j = 1, 3 do runs[j] = fns[j] and runner(fns[j]) end
  local n = calibrate(runs)
  local samples = { {}, {}, {} }
  for r = 1, ROUNDS do
    for k = 0, 2 do -- rotate who goes first
      local j = (k + r) % 3 + 1
      if runs[j] then
        -- each round starts from a collected heap: the garbage of the contender before it is not
        -- collected in its time (a round is a few milliseconds, shorter than a collector cycle)
        collectgarbage("collect")
        samples[j][r] = runs[j](n)
      end
    end
  end
  -- the ratios pair the contenders of each round (run back to back), as the other parts of the
  -- bench do: the median of the per-round ratios, which one lucky round of one contender (a round
  -- that missed a collector step, say) does not move as it moves that contender's fastest round
  local vs_cjson, speedup = {}, {}
  for r = 1, ROUNDS do
    if fns[2] then vs_cjson[r] = samples[1][r] / samples[2][r] end
    speedup[r] = samples[3][r] / samples[1][r]
  end
  out[i] = {
    name = row.name, module = math.min(unpack(samples[1])), cjson = fns[2] and math.min(unpack(samples[2])) or nil,
    purelua = math.min(unpack(samples[3])), bytes = bytes_per_call(fns[1]),
    vs_cjson = fns[2] and common.median(vs_cjson) or nil, speedup = common.median(speedup),
  }
end
common.result({ rows = out })

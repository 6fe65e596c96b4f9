-- Exact-ID decode cost: instagram.json.decode vs plain cjson.safe.decode on a 25-item media page
-- (~8 KB, string IDs, nothing to quote) and on a token response with a big bare user_id.
-- Usage: lua5.4 tools/exactid_bench.lua [seconds per round]   (LUA_CPATH must find instagram.core)
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local json = require "instagram.json"
local cjson = require("cjson.safe").new()
local clock = os.clock
local budget = tonumber(arg[1]) or 0.5

local items = {}
local ITEM = '{"id":"178956956680%05d","caption":"Day %d at the lake \\u2014 caf\xc3\xa9 \xf0\x9f\x98\x80 #summer",'
  .. '"media_type":"IMAGE",'
  .. '"media_url":"https://scontent.cdninstagram.com/v/t51.29350-15/%d_n.jpg?_nc_cat=10%d&ccb=1-7",'
  .. '"permalink":"https://www.instagram.com/p/C%08dAbC/","timestamp":"2017-08-31T18:10:00+0000",'
  .. '"username":"jayposiris"}'
for i = 1, 25 do
  items[i] = string.format(ITEM, i, i, 1000000 + i, i, i)
end
local page = '{"data":[' .. table.concat(items, ",") .. '],'
  .. '"paging":{"cursors":{"before":"QVFIUkx1","after":"QVFIUjZA"},'
  .. '"next":"https://graph.instagram.com/v21.0/17841405793187219/media?fields=id&limit=25&after=QVFIUjZA"}}'
local token = '{"access_token":"IGQVJ' .. ("x"):rep(160) .. '","user_id":17841405793187219}'

local function per_call(f, text)
  local n, t0 = 0, clock()
  repeat
    for _ = 1, 200 do f(text) end
    n = n + 200
  until clock() - t0 > budget
  return (clock() - t0) / n * 1e6
end

local function median(t)
  table.sort(t)
  return t[math.ceil(#t / 2)]
end

for _, case in ipairs({ { "25-item page, " .. #page .. " B", page }, { "token, big user_id", token } }) do
  assert(json.decode(case[2]))
  local a, b = {}, {}
  for r = 1, 5 do -- alternating rounds
    a[r] = per_call(json.decode, case[2])
    b[r] = per_call(cjson.decode, case[2])
  end
  local ma, mb = median(a), median(b)
  print(string.format("%-26s instagram.json.decode %6.2f us  cjson.safe.decode %6.2f us  ratio %.3f",
    case[1], ma, mb, ma / mb))
end

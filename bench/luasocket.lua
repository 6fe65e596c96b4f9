-- make bench: the LuaSocket contender, as a Lua user without lua-instagram would write it:
-- socket.http.request (LuaSec's ssl.https for https) + lua-cjson, URL built with string.format
-- and a gsub percent-encoder. socket.http has no keep-alive: it sends "Connection: close" and
-- opens a new connection (and, over https, does a full TLS handshake) for every call.
--   luasocket.lua BASE [CA]   calls in the time slices read from stdin (common.serve)
local common = require "bench.common"
local cjson = require "cjson.safe"
local ltn12 = require "ltn12"

local base, ca = arg[1], arg[2]
local https = base:match("^https:") ~= nil
local request
if https then
  request = require("ssl.https").request
else
  request = require("socket.http").request
end

local function encode(s)
  return (s:gsub("[^%w%-._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function me()
  local url = string.format("%s/me?fields=%s&access_token=%s", base, encode("id,username"), encode(common.TOKEN))
  local chunks = {}
  local req = { url = url, sink = ltn12.sink.table(chunks), redirect = false }
  if https then
    req.cafile, req.verify, req.protocol, req.mode = ca, "peer", "any", "client"
    req.options = { "all", "no_sslv2", "no_sslv3" }
  end
  local ok, status = request(req)
  if ok ~= 1 or status ~= 200 then error("luasocket: request failed: " .. tostring(status), 0) end
  local user = cjson.decode(table.concat(chunks))
  if not user or user.id ~= common.USER_ID then error("luasocket: bad answer", 0) end
  return user
end

common.serve(me, 5)

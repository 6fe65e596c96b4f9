-- make bench: the straightforward pure-Lua versions the module's pure work is set against.
-- Each is what a careful Lua programmer would write without a C core, and gives the same answer
-- as the module on the bench inputs (bench/pure.lua checks that before timing):
--   authorize_url         string.format + a gsub percent-encoder (RFC 3986 unreserved kept)
--   parse_callback        gmatch query split, gsub percent-decoding, duplicate keys refused,
--                         plain == on the state (not constant-time)
--   parse_signed_request  pure-Lua base64url decode of signature and payload, HMAC-SHA256 from the
--                         C core (core.hmac_sha256_hex: a pure-Lua SHA-256 is not a fair baseline
--                         for anyone), lua-cjson for the payload
--   decode                a UTF-8 check (utf8.len on 5.3+, a byte loop on LuaJIT), a string-aware
--                         scanner that quotes integers of 16+ digits, then lua-cjson
local cjson = require "cjson.safe"

local M = {}

local byte, char, format, concat = string.byte, string.char, string.format, table.concat

function M.encode(s)
  return (s:gsub("[^%w%-._~]", function(c) return format("%%%02X", byte(c)) end))
end

local function decode_component(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

function M.authorize_url(endpoint, app_id, redirect_uri, scope, state)
  return format("%s?client_id=%s&redirect_uri=%s&scope=%s&response_type=code&state=%s", endpoint,
    M.encode(app_id), M.encode(redirect_uri), M.encode(scope), M.encode(state))
end

function M.parse_callback(input, expected_state)
  local query = input:match("%?([^#]*)") or input
  local args = {}
  for pair in query:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k, v = decode_component(k), decode_component(v)
    if args[k] then return nil, "duplicate " .. k end
    args[k] = v
  end
  if args.error then return nil, "denied" end
  if args.state == nil or args.state ~= expected_state then return nil, "state" end
  local code = args.code
  if code == nil or code == "" then return nil, "no code" end
  return (code:gsub("#_$", ""))
end

-- base64url (RFC 4648 §5), padding optional
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local B64_VALUE = {}
for i = 1, 64 do B64_VALUE[byte(B64, i)] = i - 1 end

function M.b64url_decode(s)
  s = s:gsub("=+$", "")
  local out, bits, nbits = {}, 0, 0
  for i = 1, #s do
    local v = B64_VALUE[byte(s, i)]
    if not v then return nil end
    bits = bits * 64 + v
    nbits = nbits + 6
    if nbits >= 8 then
      nbits = nbits - 8
      local b = math.floor(bits / 2 ^ nbits)
      out[#out + 1] = char(b)
      bits = bits - b * 2 ^ nbits
    end
  end
  return concat(out)
end

function M.b64url_encode(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local k = (c and 4) or (b and 3) or 2
    for j = 1, k do
      local shift = 18 - 6 * (j - 1)
      local v = math.floor(n / 2 ^ shift) % 64
      out[#out + 1] = B64:sub(v + 1, v + 1)
    end
  end
  return concat(out)
end

local function hex(s)
  return (s:gsub(".", function(c) return format("%02x", byte(c)) end))
end

function M.parse_signed_request(sr, secret, hmac_sha256_hex)
  local sig64, payload64 = sr:match("^([^.]+)%.([^.]+)$")
  if not sig64 then return nil, "format" end
  local sig = M.b64url_decode(sig64)
  if not sig or #sig ~= 32 then return nil, "signature" end
  if hex(sig) ~= hmac_sha256_hex(secret, payload64) then return nil, "mismatch" end
  local data = cjson.decode(M.b64url_decode(payload64) or "")
  if type(data) ~= "table" or data.algorithm ~= "HMAC-SHA256" then return nil, "payload" end
  return data
end

-- UTF-8 check: utf8.len where the interpreter has it, else a byte loop (RFC 3629)
local utf8_len = rawget(_G, "utf8") and utf8.len
local function valid_utf8(s)
  if utf8_len then return utf8_len(s) ~= nil end
  local i, n = 1, #s
  while i <= n do
    local c = byte(s, i)
    local len = (c < 0x80 and 1) or (c >= 0xC2 and c < 0xE0 and 2) or (c >= 0xE0 and c < 0xF0 and 3)
      or (c >= 0xF0 and c < 0xF5 and 4) or nil
    if not len then return false end
    for j = i + 1, i + len - 1 do
      local d = byte(s, j)
      if not d or d < 0x80 or d > 0xBF then return false end
    end
    i = i + len
  end
  return true
end

-- quotes every integer of 16 or more digits outside strings, so lua-cjson keeps it exact
local function quote_big_ints(s)
  local out, pos, n = {}, 1, #s
  local last = 1
  while pos <= n do
    local a = s:find('[%"%d%-]', pos)
    if not a then break end
    if byte(s, a) == 34 then -- a string: skip to its closing quote
      local j = a + 1
      while true do
        local e = s:find('[\\"]', j)
        if not e then return s end
        if byte(s, e) == 92 then j = e + 2 else pos = e + 1 break end
      end
    else
      local b, e = s:find("^%-?%d+", a)
      if not b then
        pos = a + 1
      else
        local after = byte(s, e + 1)
        -- a whole integer (no fraction or exponent) of 16+ digits
        if e - b + 1 >= 16 and after ~= 46 and after ~= 101 and after ~= 69 then
          out[#out + 1] = s:sub(last, b - 1)
          out[#out + 1] = '"' .. s:sub(b, e) .. '"'
          last = e + 1
        end
        pos = e + 1
      end
    end
  end
  if last == 1 then return s end
  out[#out + 1] = s:sub(last)
  return concat(out)
end

function M.decode(text)
  if not valid_utf8(text) then return nil, "invalid UTF-8" end
  return cjson.decode(quote_big_ints(text))
end

return M

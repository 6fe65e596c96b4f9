-- Decoding of JSON that comes from the network. Long integers are quoted in C
-- before lua-cjson sees them, so IDs above 2^53 stay exact (INSTAGRAM.md §3.5).
local core = require "instagram.core"
local cjson_safe = require "cjson.safe"

local decoder = cjson_safe.new() -- private instance: never touch the worker-wide cjson settings
decoder.decode_max_depth(200)
decoder.decode_invalid_numbers(false)

local encoder = cjson_safe.new()
encoder.encode_invalid_numbers(false)

local M = { null = cjson_safe.null }

-- RFC 8259 §8.1: JSON between systems is UTF-8, and lua-cjson does not check it (src/utf8.c does)
M.valid_utf8 = core.valid_utf8

-- decode(text) -> value | nil, reason, in one C call: a pass that checks UTF-8 and NUL (cjson
-- would stop there) and quotes big integers (src/exactid.c), then the private decoder. The reason
-- is "not a string", "invalid UTF-8" or "invalid JSON" (cjson's own message may quote the text).
M.decode = core.exact_decoder(decoder.decode)

function M.encode(value)
  return encoder.encode(value)
end

-- An ID as an exact decimal string: strings pass, integral numbers below 2^53 are formatted.
function M.id(value)
  local t = type(value)
  if t == "string" then
    if value ~= "" then return value end
  elseif t == "number" then
    if value == math.floor(value) and value > -2^53 and value < 2^53 then
      return string.format("%d", value)
    end
  end
  return nil
end

-- An integral number as a Lua 5.4 integer (lua-cjson decodes every number as a float: 7.0), else as is.
local tointeger = math.tointeger -- luacheck: ignore 143
function M.integer(v)
  if tointeger and type(v) == "number" then return tointeger(v) or v end
  return v
end

local byte = string.byte
local UNDERSCORE, I, D = byte("_id", 1, 3)

-- "id" or "..._id", without making a substring per key
local function is_id_key(k)
  if k == "id" then return true end
  local n = #k
  if n < 3 then return false end
  local a, b, c = byte(k, n - 2, n)
  return a == UNDERSCORE and b == I and c == D
end

-- Turns every numeric `id` / `*_id` field of decoded Graph data into an exact string, and every
-- other integral number (counts) into an integer, in place.
local next, type = next, type
local function normalize_ids(value, depth)
  if type(value) ~= "table" or depth > 64 then return value end
  -- next rather than pairs (no __pairs lookup), each value's type taken once
  for k, v in next, value do
    local tv = type(v)
    if tv == "number" then
      if type(k) == "string" and is_id_key(k) then
        value[k] = M.id(v) or v
      elseif tointeger then
        value[k] = tointeger(v) or v
      end
    elseif tv == "table" then
      normalize_ids(v, depth + 1)
    end
  end
  return value
end

function M.normalize_ids(value)
  return normalize_ids(value, 0)
end

return M

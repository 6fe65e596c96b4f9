-- Decoding of JSON that comes from the network. Long integers are quoted in C
-- before lua-cjson sees them, so IDs above 2^53 stay exact (INSTAGRAM.md §3.5).
local core = require "instagram.core"
local cjson_safe = require "cjson.safe"

-- a private instance (never touch the worker-wide cjson settings) whose decode raises: the C core
-- calls it in protected mode
local decoder = require("cjson").new()
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

-- Turns every numeric `id` / `*_id` field of decoded Graph data into an exact string, and every
-- other integral number (counts) into an integer under Lua 5.3+, in place, 65 levels deep; any
-- other value is returned as is. One C walk (src/exactid.c): no Lua call per field.
M.normalize_ids = core.normalize_ids

return M

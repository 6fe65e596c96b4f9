-- Optional client-side token buckets per account (PLATFORM.md §4): instagram.new{rate_limits =
-- {publish = {50, 86400}, private_reply = {750, 3600}}} keeps a client under Instagram's limits
-- instead of learning them from errors. In-process only: each process (nginx worker) counts alone.
local errors = require "instagram.errors"

local M = {}

local KNOWN = { publish = true, private_reply = true }

-- check(fname, config_value) -> buckets or nil; raises on a malformed option
function M.new(fname, limits, clock)
  if limits == nil then return nil end
  if type(limits) ~= "table" then error(fname .. ": rate_limits must be a table", 0) end
  local self = { clock = clock, limits = {}, state = {} }
  for name, spec in pairs(limits) do
    if not KNOWN[name] then error(fname .. ": unknown rate limit '" .. tostring(name) .. "'", 0) end
    local n, per = type(spec) == "table" and spec[1], type(spec) == "table" and spec[2]
    if type(n) ~= "number" or not (n >= 1 and n < math.huge) or n ~= math.floor(n) or type(per) ~= "number"
        or not (per > 0 and per < math.huge) then
      error(fname .. ": rate_limits." .. name .. " must be {calls, seconds}", 0)
    end
    self.limits[name] = { n = n, per = per }
    self.state[name] = {}
  end
  return setmetatable(self, { __index = M })
end

-- take(name, account) -> true, or nil, err (kind api, rate_limited, retry_after) without a request
function M:take(name, account)
  local limit = self.limits[name]
  if not limit then return true end
  local now = self.clock()
  local b = self.state[name][account]
  if not b then
    b = { tokens = limit.n, at = now }
    self.state[name][account] = b
  end
  b.tokens = math.min(limit.n, b.tokens + (now - b.at) * limit.n / limit.per)
  b.at = now
  if b.tokens < 1 then
    local wait = math.ceil((1 - b.tokens) * limit.per / limit.n)
    return nil, errors.new("api", string.format("client rate limit: %d %s calls per %g s for this account",
      limit.n, name, limit.per), { rate_limited = true, retry_after = wait, local_limit = true })
  end
  b.tokens = b.tokens - 1
  return true
end

return M

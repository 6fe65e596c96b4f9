-- instagram.store: where the keeper and the feed keep tokens, cached feeds and locks.
-- Every backend has the same seven methods; the keeper and the feed never ask which one they have.
--
--   store:get(key)                 value string; nil when absent; nil, err on failure
--   store:set(key, value)          true, or nil, err
--   store:cas(key, old, new)       true when the stored value was `old` (nil: absent) and is now
--                                  `new`; false when it was something else; nil, err on failure
--   store:delete(key)              true, or nil, err
--   store:keys(prefix)             array of the keys starting with prefix, or nil, err
--   store:lock(key, ttl)           an owner string when taken, false when another holder has it,
--                                  nil, err on failure; the lock lapses after ttl seconds (the file
--                                  store's flock lapses when its holder dies instead)
--   store:unlock(key, owner)       true when released, false when it was no longer ours; nil, err
--
-- Keys are printable ASCII without spaces; values are strings (JSON). Errors are kind "store" and
-- never carry a value, a token or a password.
local core = require "instagram.core"
local errors = require "instagram.errors"

local M = {}

local BACKENDS = { file = true, shared_dict = true, redis = true }

function M.raise(fname, msg)
  error(fname .. ": " .. msg, 0)
end

-- A store failure; `secrets` are scrubbed from the message.
function M.error(message, secrets)
  return errors.new("store", message, nil, secrets)
end

function M.check_key(fname, key)
  if type(key) ~= "string" or key == "" or #key > 512 or key:find("[^%w%p]") then
    M.raise(fname, "key must be a non-empty printable string without spaces")
  end
  return key
end

function M.check_value(fname, value)
  if type(value) ~= "string" then M.raise(fname, "value must be a string") end
  return value
end

function M.check_ttl(fname, ttl)
  if type(ttl) ~= "number" or ttl <= 0 or ttl ~= ttl then
    M.raise(fname, "ttl must be a positive number of seconds")
  end
  return ttl
end

function M.check_opts(fname, opts, known)
  if type(opts) ~= "table" then M.raise(fname, "options must be a table") end
  for k in pairs(opts) do
    if not known[k] then M.raise(fname, "unknown option '" .. tostring(k) .. "'") end
  end
  return opts
end

-- A lock owner: unguessable, so no other holder can release our lock by accident or on purpose.
function M.owner()
  return core.random_state()
end

-- The methods a custom store must have.
M.METHODS = { "get", "set", "cas", "delete", "keys", "lock", "unlock" }

function M.check_store(fname, what, store)
  if type(store) ~= "table" then M.raise(fname, what .. " must be a store (instagram.store.*)") end
  for _, m in ipairs(M.METHODS) do
    local ok, f = pcall(function() return store[m] end)
    if not ok or type(f) ~= "function" then
      M.raise(fname, what .. " must be a store: it has no " .. m .. " method")
    end
  end
  return store
end

return setmetatable(M, {
  __index = function(_, name)
    if BACKENDS[name] then
      return require("instagram.store." .. name).new
    end
  end,
})

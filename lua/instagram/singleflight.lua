-- Single-flight: of several callers that need the same result at once, one (the lock holder)
-- computes it, the others wait and get its result, or its failure (kept briefly, so waiters do not
-- all retry against a failing server). Internal; the keeper builds its fleet-wide locks on this.
--
-- A backend keeps locks and results (strings) under keys:
--   backend:add(key, value, ttl) -> true, false when the key exists (set only if absent), or nil, msg
--                                   when the backend cannot take it (then fn runs without a lock:
--                                   a store that cannot lock must not stop the work)
--   backend:get(key)             -> value or nil
--   backend:set(key, value, ttl)
--   backend:release(key, owner)  -> deletes key only while it still holds owner
--   backend:sleep(seconds)       -> true, or false where this context cannot wait
--   backend:keep(key, owner, ttl) (optional) -> a function that stops it, or nil where it cannot run:
--                                   keeps the lock on a short lease renewed while its holder lives, so
--                                   a holder killed mid-work frees it within the lease, not after ttl
local core = require "instagram.core"
local errors = require "instagram.errors"
local json = require "instagram.json"

local M = {}

local unpack = table.unpack or unpack -- luacheck: ignore 143

local POLL = 0.05 -- seconds between a waiter's looks
local LEASE, RENEW = 3, 1 -- a kept lock lives LEASE seconds past its holder's last renewal

local function pack(...)
  return { n = select("#", ...), ... }
end

-- A backend on an ngx.shared dict (one nginx host, all its workers).
function M.shared_dict(dict)
  return {
    add = function(_, key, value, ttl)
      local ok, err = dict:add(key, value, ttl)
      if ok then return true end
      if err == "exists" then return false end
      return nil, err
    end,
    get = function(_, key) return dict:get(key) end,
    set = function(_, key, value, ttl) dict:set(key, value, ttl) end,
    -- a dict has no compare-and-delete: the get and the delete run without a yield between
    -- them, and a lock outlives its holder's work (run's ttl), so no other owner can slip in
    release = function(_, key, owner)
      if dict:get(key) == owner then dict:delete(key) end
    end,
    sleep = function(_, seconds)
      local ngx = rawget(_G, "ngx")
      return (pcall(ngx.sleep, seconds)) -- raises "API disabled" in phases that cannot yield
    end,
    -- A light thread renews the lock while the holder works. nginx kills a request's light threads
    -- with it (a client abort under lua_check_client_abort, ngx.exit, a crashed worker leaves no
    -- renewal either), so a holder that dies mid-refresh frees the lock within LEASE seconds; never
    -- beyond ttl. Where light threads are not allowed, the lock keeps its whole ttl.
    keep = function(_, key, owner, ttl)
      local ngx = rawget(_G, "ngx")
      local thread = type(ngx) == "table" and ngx.thread
      if type(thread) ~= "table" then return nil end
      local deadline = ngx.now() + ttl
      local stopped = false
      local spawned, th = pcall(thread.spawn, function()
        while not stopped do
          local left = deadline - ngx.now()
          if left <= 0 or dict:get(key) ~= owner then return end
          dict:set(key, owner, math.min(LEASE, left))
          ngx.sleep(RENEW)
        end
      end)
      if not spawned or not th then return nil end
      return function()
        stopped = true
        pcall(thread.kill, th)
      end
    end,
  }
end

-- The fields of an error object that survive a trip through the backend (all already scrubbed).
local function encode_error(err)
  if not errors.is_error(err) then return nil end
  local fields = {}
  for k, v in pairs(err) do
    local t = type(v)
    if type(k) == "string" and (t == "string" or t == "number" or t == "boolean") then fields[k] = v end
  end
  return fields
end

local function decode_result(text)
  local r = json.decode(text)
  if type(r) ~= "table" then return nil end
  if r.ok == true and type(r.value) == "table" then
    return { json.normalize_ids(r.value) }
  end
  if r.ok == false and type(r.err) == "table" and type(r.err.kind) == "string" then
    local fields = json.normalize_ids(r.err)
    local ok, e = pcall(errors.new, fields.kind, fields.message, fields)
    if ok then return { nil, e } end
  end
  return nil
end

-- run(backend, key, opts, fn) -> fn's results (a table value, or nil, err), computed once for all
-- callers that run it with the same key meanwhile. opts:
--   ttl          seconds the lock lives: longer than fn can take (waiters wait that long at most)
--   result_ttl   seconds a value is kept for callers that arrive later (default 60)
--   failure_ttl  seconds a failure is kept (default 5)
--   what         the work, for error messages ("a refresh of this token")
-- A raise in fn releases the lock and goes on up. A waiter that cannot sleep here, or that waited
-- ttl, returns nil, err (kind timeout).
function M.run(backend, key, opts, fn)
  local result_key = key .. ":result"
  local ttl = opts.ttl
  local what = opts.what or "the same work"
  local owner, rerr = core.random_state(16)
  if not owner then return nil, errors.new("network", "no random lock owner: " .. tostring(rerr)) end
  local polls = math.ceil(ttl / POLL) + 1
  for _ = 1, polls do
    local cached = backend:get(result_key)
    if cached then
      local r = decode_result(cached)
      if r then return r[1], r[2] end
    end
    local taken = backend:add(key, owner, ttl)
    if taken == nil then return fn() end
    if taken then
      local stop = backend.keep and backend:keep(key, owner, ttl)
      local r = pack(pcall(fn))
      if stop then stop() end
      if r[1] then
        if r[2] ~= nil then
          local text = json.encode({ ok = true, value = r[2] })
          if text then backend:set(result_key, text, opts.result_ttl or 60) end
        else
          local fields = encode_error(r[3])
          local text = fields and json.encode({ ok = false, err = fields })
          if text then backend:set(result_key, text, opts.failure_ttl or 5) end
        end
      end
      backend:release(key, owner)
      if not r[1] then error(r[2], 0) end
      return unpack(r, 2, r.n)
    end
    if not backend:sleep(POLL) then
      return nil, errors.new("timeout", what .. " is in progress elsewhere, and this context cannot wait for it",
        { transient = true })
    end
  end
  return nil, errors.new("timeout", "waited " .. ttl .. " s for " .. what .. " in progress elsewhere",
    { transient = true })
end

return M

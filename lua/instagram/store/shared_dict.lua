-- instagram.store.shared_dict{dict = "name"}: a store in an ngx.shared dict, for the workers of
-- one nginx host. Locks are dict:safe_add with an expiry. Each dict call is atomic across workers;
-- cas and unlock are a read then a write in one worker without a yield between them. Values live
-- under "v:<key>", locks under "l:<key>", so no key can pose as a lock.
local store = require "instagram.store"

local Dict = {}
Dict.__index = Dict

local KNOWN = { dict = true }

function Dict.new(opts)
  local fname = "instagram.store.shared_dict"
  store.check_opts(fname, opts, KNOWN)
  if type(opts.dict) ~= "string" or opts.dict == "" then
    store.raise(fname, "dict must be the name of a lua_shared_dict")
  end
  local ngx = rawget(_G, "ngx")
  local dict = type(ngx) == "table" and ngx.shared and ngx.shared[opts.dict]
  if not dict then store.raise(fname, "dict '" .. opts.dict .. "' is not a lua_shared_dict") end
  return setmetatable({ name = opts.dict, dict = dict }, Dict)
end

function Dict:__tostring()
  return "instagram.store.shared_dict (" .. self.name .. ")"
end

local function failed(what, err)
  return nil, store.error(what .. " failed in the shared dict: " .. tostring(err))
end

function Dict:get(key)
  store.check_key("store:get", key)
  local v, flags_or_err = self.dict:get("v:" .. key)
  if v == nil and flags_or_err then return failed("get", flags_or_err) end
  if v ~= nil and type(v) ~= "string" then return nil end
  return v
end

function Dict:set(key, value)
  store.check_key("store:set", key)
  store.check_value("store:set", value)
  -- safe_set never evicts another key (a token) to make room
  local ok, err = self.dict:safe_set("v:" .. key, value)
  if not ok then return failed("set", err) end
  return true
end

function Dict:cas(key, old, new)
  store.check_key("store:cas", key)
  if old ~= nil then store.check_value("store:cas", old) end
  store.check_value("store:cas", new)
  if old == nil then
    local ok, err = self.dict:safe_add("v:" .. key, new)
    if ok then return true end
    if err == "exists" then return false end
    return failed("cas", err)
  end
  if self.dict:get("v:" .. key) ~= old then return false end
  local ok, err = self.dict:safe_set("v:" .. key, new)
  if not ok then return failed("cas", err) end
  return true
end

function Dict:delete(key)
  store.check_key("store:delete", key)
  self.dict:delete("v:" .. key)
  return true
end

function Dict:keys(prefix)
  if type(prefix) ~= "string" then store.raise("store:keys", "prefix must be a string") end
  local out = {}
  for _, key in ipairs(self.dict:get_keys(0)) do
    if key:sub(1, 2 + #prefix) == "v:" .. prefix then out[#out + 1] = key:sub(3) end
  end
  table.sort(out)
  return out
end

function Dict:lock(key, ttl)
  store.check_key("store:lock", key)
  store.check_ttl("store:lock", ttl)
  local owner = store.owner()
  -- safe_add: a full dict fails the lock rather than evict another key (a token) to make room
  local ok, err = self.dict:safe_add("l:" .. key, owner, ttl)
  if ok then return owner end
  if err == "exists" then return false end
  return failed("lock", err)
end

function Dict:unlock(key, owner)
  store.check_key("store:unlock", key)
  local lkey = "l:" .. key
  if self.dict:get(lkey) ~= owner then return false end
  self.dict:delete(lkey)
  return true
end

return Dict

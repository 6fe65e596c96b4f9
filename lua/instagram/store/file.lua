-- instagram.store.file{dir = path}: one JSON file per key in a private directory (0700, files
-- 0600). A write goes to a temp file that is synced, then renamed over the old one, so a crash
-- leaves the old value or the new one, never a torn file. Locks are flock(2) locks on "<key>.lock"
-- files: the kernel drops them when their holder dies, so they need no expiry.
local core = require "instagram.core"
local store = require "instagram.store"

local File = {}
File.__index = File

local KNOWN = { dir = true, _before_commit = true }

-- "token:123" -> "token%3A123": keys become safe file names, and back. A leading dot is encoded
-- too, so no key is hidden among the dot files (temp files, "..") that keys() skips.
local function encode_key(key)
  local name = key:gsub("[^%w_.-]", function(c) return string.format("%%%02X", c:byte()) end)
  return (name:gsub("^%.", "%%2E"))
end

local function decode_name(name)
  local base = name:match("^(.+)%.json$")
  if not base or base:sub(1, 1) == "." then return nil end
  return (base:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

function File.new(opts)
  local fname = "instagram.store.file"
  store.check_opts(fname, opts, KNOWN)
  local dir = opts.dir
  if type(dir) ~= "string" or dir == "" or dir:find("%z") then
    store.raise(fname, "dir must be a non-empty path")
  end
  dir = dir:gsub("(.)/+$", "%1")
  if opts._before_commit ~= nil and type(opts._before_commit) ~= "function" then
    store.raise(fname, "_before_commit must be a function")
  end
  return setmetatable({ dir = dir, _before_commit = opts._before_commit, locks = {} }, File)
end

function File:__tostring()
  return "instagram.store.file (" .. self.dir .. ")"
end

-- The directory, made 0700 on first use (it may hold tokens).
function File:_dir()
  if not self.ready then
    local ok, err = core.fs_mkdir(self.dir)
    if not ok then return nil, store.error("cannot create the store directory: " .. err) end
    self.ready = true
  end
  return self.dir
end

-- the encoded key must fit a file name (255 bytes) with its ".json"/".lock"/".guard"
local MAX_NAME = 240

local function name_of(fname, key)
  local name = encode_key(store.check_key(fname, key))
  if #name > MAX_NAME then store.raise(fname, "key too long for the file store") end
  return name
end

function File:_path(key)
  return self.dir .. "/" .. name_of("store", key) .. ".json"
end

local function read(path)
  local f, err, code = io.open(path, "rb")
  if not f then
    if code == 2 then return nil end -- ENOENT: absent
    return nil, store.error("cannot read a store file: " .. tostring(err))
  end
  local text = f:read("*a")
  f:close()
  return text
end

function File:get(key)
  name_of("store:get", key)
  local dir, err = self:_dir()
  if not dir then return nil, err end
  return read(self:_path(key))
end

function File:_write(key, value)
  local tmp, err = core.fs_write_temp(self.dir, value)
  if not tmp then return nil, store.error("cannot write a store file: " .. err) end
  if self._before_commit then self._before_commit(tmp, key) end
  local ok
  ok, err = core.fs_commit(tmp, self:_path(key), self.dir)
  if not ok then
    os.remove(tmp)
    return nil, store.error("cannot replace a store file: " .. err)
  end
  return true
end

-- Writers of one key take its guard lock briefly, so a compare-and-set is atomic across processes.
function File:_guarded(key, fn)
  local dir, err = self:_dir()
  if not dir then return nil, err end
  local guard
  guard, err = core.fs_lock(self.dir .. "/" .. name_of("store", key) .. ".guard", true)
  if not guard then return nil, store.error("cannot lock a store file: " .. tostring(err)) end
  local ok, a, b = pcall(fn)
  guard:unlock()
  if not ok then error(a, 0) end
  return a, b
end

function File:set(key, value)
  name_of("store:set", key)
  store.check_value("store:set", value)
  return self:_guarded(key, function() return self:_write(key, value) end)
end

function File:cas(key, old, new)
  name_of("store:cas", key)
  if old ~= nil then store.check_value("store:cas", old) end
  store.check_value("store:cas", new)
  return self:_guarded(key, function()
    local current, err = read(self:_path(key))
    if err then return nil, err end
    if current ~= old then return false end
    return self:_write(key, new)
  end)
end

function File:delete(key)
  name_of("store:delete", key)
  return self:_guarded(key, function()
    local ok, err, code = os.remove(self:_path(key))
    if not ok and code ~= 2 then return nil, store.error("cannot delete a store file: " .. tostring(err)) end
    return true
  end)
end

function File:keys(prefix)
  if type(prefix) ~= "string" then store.raise("store:keys", "prefix must be a string") end
  local dir, err = self:_dir()
  if not dir then return nil, err end
  local names
  names, err = core.fs_list(dir)
  if not names then return nil, store.error("cannot list the store directory: " .. err) end
  local out = {}
  for _, name in ipairs(names) do
    local key = decode_name(name)
    if key and key:sub(1, #prefix) == prefix then out[#out + 1] = key end
  end
  table.sort(out)
  return out
end

-- ttl is accepted for the common interface; a flock needs none (it ends with its holder).
function File:lock(key, ttl)
  name_of("store:lock", key)
  store.check_ttl("store:lock", ttl)
  local dir, err = self:_dir()
  if not dir then return nil, err end
  if self.locks[key] then return false end
  local handle
  handle, err = core.fs_lock(dir .. "/" .. name_of("store:lock", key) .. ".lock", false)
  if handle == nil then return nil, store.error("cannot lock: " .. tostring(err)) end
  if not handle then return false end
  local owner = store.owner()
  self.locks[key] = { owner = owner, handle = handle }
  return owner
end

function File:unlock(key, owner)
  name_of("store:unlock", key)
  local held = self.locks[key]
  if not held or not core.constant_time_equal(held.owner, tostring(owner)) then return false end
  self.locks[key] = nil
  return held.handle:unlock()
end

return File

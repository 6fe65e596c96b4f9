-- instagram.feed: an account's media, cached in a store for as long as its image URLs work
-- (API.md "Stores, the token keeper, the feed"; PLATFORM.md §6). Media URLs are signed CDN links
-- whose `oe` parameter is their expiry; a feed served past it is a page of broken images. So a
-- cached copy expires at the earlier of `max_ttl` after the fetch and the earliest `oe` minus
-- `margin`, and a stale copy is served (while one host refetches, or while Instagram fails) only
-- until its earliest `oe`.
local core = require "instagram.core"
local errors = require "instagram.errors"
local json = require "instagram.json"
local store_mod = require "instagram.store"

local Feed = {}
Feed.__index = Feed

local M = { Feed = Feed }

local DEFAULT_FIELDS = "id,caption,media_type,media_url,permalink,thumbnail_url,timestamp,"
  .. "children{id,media_type,media_url,thumbnail_url}"
local POLL = 0.05
local MAX_OE_DIGITS = 12

local KNOWN = {
  keeper = true, user_id = true, store = true, fields = true, limit = true, max_ttl = true,
  margin = true, mirror = true, lock_ttl = true, wait = true,
}

local function raise(fname, msg)
  error(fname .. ": " .. msg, 0)
end

--- cdn_expiry(url) -> the `oe` query parameter (hex Unix seconds, either case) as a number, or nil
function M.cdn_expiry(url)
  if type(url) ~= "string" then return nil end
  local query = url:match("^[^?#]*%?([^#]*)")
  if not query then return nil end
  for pair in query:gmatch("[^&]+") do
    local hex = pair:match("^oe=(%x+)$")
    if hex and #hex <= MAX_OE_DIGITS then return tonumber(hex, 16) end
  end
  return nil
end

local function number_opt(fname, opts, key, default, min)
  local v = opts[key]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v < min then raise(fname, key .. " must be a number >= " .. tostring(min)) end
  return v
end

local function fields_string(fname, fields)
  if fields == nil then return DEFAULT_FIELDS end
  if type(fields) == "table" then
    for i = 1, #fields do
      if type(fields[i]) ~= "string" or fields[i] == "" then raise(fname, "fields must be strings") end
    end
    fields = table.concat(fields, ",")
  end
  if type(fields) ~= "string" or fields == "" or fields:find("[%s%z&?#]") then
    raise(fname, "fields must be an array of strings or one comma-separated string")
  end
  return fields
end

function M.new(opts)
  local fname = "instagram.feed.new"
  if type(opts) ~= "table" then raise(fname, "options must be a table") end
  for k in pairs(opts) do
    if not KNOWN[k] then raise(fname, "unknown option '" .. tostring(k) .. "'") end
  end
  local keeper = opts.keeper
  if type(keeper) ~= "table" or type(keeper.token) ~= "function" or type(keeper.client) ~= "table" then
    raise(fname, "keeper must be an instagram.keeper")
  end
  local user_id = json.id(opts.user_id)
  if not user_id or not user_id:match("^[%w_.-]+$") then raise(fname, "user_id must be an ID string") end
  local store = opts.store or keeper.store
  store_mod.check_store(fname, "store", store)
  local limit = number_opt(fname, opts, "limit", 12, 1)
  if limit ~= math.floor(limit) or limit > 100 then raise(fname, "limit must be an integer from 1 to 100") end
  if opts.mirror ~= nil and type(opts.mirror) ~= "function" then raise(fname, "mirror must be a function") end
  local fields = fields_string(fname, opts.fields)
  local client = keeper.client
  local lock_ttl = number_opt(fname, opts, "lock_ttl", (client.timeout or 10) * ((client.retries or 2) + 1) + 5, 0.001)
  return setmetatable({
    keeper = keeper, client = client, user_id = user_id, store = store, fields = fields, limit = limit,
    max_ttl = number_opt(fname, opts, "max_ttl", 3600, 0),
    margin = number_opt(fname, opts, "margin", 6 * 3600, 0),
    mirror = opts.mirror, lock_ttl = lock_ttl,
    wait = number_opt(fname, opts, "wait", lock_ttl + 1, 0),
    -- one key per account and shape of feed
    key = "feed:" .. user_id .. ":" .. core.hmac_sha256_hex("feed", fields .. "|" .. limit):sub(1, 16),
  }, Feed)
end

function Feed:__tostring()
  return "instagram.feed (account " .. self.user_id .. ")"
end

local function check_self(fname, self)
  if getmetatable(self) ~= Feed then
    raise(fname, "call it as a method (feed:" .. fname:match("[%w_]+$") .. "(...))")
  end
end

function Feed:_now()
  return self.client:_now()
end

local URL_FIELDS = { "media_url", "thumbnail_url" }

-- the earliest oe among an item's URLs and its children's (nil when none carries one)
local function earliest_oe(item, best)
  for _, f in ipairs(URL_FIELDS) do
    local oe = M.cdn_expiry(item[f])
    if oe and (not best or oe < best) then best = oe end
  end
  for _, child in ipairs(type(item.children) == "table" and item.children or {}) do
    best = earliest_oe(child, best)
  end
  return best
end

-- Graph's children page becomes a plain array; the mirror hook may swap URLs for the site's own.
function Feed:_prepare(item)
  if type(item.children) == "table" then
    item.children = type(item.children.data) == "table" and item.children.data or item.children
    for _, child in ipairs(item.children) do self:_prepare(child) end
  end
  if self.mirror then
    for _, f in ipairs(URL_FIELDS) do
      if type(item[f]) == "string" then
        local ok, url = pcall(self.mirror, item[f], item)
        if ok and type(url) == "string" and url ~= "" then item[f] = url end
      end
    end
  end
  return item
end

-- expires_at and valid_until (the earliest oe: past it the copy shows broken images)
function Feed:_times(rec)
  local oe
  for _, item in ipairs(rec.items) do oe = earliest_oe(item, oe) end
  local expires_at = rec.fetched_at + self.max_ttl
  if oe then
    expires_at = math.min(expires_at, oe - self.margin)
    rec.valid_until = oe
  else
    rec.valid_until = rec.fetched_at + self.max_ttl + self.margin
  end
  rec.expires_at = expires_at
  return rec
end

-- A read that Instagram refused with 190 means the keeper's token is dead (the password changed,
-- access was revoked): the keeper marks it so (on_dead fires once), and no later read sends it.
function Feed:_failed(token, err)
  if type(err) == "table" and err.token_invalid and type(self.keeper._rejected) == "function" then
    self.keeper:_rejected(self.user_id, token, err)
  end
  return err
end

function Feed:_fetch()
  local token, err = self.keeper:token(self.user_id)
  if not token then return nil, err end
  local page
  page, err = self.client:media(token, { fields = self.fields, limit = self.limit })
  if not page then return nil, self:_failed(token, err) end
  local items = {}
  for i, item in ipairs(page.data) do items[i] = self:_prepare(item) end
  return self:_times({ items = items, fetched_at = self:_now() })
end

local function decode(raw)
  local rec = raw and json.normalize_ids(json.decode(raw)) -- integers under Lua 5.4, as Graph data
  if type(rec) ~= "table" or type(rec.items) ~= "table" or type(rec.fetched_at) ~= "number"
      or type(rec.expires_at) ~= "number" or type(rec.valid_until) ~= "number" then
    return nil
  end
  return rec
end

local function view(rec, stale)
  return { items = rec.items, fetched_at = rec.fetched_at, expires_at = rec.expires_at, stale = stale }
end

function Feed:_remember(rec)
  if rec and (not self.copy or rec.fetched_at >= self.copy.fetched_at) then self.copy = rec end
end

-- the local copy of this process, while its URLs still work
function Feed:_local(now)
  local rec = self.copy
  if rec and now < rec.valid_until then return view(rec, now >= rec.expires_at) end
  return nil
end

function Feed:get()
  check_self("feed:get", self)
  local now = self:_now()
  local raw, err = self.store:get(self.key)
  if err then
    local copy = self:_local(now)
    if copy then return copy end
    return nil, err
  end
  local rec = decode(raw)
  self:_remember(rec)
  if rec and now < rec.expires_at then return view(rec, false) end

  local tries = math.max(1, math.ceil(self.wait / POLL))
  for i = 0, tries do
    local owner, lerr = self.store:lock(self.key, self.lock_ttl)
    if owner == nil then
      local copy = self:_local(now)
      if copy then return copy end
      return nil, lerr
    end
    if owner then
      -- another host may have refetched between our read and our lock
      raw = self.store:get(self.key)
      local cur = decode(raw)
      if cur and now < cur.expires_at then
        self.store:unlock(self.key, owner)
        self:_remember(cur)
        return view(cur, false)
      end
      local fresh, ferr = self:_fetch()
      if fresh then
        self.store:set(self.key, json.encode(fresh)) -- a store failure still serves what we fetched
        self.store:unlock(self.key, owner)
        self:_remember(fresh)
        return view(fresh, false)
      end
      self.store:unlock(self.key, owner)
      -- Instagram failed: the last good copy, only while its URLs still work (now: the failure
      -- may have taken the client's every try and back-off)
      self:_remember(cur)
      local copy = self:_local(self:_now())
      if copy then
        copy.stale = true
        return copy
      end
      return nil, ferr
    end
    -- another host is refetching: serve stale meanwhile, or wait for its result
    if rec and now < rec.valid_until then return view(rec, true) end
    if i < tries then self.client:_sleep(POLL) end
    now = self:_now()
    raw, err = self.store:get(self.key)
    if err then return nil, err end
    rec = decode(raw)
    self:_remember(rec)
    if rec and now < rec.valid_until then return view(rec, now >= rec.expires_at) end
  end
  return nil, errors.new("timeout", "waited too long for another host to fetch the feed of account " .. self.user_id)
end

-- the top-level item that is media_id or holds it as a carousel child, and that child
local function find(rec, media_id)
  for i, item in ipairs(rec and rec.items or {}) do
    if item.id == media_id then return i, item end
    for _, child in ipairs(type(item.children) == "table" and item.children or {}) do
      if child.id == media_id then return i, child end
    end
  end
  return nil
end

function Feed:refresh_item(media_id)
  local fname = "feed:refresh_item"
  check_self(fname, self)
  local id = json.id(media_id)
  if not id or not id:match("^%d+$") then raise(fname, "media_id must be a media ID string") end
  local raw, err = self.store:get(self.key)
  local rec = not err and decode(raw) or self.copy
  local index, found = find(rec, id)
  local top_id = index and rec.items[index].id or id
  local token
  token, err = self.keeper:token(self.user_id)
  if not token then return nil, err end
  local item
  item, err = self.client:get(token, top_id, { fields = self.fields })
  if not item then return nil, self:_failed(token, err) end
  item = self:_prepare(item)
  if index then
    -- put it in the cached copy; a concurrent refetch wins (it is at least as fresh)
    for _ = 1, 3 do
      rec.items[index] = item
      self:_times(rec)
      local ok = self.store:cas(self.key, raw, json.encode(rec))
      if ok ~= false then break end
      raw = self.store:get(self.key)
      rec = decode(raw)
      index = rec and find(rec, id)
      if not index then break end
    end
    if rec then self:_remember(rec) end
  end
  if found and found.id ~= top_id then
    for _, child in ipairs(item.children or {}) do
      if child.id == id then return child end
    end
  end
  return item
end

return M

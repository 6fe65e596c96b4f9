-- instagram.keeper: long-lived tokens kept alive in a store (API.md "Stores, the token keeper").
-- Each account is one record "token:<user_id>" = {token, state = "ok"|"dead", reason, code,
-- subcode}. A due token is refreshed under the store's lock "token:<user_id>", so one host of
-- everything sharing the store refreshes it and the others read the result; a refreshed token is
-- written with a compare-and-set, so a slow refresher never puts back an older token.
local core = require "instagram.core"
local errors = require "instagram.errors"
local json = require "instagram.json"
local store_mod = require "instagram.store"

local Keeper = {}
Keeper.__index = Keeper

local DAY = 86400
local REFRESH_MIN_AGE = DAY -- Instagram refuses to refresh a token younger than 24 h
local KEY_PREFIX = "token:"
local POLL = 0.05

local KNOWN = {
  client = true, store = true, within = true, on_dead = true, lock_ttl = true, wait = true,
  concurrency = true, jitter = true, retry_after = true,
}

local function raise(fname, msg)
  error(fname .. ": " .. msg, 0)
end

local function number_opt(fname, opts, key, default, min)
  local v = opts[key]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v < min then
    raise(fname, key .. " must be a number >= " .. tostring(min))
  end
  return v
end

function Keeper.new(opts)
  local fname = "instagram.keeper.new"
  if type(opts) ~= "table" then raise(fname, "options must be a table") end
  for k in pairs(opts) do
    if not KNOWN[k] then raise(fname, "unknown option '" .. tostring(k) .. "'") end
  end
  local client = opts.client
  if type(client) ~= "table" or type(client.refresh_token) ~= "function" then
    raise(fname, "client must be an instagram client (instagram.new)")
  end
  store_mod.check_store(fname, "store", opts.store)
  if opts.on_dead ~= nil and type(opts.on_dead) ~= "function" then raise(fname, "on_dead must be a function") end
  local concurrency = number_opt(fname, opts, "concurrency", 4, 1)
  if concurrency ~= math.floor(concurrency) or concurrency > 256 then
    raise(fname, "concurrency must be an integer from 1 to 256")
  end
  -- a refresh may take every try of the client before its holder gives the lock back
  local lock_ttl = number_opt(fname, opts, "lock_ttl", (client.timeout or 10) * ((client.retries or 2) + 1) + 5, 0.001)
  return setmetatable({
    client = client,
    store = opts.store,
    within = number_opt(fname, opts, "within", 7 * DAY, 0),
    on_dead = opts.on_dead,
    lock_ttl = lock_ttl,
    wait = number_opt(fname, opts, "wait", lock_ttl + 1, 0),
    concurrency = concurrency,
    jitter = number_opt(fname, opts, "jitter", 1, 0),
    -- after a refresh failed (Instagram or the network), the due token is handed out as it is
    -- for this long, so the callers waiting on that refresh, and the next ones, do not each try
    -- again against a failing Instagram
    retry_after = number_opt(fname, opts, "retry_after", 60, 0),
  }, Keeper)
end

function Keeper:__tostring()
  return "instagram.keeper (" .. tostring(self.store) .. ")"
end

local function check_self(fname, self)
  if getmetatable(self) ~= Keeper then
    raise(fname, "call it as a method (keeper:" .. fname:match("[%w_]+$") .. "(...))")
  end
end

local function check_user_id(fname, user_id)
  local id = json.id(user_id)
  if not id or not id:match("^[%w_.-]+$") then raise(fname, "user_id must be an ID string") end
  return id
end

local function decode_record(raw, user_id)
  local rec = json.normalize_ids(json.decode(raw)) -- integers under Lua 5.4, as the client gives
  if type(rec) ~= "table" or type(rec.token) ~= "table" or type(rec.token.access_token) ~= "string" then
    return nil, store_mod.error("the stored record of account " .. user_id .. " is not a token record")
  end
  return rec
end

-- load(user_id) -> record, raw; nil (absent); nil, nil, err
function Keeper:_load(user_id)
  local raw, err = self.store:get(KEY_PREFIX .. user_id)
  if err then return nil, nil, err end
  if raw == nil then return nil end
  local rec
  rec, err = decode_record(raw, user_id)
  if not rec then return nil, nil, err end
  return rec, raw
end

-- a due token whose last refresh failed less than retry_after ago
function Keeper:_backing_off(rec)
  local at = tonumber(rec.retry_at)
  return at ~= nil and self.client:_now() < at
end

-- Remembers in the record that its refresh failed just now (a compare-and-set: a record that
-- changed meanwhile, e.g. refreshed by another host, is left as it is).
function Keeper:_refresh_failed(user_id, rec, raw)
  if self.retry_after <= 0 then return end
  local copy = {}
  for k, v in pairs(rec) do copy[k] = v end
  copy.retry_at = self.client:_now() + self.retry_after
  self.store:cas(KEY_PREFIX .. user_id, raw, json.encode(copy))
end

-- "dead", "expired" (dead without asking), "fresh", "due"
function Keeper:_state(rec)
  if rec.state == "dead" then return "dead" end
  local t = rec.token
  local now = self.client:_now()
  local expires_at, issued_at = tonumber(t.expires_at), tonumber(t.issued_at)
  if expires_at and now >= expires_at then return "expired" end
  if issued_at and now - issued_at < REFRESH_MIN_AGE then return "fresh" end
  if expires_at and expires_at - now > self.within then return "fresh" end
  return "due"
end

local function dead_error(rec, user_id)
  return errors.new("api", "the token of account " .. user_id .. " is dead (" .. tostring(rec.reason or "invalid")
    .. "): the user must log in again", {
      code = rec.code or 190, subcode = rec.subcode, type = "OAuthException", token_invalid = true,
    })
end

local function expired_error()
  return errors.new("api", "the token expired; an expired token cannot be refreshed", {
    code = 190, subcode = 463, type = "OAuthException", token_invalid = true,
  })
end

-- A refresh answer that means the token will never work again (190: expired, revoked, password
-- changed, with subcodes 460/463/...), as opposed to a failure worth trying again.
local function is_dead_error(err)
  return type(err) == "table" and err.kind == "api" and (err.token_invalid or err.code == 190) and true or false
end

-- Marks the account dead (once, by compare-and-set) and calls on_dead when this call made it so.
-- -> true when marked, false when the record changed meanwhile (another host stored a new token).
function Keeper:_mark_dead(user_id, rec, raw, err)
  local dead = {
    token = rec.token, state = "dead", reason = err.message, code = err.code, subcode = err.subcode,
    dead_at = self.client:_now(),
  }
  local ok, serr = self.store:cas(KEY_PREFIX .. user_id, raw, json.encode(dead))
  if ok == nil then return nil, serr end
  if ok and self.on_dead then
    local called, cerr = pcall(self.on_dead, user_id, err)
    if not called then
      local ngx = rawget(_G, "ngx")
      if type(ngx) == "table" and ngx.log then ngx.log(ngx.ERR, "instagram.keeper: on_dead raised: ", cerr) end
    end
  end
  return ok
end

-- Stores `new` unless the store already holds a token at least as new (another host refreshed
-- meanwhile); a compare-and-set, so an older token never replaces a newer one. Returns the token
-- now stored.
function Keeper:_store_refreshed(user_id, raw, new)
  local encoded = json.encode({ token = new, state = "ok" })
  for _ = 1, 5 do
    local ok, err = self.store:cas(KEY_PREFIX .. user_id, raw, encoded)
    if ok == nil then return nil, err end
    if ok then return new end
    local cur, cur_raw, lerr = self:_load(user_id)
    if lerr then return nil, lerr end
    if cur and (tonumber(cur.token.issued_at) or 0) >= (tonumber(new.issued_at) or 0) then
      return cur.state ~= "dead" and cur.token or new
    end
    raw = cur_raw
  end
  return new
end

-- Instagram rejected `token` (190: revoked, password changed, expired) on some other call than a
-- refresh, e.g. the feed's media read: the account is marked dead (once; on_dead fires) when the
-- store still holds that very token, so it is never sent again. -> true when marked; false when
-- the error does not kill a token or the store holds another token now; nil, err (kind store).
function Keeper:_rejected(user_id, token, err)
  if not is_dead_error(err) or type(token) ~= "table" or type(token.access_token) ~= "string" then return false end
  local rec, raw, lerr = self:_load(user_id)
  if lerr then return nil, lerr end
  if not rec or rec.state == "dead" or #rec.token.access_token ~= #token.access_token
      or not core.constant_time_equal(rec.token.access_token, token.access_token) then
    return false
  end
  return self:_mark_dead(user_id, rec, raw, err)
end

function Keeper:add(token)
  local fname = "keeper:add"
  check_self(fname, self)
  if type(token) ~= "table" or type(token.access_token) ~= "string" or token.access_token == "" then
    raise(fname, "token must be a token table")
  end
  local user_id = json.id(token.user_id)
  if not user_id or not user_id:match("^[%w_.-]+$") then raise(fname, "token.user_id must be an ID string") end
  local t = {}
  for k, v in pairs(token) do t[k] = v end
  t.user_id = user_id
  t.issued_at = tonumber(t.issued_at) or self.client:_now()
  local ok, err = self.store:set(KEY_PREFIX .. user_id, json.encode({ token = t, state = "ok" }))
  if not ok then return nil, err end
  return user_id
end

-- Refreshes under the lock; the caller holds it. -> token, or nil, err
function Keeper:_refresh_locked(user_id)
  local rec, raw, err = self:_load(user_id)
  if err then return nil, err end
  if not rec then return nil, store_mod.error("no token stored for account " .. user_id) end
  local state = self:_state(rec)
  if state == "dead" then return nil, dead_error(rec, user_id) end
  if state == "fresh" then return rec.token end -- another host refreshed it meanwhile
  if state == "due" and self:_backing_off(rec) then return rec.token end -- or just failed to
  if state == "expired" then
    local e = expired_error()
    local ok, serr = self:_mark_dead(user_id, rec, raw, e)
    if ok == nil then return nil, serr end
    return nil, e
  end
  local new, rerr = self.client:refresh_token(rec.token)
  if not new then
    if is_dead_error(rerr) then
      local marked, serr = self:_mark_dead(user_id, rec, raw, rerr)
      if marked == nil then return nil, serr end
      if not marked then
        -- the token we sent is dead, but someone stored another one meanwhile: that one counts
        local cur = self:_load(user_id)
        if cur and self:_state(cur) == "fresh" then return cur.token end
      end
      return nil, rerr
    end
    self:_refresh_failed(user_id, rec, raw)
    return nil, rerr, rec.token -- a failure worth trying again: the old token may still serve
  end
  return self:_store_refreshed(user_id, raw, new)
end

function Keeper:token(user_id)
  local fname = "keeper:token"
  check_self(fname, self)
  user_id = check_user_id(fname, user_id)
  local rec, _, err = self:_load(user_id)
  if err then return nil, err end
  if not rec then return nil, store_mod.error("no token stored for account " .. user_id) end
  local state = self:_state(rec)
  if state == "dead" then return nil, dead_error(rec, user_id) end
  if state == "fresh" or (state == "due" and self:_backing_off(rec)) then return rec.token end

  local lock_key = KEY_PREFIX .. user_id
  local tries = math.max(1, math.ceil(self.wait / POLL))
  for i = 0, tries do
    local owner, lerr = self.store:lock(lock_key, self.lock_ttl)
    if owner == nil then return nil, lerr end
    if owner then
      local token, rerr, old = self:_refresh_locked(user_id)
      self.store:unlock(lock_key, owner)
      if token then return token end
      -- Instagram or the network failed: a token that has not expired still works
      if old and self:_state({ token = old }) ~= "expired" then return old end
      return nil, rerr
    end
    -- another holder is refreshing: wait for its result, or for its lock to lapse
    if i < tries then self.client:_sleep(POLL) end
    rec, _, err = self:_load(user_id)
    if err then return nil, err end
    if not rec then return nil, store_mod.error("no token stored for account " .. user_id) end
    state = self:_state(rec)
    if state == "dead" then return nil, dead_error(rec, user_id) end
    if state == "fresh" then return rec.token end
    if state == "due" and self:_backing_off(rec) then return rec.token end -- the holder's refresh failed
  end
  if state == "due" then return rec.token end -- not refreshed in time, but still valid
  return nil, errors.new("timeout", "waited too long for another host to refresh the token of account " .. user_id)
end

-- _mark_dead's answer as a sweep count: marked; another host stored a new token meanwhile; a
-- store failure
local function mark_outcome(marked)
  if marked == nil then return "failed" end
  return marked and "dead" or "not_due"
end

local function shuffle(list)
  for i = #list, 2, -1 do
    local j = math.random(i)
    list[i], list[j] = list[j], list[i]
  end
end

function Keeper:sweep()
  local fname = "keeper:sweep"
  check_self(fname, self)
  local counts = { refreshed = 0, not_due = 0, dead = 0, failed = 0, busy = 0 }
  local keys, err = self.store:keys(KEY_PREFIX)
  if not keys then return nil, err end
  local due = {}
  for _, key in ipairs(keys) do
    local user_id = key:sub(#KEY_PREFIX + 1)
    local rec, _, lerr = self:_load(user_id)
    if lerr then
      counts.failed = counts.failed + 1
    elseif rec then
      local state = self:_state(rec)
      if state == "dead" then
        counts.dead = counts.dead + 1
      elseif state == "fresh" then
        counts.not_due = counts.not_due + 1
      else
        due[#due + 1] = user_id
      end
    end
  end
  shuffle(due) -- two sweepers at once start at different accounts

  for first = 1, #due, self.concurrency do
    if first > 1 and self.jitter > 0 then self.client:_sleep(math.random() * self.jitter) end
    local group = {}
    for i = first, math.min(#due, first + self.concurrency - 1) do
      local user_id = due[i]
      local owner = self.store:lock(KEY_PREFIX .. user_id, self.lock_ttl)
      if owner == nil then
        counts.failed = counts.failed + 1
      elseif not owner then
        counts.busy = counts.busy + 1
      else
        local rec, raw, rerr = self:_load(user_id)
        local state = rec and self:_state(rec)
        if rerr or not rec then
          counts.failed = counts.failed + 1
          self.store:unlock(KEY_PREFIX .. user_id, owner)
        elseif state == "fresh" then
          counts.not_due = counts.not_due + 1 -- another sweeper got there first
          self.store:unlock(KEY_PREFIX .. user_id, owner)
        elseif state == "dead" then
          counts.dead = counts.dead + 1
          self.store:unlock(KEY_PREFIX .. user_id, owner)
        elseif state == "expired" then
          local outcome = mark_outcome(self:_mark_dead(user_id, rec, raw, expired_error()))
          counts[outcome] = counts[outcome] + 1
          self.store:unlock(KEY_PREFIX .. user_id, owner)
        else
          group[#group + 1] = { user_id = user_id, owner = owner, rec = rec, raw = raw }
        end
      end
    end
    if #group > 0 then
      local calls = {}
      for i, g in ipairs(group) do calls[i] = { "refresh_token", g.rec.token } end
      local results = self.client:batch(calls, { concurrency = self.concurrency })
      for i, g in ipairs(group) do
        local r = results[i]
        if r.ok and r.value then
          local stored = self:_store_refreshed(g.user_id, g.raw, r.value)
          counts[stored and "refreshed" or "failed"] = counts[stored and "refreshed" or "failed"] + 1
        elseif is_dead_error(r.err) then
          local outcome = mark_outcome(self:_mark_dead(g.user_id, g.rec, g.raw, r.err))
          counts[outcome] = counts[outcome] + 1
        else
          counts.failed = counts.failed + 1
          self:_refresh_failed(g.user_id, g.rec, g.raw)
        end
        self.store:unlock(KEY_PREFIX .. g.user_id, g.owner)
      end
    end
  end
  return counts
end

function Keeper:status()
  local fname = "keeper:status"
  check_self(fname, self)
  local keys, err = self.store:keys(KEY_PREFIX)
  if not keys then return nil, err end
  local out = {}
  for _, key in ipairs(keys) do
    local user_id = key:sub(#KEY_PREFIX + 1)
    local rec, _, lerr = self:_load(user_id)
    if lerr then return nil, lerr end
    if rec then
      local state = self:_state(rec)
      local entry = { user_id = user_id, expires_at = tonumber(rec.token.expires_at) }
      if state == "dead" then
        entry.state, entry.reason = "dead", rec.reason
      elseif state == "expired" then
        entry.state, entry.reason = "dead", "expired"
      elseif state == "due" then
        entry.state = "due"
      else
        entry.state = "ok"
      end
      out[#out + 1] = entry
    end
  end
  return out
end

-- OpenResty: sweeps every `interval` seconds from one worker of each host; the store's lock
-- "sweep" lets one host of the fleet sweep at a time.
function Keeper:schedule(interval)
  local fname = "keeper:schedule"
  check_self(fname, self)
  if type(interval) ~= "number" or interval < 1 then raise(fname, "interval must be a number of seconds >= 1") end
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or not ngx.timer then raise(fname, "needs OpenResty (ngx.timer.every)") end
  local id = ngx.worker and ngx.worker.id and ngx.worker.id()
  if id ~= nil and id ~= 0 then return true end
  return ngx.timer.every(interval, function(premature)
    if premature then return end
    local owner, err = self.store:lock("sweep", interval)
    if not owner then
      if err then ngx.log(ngx.WARN, "instagram.keeper: sweep lock: ", tostring(err)) end
      return
    end
    local ok, res, serr = pcall(self.sweep, self)
    self.store:unlock("sweep", owner)
    if not ok then
      ngx.log(ngx.ERR, "instagram.keeper: sweep raised: ", tostring(res))
    elseif not res then
      ngx.log(ngx.WARN, "instagram.keeper: sweep: ", tostring(serr))
    else
      ngx.log(ngx.INFO, string.format("instagram.keeper: sweep: %d refreshed, %d not due, %d dead, %d failed",
        res.refreshed, res.not_due, res.dead, res.failed))
    end
  end)
end

return Keeper

-- instagram.store.redis{host, port, password?, db?, prefix?, ssl?, timeout?}: a store in Redis,
-- shared by a fleet of hosts. Inside an nginx phase that allows cosockets it talks through
-- resty.redis (Debian's lua-nginx-redis) with a keep-alive pool; anywhere else through the
-- blocking client in instagram.store.resp. A lock is SET NX PX, released by a compare-and-delete
-- script, so a lock that lapsed and went to another host is never released by the first; a cas
-- is a compare-and-set script. The password never leaves this file: not in the store table, not
-- in any message.
local core = require "instagram.core"
local store = require "instagram.store"
local transport = require "instagram.transport"

local Redis = {}
Redis.__index = Redis

local private = setmetatable({}, { __mode = "k" })

local KNOWN = {
  host = true, port = true, password = true, password_env = true, db = true, prefix = true,
  ssl = true, ssl_verify = true, server_name = true, ca_file = true, timeout = true,
  connect_timeout = true, read_timeout = true, pool_size = true, keepalive = true,
}

local CAS = [[
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur then return 0 end
elseif cur ~= ARGV[2] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
]]

local UNLOCK = [[
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
]]

local function seconds(fname, opts, key, default)
  local v = opts[key]
  if v == nil then return default end
  if type(v) ~= "number" or v <= 0 or v ~= v then
    store.raise(fname, key .. " must be a positive number of seconds")
  end
  return v
end

function Redis.new(opts)
  local fname = "instagram.store.redis"
  store.check_opts(fname, opts, KNOWN)
  local host = opts.host or "127.0.0.1"
  if type(host) ~= "string" or host == "" or host:find("[%s%z]") then
    store.raise(fname, "host must be a host name or address")
  end
  -- math.floor makes a Lua 5.4 integer of a float such as 6379.0 (a JSON config gives floats),
  -- which would go out as "6379.0"
  local port = opts.port or 6379
  if type(port) ~= "number" or port ~= math.floor(port) or port < 1 or port > 65535 then
    store.raise(fname, "port must be an integer 1-65535")
  end
  port = math.floor(port)
  local db = opts.db or 0
  if type(db) ~= "number" or db ~= math.floor(db) or db < 0 or db >= 2 ^ 31 then
    store.raise(fname, "db must be a non-negative integer")
  end
  db = math.floor(db)
  local pool_size = opts.pool_size or 32
  if type(pool_size) ~= "number" or pool_size ~= math.floor(pool_size) or pool_size < 1 or pool_size >= 2 ^ 31 then
    store.raise(fname, "pool_size must be a positive integer")
  end
  for _, key in ipairs({ "server_name", "ca_file" }) do
    if opts[key] ~= nil and (type(opts[key]) ~= "string" or opts[key] == "") then
      store.raise(fname, key .. " must be a non-empty string")
    end
  end
  local prefix = opts.prefix or "instagram:"
  if type(prefix) ~= "string" or prefix:find("[%s%z]") then
    store.raise(fname, "prefix must be a string without spaces")
  end
  if opts.password ~= nil and (type(opts.password) ~= "string" or opts.password == "") then
    store.raise(fname, "password must be a non-empty string")
  end
  if opts.password_env ~= nil and (type(opts.password_env) ~= "string" or opts.password_env == "") then
    store.raise(fname, "password_env must be the name of an environment variable")
  end
  if opts.ssl ~= nil and type(opts.ssl) ~= "boolean" then store.raise(fname, "ssl must be a boolean") end
  if opts.ssl_verify ~= nil and type(opts.ssl_verify) ~= "boolean" then
    store.raise(fname, "ssl_verify must be a boolean")
  end
  local timeout = seconds(fname, opts, "timeout", 1)
  local self = setmetatable({
    host = host, port = port, db = db, prefix = prefix, ssl = opts.ssl == true,
    ssl_verify = opts.ssl_verify ~= false, server_name = opts.server_name, ca_file = opts.ca_file,
    connect_timeout = seconds(fname, opts, "connect_timeout", timeout),
    read_timeout = seconds(fname, opts, "read_timeout", timeout),
    keepalive = seconds(fname, opts, "keepalive", 60),
    pool_size = math.floor(pool_size),
  }, Redis)
  private[self] = { password = opts.password, password_env = opts.password_env }
  return self
end

function Redis:__tostring()
  return string.format("instagram.store.redis (%s:%d db %d)", self.host, self.port, self.db)
end

function Redis:_password()
  local p = private[self]
  if p.password then return p.password end
  if p.password_env then
    local v = os.getenv(p.password_env)
    if v and v ~= "" then return v end
  end
  return nil
end

function Redis:_fail(what, err)
  if self.conn then
    self.conn:close()
    self.conn = nil
  end
  return nil, store.error(string.format("redis %s:%d: %s: %s", self.host, self.port, what, tostring(err)),
    { self:_password() })
end

local function resty_redis()
  local ok, mod = pcall(require, "resty.redis")
  if not ok then ok, mod = pcall(require, "nginx.redis") end -- Debian's lua-nginx-redis
  if not ok then return nil end
  return mod
end

-- a connection on which AUTH and SELECT are done: a cosocket one from the pool, or our own
function Redis:_connect()
  local fresh
  local conn
  if transport.in_cosocket_phase() then
    local mod = resty_redis()
    if not mod then return nil, "no resty.redis (Debian: lua-nginx-redis)" end
    local err
    conn, err = mod:new()
    if not conn then return nil, err end
    conn:set_timeout(self.connect_timeout * 1000)
    -- one pool per server, db and TLS settings: a connection checked for one name or none is never
    -- handed to a store that wants another; nor one authenticated with another password (by its hash)
    local pool = string.format("instagram:%s:%d:%d:%s:%s:%s:%s", self.host, self.port, self.db, tostring(self.ssl),
      tostring(self.server_name or self.host), tostring(self.ssl_verify),
      core.hmac_sha256_hex("instagram.store.redis pool", self:_password() or ""):sub(1, 16))
    local ok
    ok, err = conn:connect(self.host, self.port, { pool = pool })
    if not ok then return nil, err end
    fresh = (conn:get_reused_times() or 0) == 0
    if fresh and self.ssl then
      local sock = rawget(conn, "_sock")
      -- reused_session stays nil, never false (see instagram/ngx.lua): in lua-resty-core 0.1.25
      -- (Debian 12) a handshake that fails verification at once raises "assertion failed"
      local called
      called, ok, err = pcall(sock.sslhandshake, sock, nil, self.server_name or self.host, self.ssl_verify)
      if not called then ok, err = nil, "certificate verification failed" end
      if not ok then
        conn:close()
        return nil, "TLS handshake failed: " .. tostring(err)
      end
    end
    conn:set_timeout(self.read_timeout * 1000)
    conn.ig_pooled = true
  else
    if self.conn then return self.conn, true end
    local resp = require "instagram.store.resp"
    local err
    conn, err = resp.connect({
      host = self.host, port = self.port, connect_timeout = self.connect_timeout,
      read_timeout = self.read_timeout, ssl = self.ssl, ssl_verify = self.ssl_verify,
      server_name = self.server_name, ca_file = self.ca_file,
    })
    if not conn then return nil, err end
    fresh = true
    self.conn = conn
  end
  if fresh then
    local password = self:_password()
    if password then
      local ok, err = conn:auth(password)
      if not ok then
        conn:close()
        self.conn = nil
        return nil, "AUTH failed: " .. tostring(err)
      end
    end
    if self.db ~= 0 then
      local ok, err = conn:select(self.db)
      if not ok then
        conn:close()
        self.conn = nil
        return nil, "SELECT failed: " .. tostring(err)
      end
    end
  end
  return conn
end

-- A kept connection that the server closed while it sat idle (Redis restarted, or its `timeout`
-- dropped it): the command never reached a server, so it is sent again on a new connection.
local function lost_idle(err)
  err = tostring(err):lower()
  return err == "closed" or err:find("reset", 1, true) ~= nil or err:find("broken pipe", 1, true) ~= nil
end

-- run(what, fn): fn(conn) -> result, or nil/false, err; the connection goes back to the pool after
function Redis:_run(what, fn)
  local conn, kept = self:_connect()
  if not conn then return self:_fail("connect", kept) end
  local res, rerr = fn(conn)
  if res == nil and kept and lost_idle(rerr) then
    conn:close()
    self.conn = nil
    local err
    conn, err = self:_connect()
    if not conn then return self:_fail("connect", err) end
    res, rerr = fn(conn)
  end
  if res == nil or res == false then
    if conn.ig_pooled then conn:close() end
    return self:_fail(what, rerr)
  end
  if conn.ig_pooled then conn:set_keepalive(self.keepalive * 1000, self.pool_size) end
  return res
end

function Redis:get(key)
  store.check_key("store:get", key)
  local v, err = self:_run("GET", function(c) return c:get(self.prefix .. "v:" .. key) end)
  if v == nil then return nil, err end
  if type(v) ~= "string" then return nil end -- the null bulk
  return v
end

function Redis:set(key, value)
  store.check_key("store:set", key)
  store.check_value("store:set", value)
  local ok, err = self:_run("SET", function(c) return c:set(self.prefix .. "v:" .. key, value) end)
  if not ok then return nil, err end
  return true
end

function Redis:cas(key, old, new)
  store.check_key("store:cas", key)
  if old ~= nil then store.check_value("store:cas", old) end
  store.check_value("store:cas", new)
  local n, err = self:_run("EVAL", function(c)
    return c:eval(CAS, 1, self.prefix .. "v:" .. key, old == nil and "1" or "0", old or "", new)
  end)
  if not n then return nil, err end
  return n == 1
end

function Redis:delete(key)
  store.check_key("store:delete", key)
  local n, err = self:_run("DEL", function(c) return c:del(self.prefix .. "v:" .. key) end)
  if not n then return nil, err end
  return true
end

local function glob_escape(s)
  return (s:gsub("[%*%?%[%]\\]", "\\%0"))
end

function Redis:keys(prefix)
  if type(prefix) ~= "string" then store.raise("store:keys", "prefix must be a string") end
  local base = self.prefix .. "v:"
  local out, seen = {}, {}
  local list, err = self:_run("SCAN", function(c)
    local cursor = "0"
    repeat
      local page, e = c:scan(cursor, "MATCH", glob_escape(base .. prefix) .. "*", "COUNT", 200)
      if type(page) ~= "table" then return nil, e end
      cursor = page[1]
      -- a reply that is not [cursor, [names]] would loop or raise: a store error instead
      if type(cursor) ~= "string" or not cursor:match("^%d+$") or type(page[2]) ~= "table" then
        return nil, "unexpected SCAN reply"
      end
      for _, k in ipairs(page[2]) do
        if type(k) == "string" and k:sub(1, #base) == base and not seen[k] then
          seen[k] = true
          out[#out + 1] = k:sub(#base + 1)
        end
      end
    until cursor == "0"
    return out
  end)
  if not list then return nil, err end
  table.sort(list)
  return list
end

function Redis:lock(key, ttl)
  store.check_key("store:lock", key)
  store.check_ttl("store:lock", ttl)
  local owner = store.owner()
  local res, err = self:_run("SET NX", function(c)
    local r, e = c:set(self.prefix .. "l:" .. key, owner, "NX", "PX", math.max(1, math.floor(ttl * 1000)))
    if r == nil then return nil, e end
    if r == false then return nil, e end
    return { r }
  end)
  if not res then return nil, err end
  if res[1] == "OK" then return owner end
  return false
end

function Redis:unlock(key, owner)
  store.check_key("store:unlock", key)
  if type(owner) ~= "string" then return false end
  local n, err = self:_run("EVAL", function(c) return c:eval(UNLOCK, 1, self.prefix .. "l:" .. key, owner) end)
  if not n then return nil, err end
  return n == 1
end

function Redis:close()
  if self.conn then self.conn:close() end
  self.conn = nil
end

return Redis

-- luacheck: globals ngx
-- Runs INSIDE the nginx "hosts" that spec/ngx/keeper_spec.lua starts (LuaJIT, real cosockets,
-- 1 or 2 workers each): the keeper, the feed and the stores as a site would use them.
-- GET /t/<name>?<args> answers JSON; GET /feed.json is instagram.resty.feed.
local answer = require "answer"

local M = {}
local cfg -- from init_by_lua: {https, ca_file, redis_port, lock_ttl, user_id, redis_timeout}
local cache = {}

function M.configure(c)
  cfg = c
end

local function client()
  if not cache.client then
    cache.client = require("instagram").new({
      app_id = "684477648739411", app_secret = "eb8c7a1b2c3d4e5f60718293a4b5c6d7",
      redirect_uri = "https://localhost/auth/", api = "basic_display", retries = 0,
      -- nginx checks certificate names with X509_check_host (no IP SANs): reach the fake as "localhost"
      endpoints = (function()
        local base = cfg.https:gsub("^(https://)127%.0%.0%.1:", "%1localhost:")
        return { authorize = base .. "/oauth/authorize", token = base .. "/oauth/access_token", graph = base }
      end)(),
      ca_file = cfg.ca_file,
    })
  end
  return cache.client
end

local function store(kind)
  local instagram = require "instagram"
  if kind == "dict" then return instagram.store.shared_dict({ dict = "ig_store" }) end
  return instagram.store.redis({ port = cfg.redis_port, prefix = "ngx:", timeout = cfg.redis_timeout })
end

local function keeper(kind)
  kind = kind or "redis"
  if not cache["keeper:" .. kind] then
    cache["keeper:" .. kind] = require("instagram").keeper.new({
      client = client(), store = store(kind), lock_ttl = cfg.lock_ttl, wait = cfg.lock_ttl * 3,
    })
  end
  return cache["keeper:" .. kind]
end

local function feed()
  if not cache.feed then
    cache.feed = require("instagram").feed.new({ keeper = keeper("redis"), user_id = cfg.user_id })
  end
  return cache.feed
end

local function err_table(err)
  if not err then return nil end
  return { kind = err.kind, message = err.message, code = err.code, token_invalid = err.token_invalid,
    text = tostring(err) }
end

local H = {}

-- adds a token the fake issued `age` seconds ago (the shared dict lives in this host)
function H.add(args)
  local now = ngx.time()
  local age = tonumber(args.age)
  local id, err = keeper(args.store):add({ access_token = args.token, user_id = args.user_id,
    issued_at = now - age, expires_at = now - age + 60 * 86400 })
  return { user_id = id, err = err_table(err) }
end

function H.token(args)
  local t, err = keeper(args.store):token(args.user_id)
  return { pid = ngx.worker.pid(), token = t and t.access_token, issued_at = t and t.issued_at, err = err_table(err) }
end

function H.schedule(args)
  local ok, err = keeper(args.store):schedule(tonumber(args.interval))
  return { ok = ok and true or false, err = err and tostring(err), worker = ngx.worker.id() }
end

function H.feed_get()
  local data, err = feed():get()
  return { pid = ngx.worker.pid(), fetched_at = data and data.fetched_at, stale = data and data.stale,
    n = data and #data.items, err = err_table(err) }
end

-- the store contract on the shared dict, across this worker's calls
function H.dict_contract()
  local s = store("dict")
  local out = {}
  out.absent = s:get("c:absent") == nil
  out.set = s:set("c:1", "one")
  out.get = s:get("c:1")
  out.cas_wrong = s:cas("c:1", "zero", "two")
  out.cas_right = s:cas("c:1", "one", "two")
  out.cas_absent = s:cas("c:2", nil, "x")
  out.cas_absent_again = s:cas("c:2", nil, "y")
  out.keys = s:keys("c:")
  local owner = s:lock("c:L", 0.2)
  out.owner = type(owner) == "string"
  out.second = s:lock("c:L", 5)
  out.foreign_unlock = s:unlock("c:L", "nope")
  ngx.sleep(0.3)
  local next_owner = s:lock("c:L", 5)
  out.lapsed = type(next_owner) == "string"
  out.stale_unlock = s:unlock("c:L", owner)
  out.unlock = s:unlock("c:L", next_owner)
  out.delete = s:delete("c:1")
  out.after_delete = s:get("c:1") == nil
  return out
end

-- the Redis store through cosockets (resty.redis), with its connection pool
function H.redis_contract()
  local s = store("redis")
  local out = {}
  out.set = s:set("rc:1", "one")
  out.get = s:get("rc:1")
  out.cas = s:cas("rc:1", "one", "two")
  out.cas_wrong = s:cas("rc:1", "one", "three")
  out.keys = s:keys("rc:")
  local owner = s:lock("rc:L", 5)
  out.owner = type(owner) == "string"
  out.second = s:lock("rc:L", 5)
  out.unlock = s:unlock("rc:L", owner)
  out.phase_cosocket = require("instagram.transport").in_cosocket_phase() and true or false
  return out
end

-- the Redis store over TLS through cosockets; server_name as given (nginx matches names, not IPs)
function H.redis_tls(args)
  local s = require("instagram").store.redis({ port = tonumber(args.port), ssl = true, server_name = args.name,
    prefix = "tls:", timeout = 1 })
  local ok, err = s:set("k", "v")
  local again, err2 = s:get("k") -- from the pool this time, still TLS
  return { set = ok, get = again, err = err_table(err or err2) }
end

-- a store with the given password, right after one with the right password filled the pool
function H.redis_auth(args)
  local redis = require("instagram").store.redis
  local good = redis({ port = tonumber(args.port), password = args.right, prefix = "auth:" })
  local ok, err = good:set("k", "v")
  local other = redis({ port = tonumber(args.port), password = args.wrong, prefix = "auth:" })
  local v, err2 = other:get("k")
  return { set = ok, err = err_table(err), other_get = v, other_err = err_table(err2) }
end

function M.run(name)
  if name == "feed_json" then
    return require("instagram.resty.feed").serve({ feed = feed() })
  end
  return answer(H, name)
end

return M

-- The webhook receiver for OpenResty / nginx with the Lua module (PLATFORM.md §1.2–§1.4):
--   location = /webhooks {
--       content_by_lua_block {
--           require("instagram.resty.webhook").handle{
--               verify_token = …, secrets = { … }, on_event = function(ev) … end, dedupe = "ig_webhooks",
--           }
--       }
--   }
-- GET answers the verification challenge; POST verifies the signature over the raw body (from
-- memory or from nginx's temp file), answers 200 at once and runs on_event for each new event
-- from ngx.timer.at(0, …), so a slow handler never makes Meta time out and retry.
-- luacheck: globals ngx
local webhook = require "instagram.webhook"

local M = {}

local DEFAULT_MAX_BODY = 4 * 1024 * 1024 -- 1,000 updates fit many times over
local DEFAULT_DEDUPE_TTL = 3 * 86400     -- Meta retries for up to 36 hours
local MAX_HEADERS = 100
local DEFAULT_MAX_TIMERS = 200           -- below lua_max_running_timers' default of 256

local function raise(fname, msg)
  error(fname .. ": " .. msg, 0)
end

local function answer(status, text)
  ngx.status = status
  ngx.header["Content-Type"] = "text/plain; charset=utf-8"
  ngx.header["Cache-Control"] = "no-store"
  ngx.header["X-Content-Type-Options"] = "nosniff"
  ngx.print(text)
  return status
end

-- The request body exactly as received: nginx keeps it in memory, or, when it is larger than
-- client_body_buffer_size, in a temp file that get_body_data() does not see. A file over
-- max_body (a chunked body has no Content-Length to refuse it by) is judged by its size and
-- never read: nil, nil, true.
local function raw_body(max_body)
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body then return body end
  local path = ngx.req.get_body_file()
  if not path then return "" end
  local f, err = io.open(path, "rb")
  if not f then return nil, "cannot open the spooled request body: " .. tostring(err) end
  local size = f:seek("end")
  if size and size > max_body then
    f:close()
    return nil, nil, true
  end
  body = size and f:seek("set") and f:read(size)
  f:close()
  if size == 0 then return "" end
  if not body or #body ~= size then return nil, "cannot read the spooled request body" end
  return body
end

local DEFAULT_DEDUPE_KEYS = 10000 -- the per-worker default: recent keys kept in this worker's memory

-- An instagram.store (file, shared_dict, redis: a host or a whole fleet) as a dedupe store: the
-- first lock on a key wins, and the lock lapses after ttl.
local function store_dedupe(store)
  return {
    add = function(_, key, _, ttl)
      local owner, err = store:lock("webhook:" .. key, ttl)
      if owner then return true end
      if owner == false then return false, "exists" end
      return nil, err
    end,
  }
end

-- A worker's own memory, when no dedupe is given: re-sends reaching the same worker are dropped.
local default_dedupe
local function worker_dedupe()
  if not default_dedupe then
    local cache = assert(require("resty.lrucache").new(DEFAULT_DEDUPE_KEYS))
    default_dedupe = {
      add = function(_, key, _, ttl)
        if cache:get(key) then return false, "exists" end
        cache:set(key, true, ttl)
        return true
      end,
    }
  end
  return default_dedupe
end

-- The dedupe store: a lua_shared_dict name, an instagram.store, anything with add(key, value, ttl)
-- that returns true for a new key and nil/false, "exists" for a known one (ngx.shared.DICT's own
-- semantics); nil for this worker's memory, false for none.
local function dedupe_store(fname, d)
  if d == false then return nil end
  if d == nil then return worker_dedupe() end
  if type(d) == "string" then
    local dict = ngx.shared[d]
    if not dict then raise(fname, "opts.dedupe '" .. d .. "' is not a lua_shared_dict") end
    return dict
  end
  local function method(name)
    local ok, fn = pcall(function() return d[name] end)
    return ok and type(fn) == "function"
  end
  if type(d) == "table" or type(d) == "userdata" then
    if method("add") then return d end
    if method("lock") then return store_dedupe(d) end
  end
  raise(fname, "opts.dedupe must be a lua_shared_dict name, an instagram.store, or a store with add(key, value, ttl)")
end

local function check_opts(opts)
  local fname = "instagram.resty.webhook.handle"
  if type(opts) ~= "table" then raise(fname, "opts must be a table") end
  if type(opts.verify_token) ~= "string" or opts.verify_token == "" then
    raise(fname, "opts.verify_token must be a non-empty string")
  end
  local secrets = opts.secrets
  if type(secrets) == "string" then secrets = { secrets } end
  if type(secrets) ~= "table" then raise(fname, "opts.secrets must be an array of app secrets") end
  local n = 0
  for i, s in ipairs(secrets) do
    if type(s) ~= "string" or s == "" then raise(fname, "opts.secrets[" .. i .. "] must be a non-empty string") end
    n = i
  end
  for k in pairs(secrets) do
    -- a nil in the list ({ os.getenv("NEW"), os.getenv("OLD") }) or a named key would hide a secret
    if type(k) ~= "number" or k < 1 or k > n or k ~= math.floor(k) then
      raise(fname, "opts.secrets must be an array of app secrets without holes (opts.secrets[" .. n + 1 .. "] is nil)")
    end
  end
  if type(opts.on_event) ~= "function" then raise(fname, "opts.on_event must be a function") end
  local max_body = opts.max_body or DEFAULT_MAX_BODY
  if type(max_body) ~= "number" or max_body ~= math.floor(max_body) or max_body < 1 then
    raise(fname, "opts.max_body must be a positive integer (bytes)")
  end
  local ttl = opts.dedupe_ttl or DEFAULT_DEDUPE_TTL
  if type(ttl) ~= "number" or ttl <= 0 then raise(fname, "opts.dedupe_ttl must be a positive number of seconds") end
  local max_timers = opts.max_timers or DEFAULT_MAX_TIMERS
  if type(max_timers) ~= "number" or max_timers ~= math.floor(max_timers) or max_timers < 1 then
    raise(fname, "opts.max_timers must be a positive integer")
  end
  return secrets, max_body, dedupe_store(fname, opts.dedupe), ttl, max_timers
end

-- Runs in the timer: each event not seen before goes to on_event; a failing handler is logged
-- (without the event) and does not stop the others.
local function deliver(_, events, on_event, store, ttl)
  for _, ev in ipairs(events) do
    local fresh = true
    if store then
      local key = webhook.dedupe_key(ev)
      local ok, added, err = pcall(store.add, store, key, true, ttl)
      if ok and not added and err == "exists" then
        fresh = false
      elseif not ok or not added then
        -- a store that cannot answer: deliver rather than drop (at least once)
        ngx.log(ngx.WARN, "instagram webhook: dedupe store failed, delivering anyway: ",
          tostring(ok and err or added))
      end
    end
    if fresh then
      local ok, err = pcall(on_event, ev)
      if not ok then
        ngx.log(ngx.ERR, "instagram webhook: on_event failed for a ", ev.kind, " event: ", tostring(err))
      end
    end
  end
end

local function handle_post(secrets, max_body, on_event, store, ttl, max_timers)
  local length = tonumber(ngx.var.http_content_length or "")
  if length and length > max_body then
    ngx.req.discard_body()
    return answer(413, "payload too large\n")
  end
  local body, err, oversized = raw_body(max_body)
  if oversized then return answer(413, "payload too large\n") end
  if not body then
    ngx.log(ngx.ERR, "instagram webhook: ", err)
    return answer(500, "cannot read the body\n")
  end
  if #body > max_body then return answer(413, "payload too large\n") end

  local ok, verr = webhook.verify(body, ngx.req.get_headers(MAX_HEADERS), secrets)
  if not ok then
    -- logged without the body or any header value: only why
    ngx.log(ngx.WARN, "instagram webhook: refused a delivery (", verr.reason, "): ", verr.message)
    return answer(403, "forbidden\n")
  end

  local it, eerr = webhook.events(body)
  if not it then
    ngx.log(ngx.ERR, "instagram webhook: signed delivery refused: ", eerr.message)
    return answer(400, "bad request\n")
  end
  local events = {}
  for ev in it do events[#events + 1] = ev end
  if #events > 0 then
    -- nginx drops a timer that finds lua_max_running_timers already running (an alert in the
    -- log, the events lost after their 200): without room, no 200, and Meta delivers it again
    local timers = ngx.timer.running_count() + ngx.timer.pending_count()
    if timers >= max_timers then
      ngx.log(ngx.WARN, "instagram webhook: ", timers, " timers running or pending (max_timers ", max_timers,
        "): answering 503 so Meta delivers again later")
      return answer(503, "busy\n")
    end
    local scheduled, terr = ngx.timer.at(0, deliver, events, on_event, store, ttl)
    if not scheduled then
      -- not acknowledged, so Meta delivers it again later
      ngx.log(ngx.ERR, "instagram webhook: cannot schedule the events: ", terr)
      return answer(503, "busy\n")
    end
  end
  return answer(200, "")
end

-- handle(opts) answers the current request and returns the status it answered with.
-- opts: verify_token, secrets (array; the first matching one wins), on_event(event),
-- max_body (bytes, default 4 MiB; nginx's client_max_body_size must allow it),
-- dedupe (a lua_shared_dict name or a store with add(key, value, ttl)), dedupe_ttl (seconds),
-- max_timers (default 200: the worker's timers running or pending above which a delivery gets 503;
-- keep it below lua_max_running_timers).
function M.handle(opts)
  local secrets, max_body, store, ttl, max_timers = check_opts(opts)
  local method = ngx.req.get_method()
  if method == "GET" or method == "HEAD" then
    -- nothing is logged here: nginx would append the request line, verify token included
    local challenge, err = webhook.challenge(ngx.req.get_uri_args(MAX_HEADERS), opts.verify_token)
    if not challenge then
      return answer(err.status or 403, err.status == 400 and "bad request\n" or "forbidden\n")
    end
    return answer(200, challenge)
  elseif method == "POST" then
    return handle_post(secrets, max_body, opts.on_event, store, ttl, max_timers)
  end
  ngx.header["Allow"] = "GET, POST"
  return answer(405, "method not allowed\n")
end

return M

-- Runs INSIDE the nginx that spec/ngx/webhook_spec.lua starts: instagram.resty.webhook behind a
-- few locations, counting what it answered and what reached on_event in a shared dict that
-- GET /state returns as JSON.
-- luacheck: globals ngx
local cjson = require "cjson.safe"
local receiver = require "instagram.resty.webhook"

local M = {}
local cfg -- {verify_token, secret, other}
local state = ngx.shared.wh_state

function M.configure(c)
  cfg = c
end

local function record(ev)
  local id = ev.id or ev.mid or "?"
  if state:incr("event:" .. id, 1, 0) > 1 then state:incr("dups", 1, 0) end
  state:incr("events", 1, 0)
  state:incr("kind:" .. ev.kind, 1, 0)
end

-- a store with ngx.shared's add semantics, kept in this worker
local custom = { keys = {}, adds = 0 }
function custom:add(key, _, _)
  self.adds = self.adds + 1
  state:set("custom_adds", self.adds)
  if self.keys[key] then return false, "exists" end
  self.keys[key] = true
  return true
end

local function opts(extra)
  local o = {
    verify_token = cfg.verify_token, secrets = { cfg.other, cfg.secret }, on_event = record, dedupe = "wh_dedupe",
  }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function count_answer(status)
  state:incr("status:" .. status, 1, 0)
  if status == 200 and ngx.req.get_method() == "POST" then
    -- where the verified body came from: nginx's temp file, or memory
    state:incr(ngx.req.get_body_file() and "verified_from_file" or "verified_from_memory", 1, 0)
  end
end

local L = {}

function L.webhooks()
  count_answer(receiver.handle(opts()))
end

-- answers 503 to every other attempt before the receiver sees it, so the sender must retry
function L.flaky()
  if state:incr("flaky", 1, 0) % 2 == 1 then
    ngx.status = 503
    return ngx.say("try again")
  end
  count_answer(receiver.handle(opts()))
end

function L.slow()
  count_answer(receiver.handle(opts({
    on_event = function(ev)
      ngx.update_time()
      state:set("slow_started", ngx.now())
      ngx.sleep(5)
      record(ev)
      ngx.update_time()
      state:set("slow_finished", ngx.now())
    end,
  })))
end

-- handlers that take a second, and room for 2 of the worker's timers
function L.crowded()
  count_answer(receiver.handle(opts({
    max_timers = 2,
    on_event = function(ev)
      ngx.sleep(1)
      record(ev)
    end,
  })))
end

function L.small()
  count_answer(receiver.handle(opts({ max_body = 1024 })))
end

-- max_body 1024, and how many KiB the Lua heap grew while handle() ran (the collector stopped)
function L.small_heap()
  collectgarbage("collect")
  collectgarbage("stop")
  local before = collectgarbage("count")
  local status = receiver.handle(opts({ max_body = 1024 }))
  state:set("small_heap_kib", collectgarbage("count") - before)
  collectgarbage("restart")
  count_answer(status)
end

function L.custom()
  count_answer(receiver.handle(opts({ dedupe = custom })))
end

-- no dedupe option: the worker's own memory
function L.default()
  local o = opts()
  o.dedupe = nil
  count_answer(receiver.handle(o))
end

-- an instagram.store (here the shared_dict backend, as a fleet would pass the Redis one)
local dedupe_store
function L.store()
  dedupe_store = dedupe_store or require("instagram.store").shared_dict({ dict = "wh_dedupe" })
  count_answer(receiver.handle(opts({ dedupe = dedupe_store })))
end

function L.failing()
  count_answer(receiver.handle(opts({
    on_event = function(ev)
      state:incr("failing_calls", 1, 0)
      if ev.kind == "comment" then error("handler bug") end
      record(ev)
    end,
  })))
end

function L.state()
  local out = {}
  for _, k in ipairs(state:get_keys(0)) do
    if k:sub(1, 6) ~= "event:" then out[k] = state:get(k) end
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(out))
end

-- how many times on_event saw the event with this id or mid
function L.event()
  ngx.say(state:get("event:" .. (ngx.var.arg_id or "")) or 0)
end

function L.reset()
  state:flush_all()
  ngx.shared.wh_dedupe:flush_all()
  ngx.say("ok")
end

function M.run(name)
  local fn = L[name]
  if not fn then return ngx.exit(404) end
  return fn()
end

return M

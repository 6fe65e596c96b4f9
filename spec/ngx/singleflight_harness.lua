-- Runs INSIDE the nginx that spec/ngx/singleflight_spec.lua starts: refresh_if_needed's
-- single-flight across light threads sharing the lua_shared_dict "ig_refresh". GET /sf/<name>?<args>.
-- luacheck: globals ngx
local cjson = require "cjson.safe"
local answer = require "answer"
local harness = require "harness"

local M = {}
local H = {}
local DAY = 86400

-- a long-lived token 55 days old (due for a refresh)
local function due(access_token)
  local now = ngx.time()
  return { access_token = access_token, token_type = "bearer", issued_at = now - 55 * DAY,
    expires_in = 60 * DAY, expires_at = now + 5 * DAY }
end

-- the lock keys in the dict (not the results)
local function locks(dict)
  local out = {}
  for _, k in ipairs(dict:get_keys(0)) do
    if k:match("^instagram:refresh:") and not k:match(":result$") then out[#out + 1] = k end
  end
  return out
end

local function refresh(args, extra, token)
  local ig = harness.client(extra or { retries = 0 })
  local new, second = ig:refresh_if_needed(token or due(args.token), { shared_dict = "ig_refresh" })
  return { ok = new ~= nil, refreshed = new and second or nil, expires_at = new and new.expires_at,
    err = not new and harness.err_table(second) or nil }
end

-- n light threads refresh the same token at once
function H.many(args)
  local threads, out = {}, {}
  for i = 1, tonumber(args.n) or 5 do
    threads[i] = ngx.thread.spawn(refresh, args, { retries = tonumber(args.retries) or 0 })
  end
  for i = 1, #threads do
    local _, r = ngx.thread.wait(threads[i])
    out[i] = r
  end
  return { results = out }
end

-- the lock while a refresh is in flight, for a client with timeout and retries: its ttl at first,
-- and its owner then and `hold` seconds later
function H.ttl(args)
  local dict = ngx.shared.ig_refresh
  local holder = ngx.thread.spawn(refresh, args, { timeout = tonumber(args.timeout), retries = tonumber(args.retries) })
  ngx.sleep(0.2)
  local keys = locks(dict)
  local ttl = keys[1] and dict:ttl(keys[1])
  local owner = keys[1] and dict:get(keys[1])
  ngx.sleep(tonumber(args.hold) or 0)
  local later = keys[1] and dict:get(keys[1])
  local _, r = ngx.thread.wait(holder)
  return { locks = #keys, ttl = ttl, same_owner = owner ~= nil and owner == later, result = r, left = #locks(dict) }
end

-- the holder's lock expires (deleted here) and another owner takes it: the holder must not delete it
function H.owner(args)
  local dict = ngx.shared.ig_refresh
  local holder = ngx.thread.spawn(refresh, args)
  ngx.sleep(0.2)
  local keys = locks(dict)
  if not keys[1] then return { locks = 0 } end
  dict:delete(keys[1])
  dict:add(keys[1], "another-owner", 60)
  local _, r = ngx.thread.wait(holder)
  local after = dict:get(keys[1])
  dict:delete(keys[1])
  return { locks = #keys, result = r, after = after }
end

-- a batch where another call raises while the refresh holds the lock
function H.abandon(args)
  local dict = ngx.shared.ig_refresh
  local ig = harness.client({ retries = 0 })
  local ok, raised = pcall(ig.batch, ig, {
    { "refresh_if_needed", due(args.token), { shared_dict = "ig_refresh" } },
    { "me", 42 },
  })
  local left = #locks(dict)
  local again = refresh(args)
  return { ok = ok, batch_raised = not ok and tostring(raised) or nil, left = left, again = again }
end

-- a waiter in header_filter (no ngx.sleep there) while a holder refreshes in a light thread
function H.phase(args)
  local out = ngx.shared.ig_out
  out:delete("phase")
  local holder = ngx.thread.spawn(refresh, args)
  ngx.sleep(0.2)
  local sub = ngx.location.capture("/hf", { args = { token = args.token } })
  local _, r = ngx.thread.wait(holder)
  return { holder = r, sub_status = sub.status, waiter = cjson.decode(out:get("phase") or "null") }
end

-- GET /sfkill: the holder's request is ended (ngx.exit from a light thread) while its refresh is
-- in flight, so its code after the refresh never runs
function M.killed()
  ngx.shared.ig_refresh:flush_all()
  local args = ngx.req.get_uri_args()
  ngx.thread.spawn(function()
    ngx.sleep(0.3)
    return ngx.exit(204)
  end)
  refresh(args)
  ngx.say("the holder was not killed")
end

-- after /sfkill: a caller whose client waits at most 7 s for the lock (timeout 2, no retries)
function H.after(args)
  local before = #locks(ngx.shared.ig_refresh)
  return { locks_before = before, result = refresh(args, { retries = 0, timeout = 2 }) }
end

-- header_filter_by_lua of /hf
function M.header_filter()
  local args = ngx.req.get_uri_args()
  local ok, r = pcall(refresh, args)
  if not ok then r = { raised = tostring(r) } end
  ngx.shared.ig_out:set("phase", cjson.encode(r))
end

function M.run(name)
  if name ~= "after" then ngx.shared.ig_refresh:flush_all() end
  return answer(H, name)
end

return M

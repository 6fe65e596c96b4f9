-- Webhooks for the example app: the /webhooks location answers Meta's verification GET and takes
-- signed deliveries (instagram.resty.webhook); each new event is kept, newest first, in the
-- ig_webhook_events shared dict under the account it is about, for that account's page.
-- examples/openresty/nginx.conf wires it: IG_WEBHOOK_VERIFY_TOKEN (the token typed into the App
-- Dashboard's webhook settings; without it /webhooks answers 404) and IG_WEBHOOK_SECRETS
-- (comma-separated; default IG_APP_SECRET). The logged-in account's page shows
-- require("webhooks").html(me.user_id): webhooks name an account by its user_id from /me
-- (fields=user_id), not by its id.
local receiver = require "instagram.resty.webhook"
local cjson = require "cjson.safe"

local M = {}

local KEEP = 50
local conf

local function html_escape(s)
  return (tostring(s):gsub("[<>&\"']", {
    ["<"] = "&lt;", [">"] = "&gt;", ["&"] = "&amp;", ['"'] = "&quot;", ["'"] = "&#39;",
  }))
end

-- init_by_lua: read the environment once. Without a verify token, /webhooks answers 404.
function M.init()
  local token = os.getenv("IG_WEBHOOK_VERIFY_TOKEN")
  if not token or token == "" then return end
  local secrets = {}
  for s in (os.getenv("IG_WEBHOOK_SECRETS") or os.getenv("IG_APP_SECRET") or ""):gmatch("[^,%s]+") do
    secrets[#secrets + 1] = s
  end
  conf = { verify_token = token, secrets = secrets }
end

-- Runs from a timer after the delivery was answered: keep what the page shows, not the raw event.
-- Each account's events are numbered; the one KEEP places back is dropped.
local function keep(ev)
  local dict = ngx.shared.ig_webhook_events
  local account = ev.account_id or "?"
  local n = dict:incr("seq:" .. account, 1, 0)
  dict:set("ev:" .. account .. ":" .. n, cjson.encode({
    kind = ev.kind, time_ms = ev.time_ms, from_username = ev.from_username, from_id = ev.from_id,
    text = ev.text, id = ev.id, mid = ev.mid, media_id = ev.media_id,
  }))
  dict:delete("ev:" .. account .. ":" .. (n - KEEP))
end

function M.handle()
  if not conf then return ngx.exit(404) end
  receiver.handle({
    verify_token = conf.verify_token, secrets = conf.secrets, on_event = keep, dedupe = "ig_webhook_dedupe",
  })
end

-- The newest events about account_id (at most 50), newest first.
function M.recent(account_id)
  local dict = ngx.shared.ig_webhook_events
  local account = tostring(account_id)
  local n = dict:get("seq:" .. account) or 0
  local events = {}
  for i = n, math.max(1, n - KEEP + 1), -1 do
    local ev = cjson.decode(dict:get("ev:" .. account .. ":" .. i) or "null")
    if ev then events[#events + 1] = ev end
  end
  return events
end

-- The same as an HTML list, every value escaped.
function M.html(account_id)
  local items = {}
  for _, ev in ipairs(M.recent(account_id)) do
    items[#items + 1] = string.format('<li class="webhook-event"><b>%s</b> %s %s <q>%s</q></li>',
      html_escape(ev.kind), html_escape(os.date("!%Y-%m-%d %H:%M:%S", math.floor((ev.time_ms or 0) / 1000))),
      html_escape(ev.from_username or ev.from_id or ""), html_escape(ev.text or ""))
  end
  if #items == 0 then return '<p class="webhook-events">No webhook events yet.</p>' end
  return '<ul class="webhook-events">' .. table.concat(items) .. "</ul>"
end

return M

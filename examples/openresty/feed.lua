-- The public page of a site: the media grid of the account that logged in, from instagram.feed.
--
--   /feed/         an HTML grid (no token, no API call per view: the feed is cached in the store)
--   /feed.json     instagram.resty.feed: the JSON, with ETag/304 and a max-age within expires_at
--   /feed/refresh  ?id=<media id>: the page's images call it when one fails to load (a CDN 403 once
--                  its oe= expiry has passed), and get fresh URLs (feed:refresh_item)
--
-- The login app hands each long-lived token to remember(token) (after ig:exchange_token); the
-- keeper then keeps it alive: keeper:schedule sweeps hourly from one worker of one host, and a
-- page view refreshes a due token first. The store is Redis when IG_REDIS_HOST is set (a fleet
-- of hosts; IG_REDIS_PORT, IG_REDIS_DB, and the password from IG_REDIS_PASSWORD, read by the
-- store itself and never logged), else the shared dict ig_store (one host).
--
-- examples/openresty/nginx.conf wires it in (the env lines, lua_shared_dict ig_store, init and
-- init_worker, and the three locations), and app.lua's callback calls remember().
local instagram = require "instagram"
local serve = require("instagram.resty.feed").serve

local M = {}

local ACCOUNT_KEY = "site:account" -- which account the public page shows: the last one to log in
local SWEEP_EVERY = 3600
local conf, redis_conf
local keeper, feeds = nil, {}

local function env(name, required)
  local v = os.getenv(name)
  if v == "" then v = nil end
  if required and not v then error("examples/openresty/feed: set " .. name, 0) end
  return v
end

local function html_escape(s)
  return (tostring(s):gsub("[<>&\"']", {
    ["<"] = "&lt;", [">"] = "&gt;", ["&"] = "&amp;", ['"'] = "&quot;", ["'"] = "&#39;",
  }))
end

-- init_by_lua: configuration only; the client and store are made per worker, on first use
function M.init()
  conf = {
    app_id = env("IG_APP_ID", true),
    app_secret = env("IG_APP_SECRET", true),
    redirect_uri = env("IG_REDIRECT_URI", true),
    api = env("IG_API") or "instagram_login",
  }
  local base = env("IG_ENDPOINT_BASE")
  if base then
    conf.endpoints = { authorize = base .. "/oauth/authorize", token = base .. "/oauth/access_token", graph = base }
  end
  if env("IG_REDIS_HOST") then
    redis_conf = {
      host = env("IG_REDIS_HOST"), port = tonumber(env("IG_REDIS_PORT") or "6379"),
      db = tonumber(env("IG_REDIS_DB") or "0"), password_env = "IG_REDIS_PASSWORD", prefix = "site:",
    }
  end
end

local function the_keeper()
  if not keeper then
    local store = redis_conf and instagram.store.redis(redis_conf) or instagram.store.shared_dict({ dict = "ig_store" })
    keeper = instagram.keeper.new({
      client = instagram.new(conf), store = store,
      on_dead = function(user_id, err)
        -- a real site emails the owner here: the token was revoked or the password changed
        ngx.log(ngx.WARN, "instagram account ", user_id, " needs to log in again: ", tostring(err))
      end,
    })
  end
  return keeper
end

-- init_worker_by_lua has no cosockets: the keeper (and its client, whose transport is picked
-- where it is made) is made in a timer, where the cosocket transport is the one picked
function M.init_worker()
  local ok, err = ngx.timer.at(0, function(premature)
    if premature then return end
    local scheduled, serr = the_keeper():schedule(SWEEP_EVERY)
    if not scheduled then ngx.log(ngx.ERR, "feed: cannot schedule the token sweep: ", tostring(serr)) end
  end)
  if not ok then ngx.log(ngx.ERR, "feed: cannot schedule the token sweep: ", tostring(err)) end
end

-- from the login callback, with the long-lived token table
function M.remember(token)
  local k = the_keeper()
  local user_id, err = k:add(token)
  if not user_id then return nil, err end
  return k.store:set(ACCOUNT_KEY, user_id)
end

-- the feed of the account the page shows, or nil, err
local function current_feed()
  local k = the_keeper()
  local user_id, err = k.store:get(ACCOUNT_KEY)
  if err then return nil, err end
  if not user_id then return nil end
  if not feeds[user_id] then
    feeds[user_id] = instagram.feed.new({ keeper = k, user_id = user_id, limit = 12 })
  end
  return feeds[user_id]
end

local function html(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "text/html; charset=utf-8"
  ngx.say('<!DOCTYPE html><html><head><meta charset="utf-8"><title>Instagram</title><style>',
    ".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:8px}",
    ".grid img{width:100%;aspect-ratio:1;object-fit:cover}</style></head><body>", body, "</body></html>")
  return ngx.exit(status)
end

-- when an image fails (its URL expired), ask /feed/refresh for fresh URLs once
local SCRIPT = [[<script>
document.querySelectorAll("img[data-id]").forEach(function (img) {
  img.addEventListener("error", function () {
    if (img.dataset.retried) return;
    img.dataset.retried = "1";
    fetch("/feed/refresh?id=" + encodeURIComponent(img.dataset.id)).then(function (r) {
      return r.ok ? r.json() : null;
    }).then(function (item) {
      var url = item && (item.thumbnail_url || item.media_url);
      if (url) img.src = url;
    });
  });
});
</script>]]

function M.page()
  local feed, err = current_feed()
  if not feed then
    if err then ngx.log(ngx.ERR, "feed: ", tostring(err)) end
    return html(err and 503 or 200, "<p>No account has logged in yet.</p>")
  end
  local data
  data, err = feed:get()
  if not data then
    ngx.log(ngx.ERR, "feed: ", tostring(err))
    return html(503, "<p>The feed is unavailable right now.</p>")
  end
  -- the page lives no longer than the image URLs it holds
  ngx.header["Cache-Control"] = "public, max-age=" .. math.max(0, math.floor(data.expires_at - ngx.time()))
  local cells = {}
  for _, item in ipairs(data.items) do
    -- a video shows its thumbnail; an album its first child
    local url = item.thumbnail_url or item.media_url
    if item.media_type == "CAROUSEL_ALBUM" and item.children and item.children[1] then
      url = item.children[1].thumbnail_url or item.children[1].media_url or url
    end
    if url then
      cells[#cells + 1] = string.format('<a href="%s"><img loading="lazy" src="%s" alt="%s" data-id="%s"></a>',
        html_escape(item.permalink or "#"), html_escape(url), html_escape(item.caption or ""), html_escape(item.id))
    end
  end
  return html(200, '<div class="grid">' .. table.concat(cells) .. "</div>" .. SCRIPT)
end

function M.json()
  local feed, err = current_feed()
  if not feed then
    ngx.status = err and 503 or 404
    return ngx.exit(ngx.status)
  end
  return serve({ feed = feed })
end

function M.refresh()
  local id = ngx.var.arg_id
  local feed = current_feed()
  if not feed or type(id) ~= "string" or not id:match("^%d+$") or #id > 32 then return ngx.exit(400) end
  -- only media of this feed, and each at most once a minute: visitors cannot spend the API quota
  local data = feed:get()
  local known = false
  for _, item in ipairs(data and data.items or {}) do
    known = known or item.id == id
    for _, child in ipairs(item.children or {}) do known = known or child.id == id end
  end
  if not known then return ngx.exit(404) end
  if not ngx.shared.ig_store:add("refresh:" .. id, true, 60) then return ngx.exit(429) end
  local item, err = feed:refresh_item(id)
  if not item then
    ngx.log(ngx.WARN, "feed: refresh_item: ", tostring(err))
    return ngx.exit(502)
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Cache-Control"] = "no-store"
  ngx.say(require("cjson.safe").encode({ id = item.id, media_url = item.media_url,
    thumbnail_url = item.thumbnail_url }))
end

return M

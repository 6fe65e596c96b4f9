-- Instagram login inside nginx (OpenResty / Debian nginx + lua module), with lua-instagram.
--
--   /login   makes the authorize URL, keeps its state in a signed, HttpOnly cookie, redirects
--   /auth/   the redirect_uri: checks the state, exchanges the code, keeps the token server-side
--            (ngx.shared dict ig_sessions, keyed by a random HttpOnly session cookie), then
--            redirects to /me with Referrer-Policy: no-referrer (the URL carried the code)
--   /me      shows the user's id and username
--   /logout  forgets the session
--
-- Every outgoing request uses the "ngx" cosocket transport, which the client picks by itself in a
-- content handler: nothing blocks the worker. Configuration comes from the environment (nginx.conf
-- passes it through with `env`): IG_APP_ID, IG_APP_SECRET, IG_REDIRECT_URI (must match the app's,
-- byte for byte), IG_API (basic_display | instagram_login), IG_COOKIE_SECRET (≥ 32 bytes; made up
-- at start when unset, which logs everyone out on restart), and, for a local fake server only,
-- IG_ENDPOINT_BASE (https://host:port replacing all three Instagram hosts).
local instagram = require "instagram"
local core = require "instagram.core"
local cjson = require "cjson.safe"

local M = {}

local STATE_COOKIE, SESSION_COOKIE = "ig_state", "ig_sid"
local STATE_TTL = 600
local conf, cookie_secret, secure, client

local function html_escape(s)
  return (tostring(s):gsub("[<>&\"']", {
    ["<"] = "&lt;", [">"] = "&gt;", ["&"] = "&amp;", ['"'] = "&quot;", ["'"] = "&#39;",
  }))
end

-- init_by_lua (the master, before the workers fork): read the environment once.
function M.init()
  local function env(name, required)
    local v = os.getenv(name)
    if v == "" then v = nil end
    if required and not v then error("examples/openresty: set " .. name, 0) end
    return v
  end
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
  cookie_secret = env("IG_COOKIE_SECRET") or assert(core.random_state(32))
  if #cookie_secret < 32 then error("examples/openresty: IG_COOKIE_SECRET must be at least 32 bytes", 0) end
  secure = conf.redirect_uri:match("^https://") ~= nil
  -- the client itself is made on the first request, in a content handler: that is where the
  -- transport is picked, and there it is "ngx" (init_by_lua has no cosockets and would get libcurl)
end

local function ig()
  if not client then client = instagram.new(conf) end
  return client
end

local function cookie(name, value, path, max_age)
  local parts = { name .. "=" .. value, "Path=" .. path, "HttpOnly", "SameSite=Lax" }
  if max_age then parts[#parts + 1] = "Max-Age=" .. max_age end
  if secure then parts[#parts + 1] = "Secure" end
  return table.concat(parts, "; ")
end

local function set_cookies(list)
  ngx.header["Set-Cookie"] = list
end

local function mac(...)
  return core.hmac_sha256_hex(cookie_secret, table.concat({ ... }, "|"))
end

-- state cookie: <state>.<expires>.<hmac>
local function state_cookie_value(state)
  local expires = tostring(ngx.time() + STATE_TTL)
  return state .. "." .. expires .. "." .. mac("state", state, expires)
end

local function state_from_cookie()
  local value = ngx.var["cookie_" .. STATE_COOKIE]
  if not value then return nil end
  local state, expires, sig = value:match("^([%w_%-]+)%.(%d+)%.(%x+)$")
  if not state or tonumber(expires) < ngx.time() then return nil end
  if not core.constant_time_equal(sig, mac("state", state, expires)) then return nil end
  return state
end

local function page(status, title, body)
  ngx.status = status
  ngx.header["Content-Type"] = "text/html; charset=utf-8"
  ngx.header["Cache-Control"] = "no-store"
  ngx.say("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>", html_escape(title),
    "</title></head><body><h1>", html_escape(title), "</h1>", body, "</body></html>")
  return ngx.exit(status)
end

function M.index()
  return page(200, "lua-instagram on nginx", '<p><a href="/login">Log in with Instagram</a></p>')
end

function M.login()
  local url, state = ig():authorize_url()
  set_cookies({ cookie(STATE_COOKIE, state_cookie_value(state), "/auth/", STATE_TTL) })
  ngx.header["Cache-Control"] = "no-store"
  return ngx.redirect(url, 302)
end

local ERROR_STATUS = { denied = 403, callback = 400, state = 400 }

function M.callback()
  -- the URL of this request holds the code: no Referer with it, from here or from the next page
  ngx.header["Referrer-Policy"] = "no-referrer"
  local expected = state_from_cookie()
  local clear_state = cookie(STATE_COOKIE, "", "/auth/", 0)
  if not expected then
    set_cookies({ clear_state })
    return page(400, "Login failed", "<p>The login took too long or did not start here. "
      .. '<a href="/login">Try again</a>.</p>')
  end
  local client_ = ig()
  local code, err = client_:parse_callback(ngx.req.get_uri_args(), expected)
  local token
  if code then token, err = client_:exchange_code(code) end
  if not token then
    set_cookies({ clear_state })
    ngx.log(ngx.WARN, "instagram login failed: ", tostring(err)) -- error objects never hold secrets
    return page(ERROR_STATUS[err.kind] or 502, "Login failed",
      "<p>" .. html_escape(err.kind == "denied" and "You cancelled the login." or tostring(err)) .. "</p>"
      .. '<p><a href="/login">Try again</a></p>')
  end
  local sid = assert(core.random_state(32))
  local ttl = math.min(token.expires_in or 3600, 60 * 24 * 3600)
  local ok, serr = ngx.shared.ig_sessions:set(sid, cjson.encode(token), ttl)
  if not ok then
    set_cookies({ clear_state })
    return page(500, "Login failed", "<p>Could not keep the session: " .. html_escape(serr) .. "</p>")
  end
  set_cookies({ clear_state, cookie(SESSION_COOKIE, sid, "/", ttl) })
  ngx.header["Cache-Control"] = "no-store"
  return ngx.redirect("/me", 302)
end

local function session()
  local sid = ngx.var["cookie_" .. SESSION_COOKIE]
  local text = sid and sid:match("^[%w_%-]+$") and ngx.shared.ig_sessions:get(sid)
  return sid, text and cjson.decode(text)
end

function M.me()
  local sid, token = session()
  if not token then return ngx.redirect("/login", 302) end
  local user, err = ig():me(token, { "id", "username" })
  if not user then
    if err.token_invalid then
      ngx.shared.ig_sessions:delete(sid)
      return ngx.redirect("/login", 302)
    end
    return page(502, "Instagram error", "<p>" .. html_escape(tostring(err)) .. "</p>")
  end
  return page(200, "Logged in", string.format(
    '<p>id: <code id="id">%s</code></p><p>username: <code id="username">%s</code></p>'
      .. '<p><a href="/logout">Log out</a></p>', html_escape(user.id), html_escape(user.username or "")))
end

function M.logout()
  local sid = session()
  if sid then ngx.shared.ig_sessions:delete(sid) end
  set_cookies({ cookie(SESSION_COOKIE, "", "/", 0) })
  return ngx.redirect("/", 302)
end

return M

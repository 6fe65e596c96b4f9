-- Instagram login inside nginx (OpenResty / Debian nginx + lua module), with lua-instagram.
--
--   GET  /                      start page: "Log in with Instagram", or a link to /me
--   GET  /login                 makes the authorize URL, keeps its state in a signed, HttpOnly
--                               cookie (Path=/auth/, 10 minutes), redirects to Instagram
--   GET  /auth/                 the redirect_uri: checks the state, exchanges the code for a
--                               short-lived token and that for a long-lived one (60 days), keeps it
--                               server-side (lua_shared_dict ig_sessions, keyed by a random
--                               HttpOnly session cookie), then redirects to /me
--   GET  /me                    profile picture, username and a media grid; refreshes the token
--                               when it gets old (refresh_if_needed)
--   POST /logout                forgets the session (with a CSRF token from the /me form)
--   POST /deauthorize           Meta's deauthorize callback: signed_request verified, the user's
--                               sessions revoked
--   POST /data-deletion         Meta's data-deletion callback: signed_request verified, sessions
--                               revoked, answered with a status URL and a confirmation code
--   GET  /data-deletion/status  the page behind that status URL
--
-- Every response is Cache-Control: no-store and Referrer-Policy: no-referrer: a page or a redirect
-- that depends on the session must never be replayed from the browser's cache (Back after Log out
-- would otherwise re-run a cached redirect and start OAuth again).
--
-- Logging: while nginx handles a request it appends that request's line, query included, to every
-- error.log line. The callback's query holds the authorization code and the state, so this app
-- never logs from inside a request: log() hands the line to a zero-delay timer, which has no
-- request line (and nginx.conf turns lua_socket_log_errors off, for the same reason). The messages
-- are the library's error objects, which never hold a code, token or secret.
--
-- Every outgoing request uses the "ngx" cosocket transport: nothing blocks the worker.
-- Configuration comes from the environment (nginx.conf passes it through with `env`), read and
-- checked once in init_by_lua, so a bad value stops nginx at start instead of failing the first
-- click:
--   IG_APP_ID, IG_APP_SECRET   the app's credentials
--   IG_REDIRECT_URI            must match the app's, byte for byte; https:// only
--   IG_API                     instagram_login (default) | basic_display
--   IG_COOKIE_SECRET           >= 32 bytes; made up at start when unset, which logs everyone out
--                              on restart (set it when several nginx instances serve the app)
--   IG_TIMEOUT                 seconds per Instagram request (default 5: a person is waiting)
--   IG_ENDPOINT_BASE           a local fake server only: https://host:port replacing all three
--                              Instagram hosts (make example sets it)
local instagram = require "instagram"
local core = require "instagram.core"
local cjson = require "cjson.safe"

local M = {}

local STATE_COOKIE, SESSION_COOKIE = "ig_state", "ig_sid"
local STATE_TTL = 600
local MAX_SESSION_TTL = 60 * 24 * 3600
local DELETION_TTL = 90 * 24 * 3600
local SECURITY_HEADERS = {
  ["Cache-Control"] = "no-store",
  ["Referrer-Policy"] = "no-referrer",
  ["X-Content-Type-Options"] = "nosniff",
  ["X-Frame-Options"] = "DENY",
  ["Content-Security-Policy"] = "default-src 'none'; script-src 'self'; img-src https:; style-src 'unsafe-inline'; "
    .. "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}
local USER_FIELDS = {
  instagram_login = { "id", "user_id", "username", "name", "profile_picture_url", "media_count" },
  basic_display = { "id", "username", "media_count" },
}
local MEDIA_FIELDS = { "id", "media_type", "media_url", "thumbnail_url", "permalink", "caption" }

local conf, cookie_secret, client, public_base

---------------------------------------------------------------------------
-- start-up (init_by_lua, in the master before the workers fork)

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
    timeout = tonumber(env("IG_TIMEOUT") or "5"),
    connect_timeout = 3,
    -- a person is waiting for the page: fail at once and let them reload, rather than sleep
    -- through backoffs (the code exchange is never retried anyway)
    retries = 0,
    -- cosockets in every request; forced, so that making the client here, before the fork,
    -- opens nothing and shares nothing between workers
    transport = "ngx",
  }
  if not conf.timeout or conf.timeout <= 0 then
    error("examples/openresty: IG_TIMEOUT must be a positive number of seconds", 0)
  end
  local base = env("IG_ENDPOINT_BASE")
  if base then
    conf.endpoints = { authorize = base .. "/oauth/authorize", token = base .. "/oauth/access_token", graph = base }
  end
  cookie_secret = env("IG_COOKIE_SECRET") or assert(core.random_state(32))
  if #cookie_secret < 32 then error("examples/openresty: IG_COOKIE_SECRET must be at least 32 bytes", 0) end
  -- raises on any bad setting (an http:// redirect URI, an unknown IG_API, ...): nginx does not start
  client = instagram.new(conf)
  -- the data-deletion status URL lives on the same site as the redirect URI
  public_base = conf.redirect_uri:match("^(https://[^/?#]+)")
end

---------------------------------------------------------------------------
-- helpers

-- error.log without the request line (see the header): a zero-delay timer has none
local function log(level, ...)
  local msg = table.concat({ ... }):gsub("%c", " ")
  if #msg > 2000 then msg = msg:sub(1, 2000) .. "..." end
  local ok = ngx.timer.at(0, function() ngx.log(level, msg) end)
  return ok
end

local function html_escape(s)
  return (tostring(s):gsub("[<>&\"']", {
    ["<"] = "&lt;", [">"] = "&gt;", ["&"] = "&amp;", ['"'] = "&quot;", ["'"] = "&#39;",
  }))
end

local function protect()
  for k, v in pairs(SECURITY_HEADERS) do ngx.header[k] = v end
end

-- the redirect_uri is https:// (instagram.new insists), so every cookie is Secure
local function cookie(name, value, path, max_age)
  return table.concat({ name .. "=" .. value, "Path=" .. path, "Max-Age=" .. max_age,
    "HttpOnly", "Secure", "SameSite=Lax" }, "; ")
end

local function mac(...)
  return core.hmac_sha256_hex(cookie_secret, table.concat({ ... }, "|"))
end

local function redirect(to, status)
  return ngx.redirect(to, status or 303)
end

local STYLE = "body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}"
  .. ".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(10rem,1fr));gap:.5rem;padding:0;"
  .. "list-style:none}.grid img{width:100%;aspect-ratio:1;object-fit:cover;background:#eee}"
  .. ".avatar{width:4rem;height:4rem;border-radius:50%;vertical-align:middle;background:#eee}"
  .. "button,.button{font:inherit;padding:.4rem .9rem;cursor:pointer}"

local function page(status, title, body)
  ngx.status = status
  ngx.header["Content-Type"] = "text/html; charset=utf-8"
  ngx.say('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    "<title>", html_escape(title), '</title><script src="/app.js"></script><style>', STYLE,
    "</style></head><body><h1>",
    html_escape(title), "</h1>", body, "</body></html>")
  return ngx.exit(status)
end

local TRY_AGAIN = '<p><a class="button" href="/login">Try again</a> or go to the <a href="/">start page</a>.</p>'

local function login_failed(status, text)
  return page(status, "Login failed", "<p>" .. html_escape(text) .. "</p>" .. TRY_AGAIN)
end

-- The status of a page that failed because of Instagram: 504 when it did not answer in time,
-- 502 for everything else it got wrong. The reason goes to the log only.
local function upstream_failed(where, err)
  log(ngx.WARN, where, ": ", tostring(err))
  local timeout = err.kind == "timeout"
  return page(timeout and 504 or 502, "Instagram is not answering",
    "<p>" .. (timeout and "Instagram took too long to answer." or "Instagram could not be reached "
      .. "or answered with an error.") .. " Please try again in a minute.</p>"
      .. '<p><a href="/">Start page</a></p>')
end

---------------------------------------------------------------------------
-- the state cookie: <state>.<expires>.<hmac>

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

---------------------------------------------------------------------------
-- sessions: "s:<sid>" -> {token = <long-lived token table>, user_id, created};
-- "revoked:<user_id>" -> the user deauthorized the app or asked for deletion at that point.
-- Both points come from one counter shared by the workers, not from the clock: a login in the
-- same second as a revocation is after it, and keeps its session.

local function sessions() return ngx.shared.ig_sessions end

-- (it starts from the clock in ms, so that it still grows if the dict ever evicts it)
local function now_seq() return assert(sessions():incr("seq", 1, math.floor(ngx.now() * 1000))) end

local function session()
  local sid = ngx.var["cookie_" .. SESSION_COOKIE]
  if not sid or #sid > 64 or not sid:match("^[%w_%-]+$") then return nil end
  local record = cjson.decode(sessions():get("s:" .. sid) or "null")
  if type(record) ~= "table" or type(record.token) ~= "table" then return nil end
  local revoked = sessions():get("revoked:" .. tostring(record.user_id))
  if revoked and revoked >= (tonumber(record.created) or 0) then
    sessions():delete("s:" .. sid)
    return nil
  end
  return sid, record
end

local function save_session(sid, record)
  -- a token of unknown expiry gets the longest session; /me ends it once Instagram says it is dead
  local expires_at = tonumber(record.token.expires_at) or ngx.time() + MAX_SESSION_TTL
  local ttl = math.max(1, math.min(expires_at - ngx.time(), MAX_SESSION_TTL))
  local ok, err = sessions():set("s:" .. sid, cjson.encode(record), ttl)
  return ok and ttl, err
end

local function logout_form(sid)
  return '<form method="post" action="/logout"><input type="hidden" name="csrf" value="'
    .. mac("logout", sid) .. '"><button type="submit">Log out</button></form>'
end

---------------------------------------------------------------------------
-- pages

function M.index()
  protect()
  local sid = session()
  if sid then
    return page(200, "lua-instagram on nginx", '<p>You are logged in. <a href="/me">See your profile</a>.</p>'
      .. logout_form(sid))
  end
  return page(200, "lua-instagram on nginx", "<p>This demo logs you in with your Instagram account and "
    .. "shows your profile and your latest posts. Your access token stays on the server.</p>"
    .. '<p><a class="button" id="login" href="/login">Log in with Instagram</a></p>')
end

function M.login()
  protect()
  local url, state = client:authorize_url()
  ngx.header["Set-Cookie"] = cookie(STATE_COOKIE, state_cookie_value(state), "/auth/", STATE_TTL)
  return redirect(url, 302)
end

-- Instagram's own error values on the redirect (RFC 6749 4.1.2.1) that are its fault
local INSTAGRAM_SIDE = { server_error = true, temporarily_unavailable = true }

function M.callback()
  protect()
  local expected = state_from_cookie()
  ngx.header["Set-Cookie"] = cookie(STATE_COOKIE, "", "/auth/", 0) -- single-use, whatever happens
  if not expected then
    -- a reload of this URL after a login that worked: the user is in, say so
    if session() then return redirect("/me") end
    log(ngx.WARN, "login callback without a valid state cookie")
    return login_failed(400, "This login did not start here, or took more than 10 minutes.")
  end
  local args = ngx.req.get_uri_args()
  local code, err = client:parse_callback(args, expected)
  if not code then
    log(ngx.WARN, "login callback refused: ", tostring(err))
    if err.kind == "denied" then
      -- the state matched (parse_callback checks it first): Instagram's own error value
      local what = args.error
      if what == "access_denied" then
        return login_failed(403, "You cancelled the login. Nothing was shared with this site.")
      end
      if INSTAGRAM_SIDE[what] then
        return page(502, "Instagram is not answering",
          "<p>Instagram could not complete the login right now. Please try again in a minute.</p>" .. TRY_AGAIN)
      end
      return login_failed(400, "Instagram refused the login request.")
    end
    if err.kind == "state" then
      return login_failed(400, "This login did not start here, or took more than 10 minutes.")
    end
    return login_failed(400, "The login link is incomplete or damaged.")
  end

  local short
  short, err = client:exchange_code(code)
  if not short then
    if err.kind == "api" and err.status and err.status >= 400 and err.status < 500 and not err.rate_limited then
      -- used, expired or not ours: the browser brought a bad code
      log(ngx.WARN, "code exchange refused: ", tostring(err))
      return login_failed(400, "This login link was already used or has expired.")
    end
    return upstream_failed("code exchange", err)
  end
  -- a short-lived token lasts one hour; the long-lived one 60 days, refreshed from /me
  local long
  long, err = client:exchange_token(short)
  if not long then return upstream_failed("long-lived token exchange", err) end
  long.user_id = long.user_id or short.user_id -- the long-lived exchange does not repeat it
  -- the public feed page (feed.lua) shows the account that logged in last; its keeper keeps the token alive
  local kept, ferr = require("feed").remember(long)
  if not kept then log(ngx.ERR, "feed: could not keep the token: ", tostring(ferr)) end

  -- a new login replaces the browser's old session, if any
  local old = session()
  if old then sessions():delete("s:" .. old) end
  local sid = assert(core.random_state(32))
  local ttl
  ttl, err = save_session(sid, { token = long, user_id = short.user_id, created = now_seq() })
  if not ttl then
    log(ngx.ERR, "could not keep the session: ", tostring(err))
    return page(503, "Login failed", "<p>The server is too busy to keep your session.</p>" .. TRY_AGAIN)
  end
  ngx.header["Set-Cookie"] = {
    cookie(STATE_COOKIE, "", "/auth/", 0),
    cookie(SESSION_COOKIE, sid, "/", ttl),
  }
  return redirect("/me")
end

local function forget(sid)
  sessions():delete("s:" .. sid)
  ngx.header["Set-Cookie"] = cookie(SESSION_COOKIE, "", "/", 0)
end

function M.me()
  protect()
  local sid, record = session()
  -- anonymous: the start page, never a silent new login
  if not sid then return redirect("/") end

  local token, refreshed = client:refresh_if_needed(record.token, { shared_dict = "ig_refresh" })
  if not token then
    local err = refreshed
    if err.token_invalid then
      forget(sid)
      return redirect("/")
    end
    return upstream_failed("token refresh", err)
  end
  if refreshed then
    record.token = token
    save_session(sid, record)
  end

  local user, err = client:me(token, USER_FIELDS[client.api])
  local media
  if user then media, err = client:media(token, { fields = MEDIA_FIELDS, limit = 12 }) end
  if err then
    if err.token_invalid then
      forget(sid)
      return redirect("/")
    end
    return upstream_failed("profile", err)
  end

  local out = { '<p id="profile">' }
  if user.profile_picture_url then
    out[#out + 1] = '<img class="avatar" id="avatar" alt="" src="' .. html_escape(user.profile_picture_url) .. '"> '
  end
  out[#out + 1] = '<strong id="username">' .. html_escape(user.username or "") .. "</strong>"
  if user.name then out[#out + 1] = ' <span id="name">' .. html_escape(user.name) .. "</span>" end
  out[#out + 1] = '</p><ul class="grid" id="media">'
  for _, m in ipairs(media.data or {}) do
    local src = m.media_type == "VIDEO" and m.thumbnail_url or m.media_url
    out[#out + 1] = string.format('<li><a href="%s"><img alt="%s" src="%s"></a></li>',
      html_escape(m.permalink or "#"), html_escape(m.caption or m.media_type or ""), html_escape(src or ""))
  end
  out[#out + 1] = "</ul>"
  if #(media.data or {}) == 0 then out[#out + 1] = "<p>No posts yet.</p>" end
  -- webhook events carry the account's user_id (entry.id), not the app-scoped id
  out[#out + 1] = require("webhooks").html(user.user_id or user.id)
  out[#out + 1] = logout_form(sid)
  return page(200, "Logged in", table.concat(out))
end

function M.logout()
  protect()
  if ngx.req.get_method() ~= "POST" then
    ngx.header["Allow"] = "POST"
    return page(405, "Log out", '<p>Use the Log out button on <a href="/me">your page</a>.</p>')
  end
  local sid = session()
  if sid then
    ngx.req.read_body()
    local csrf = ngx.req.get_post_args(10).csrf
    if type(csrf) ~= "string" or not core.constant_time_equal(csrf, mac("logout", sid)) then
      return page(400, "Log out failed", '<p>The form was too old or did not come from this site. '
        .. '<a href="/me">Back to your page</a>.</p>')
    end
    forget(sid)
  else
    ngx.header["Set-Cookie"] = cookie(SESSION_COOKIE, "", "/", 0)
  end
  -- and ask the browser to drop this site's cached pages (see also /app.js)
  ngx.header["Clear-Site-Data"] = '"cache"'
  return redirect("/")
end

---------------------------------------------------------------------------
-- Meta's callbacks: POST signed_request=<sig>.<payload>, HMAC-SHA256 with the app secret

local function json_answer(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.print(body)
  return ngx.exit(status)
end

local function signed_request(what)
  protect()
  if ngx.req.get_method() ~= "POST" then
    ngx.header["Allow"] = "POST"
    return nil, json_answer(405, '{"error":"POST only"}')
  end
  ngx.req.read_body()
  local sr = ngx.req.get_post_args(10).signed_request
  local data, err
  if type(sr) == "string" then
    data, err = instagram.parse_signed_request(sr, conf.app_secret)
  end
  if not data or not data.user_id then
    log(ngx.WARN, what, ": refused: ", err and tostring(err) or "no signed_request with a user_id")
    return nil, json_answer(400, '{"error":"invalid signed_request"}')
  end
  -- every session of this user made before now is dead
  sessions():set("revoked:" .. data.user_id, now_seq(), MAX_SESSION_TTL)
  return data
end

function M.deauthorize()
  local data = signed_request("deauthorize")
  if not data then return end
  log(ngx.WARN, "deauthorize: user ", data.user_id, " removed the app; sessions revoked")
  return json_answer(200, '{"ok":true}')
end

function M.data_deletion()
  local data = signed_request("data deletion")
  if not data then return end
  -- this app keeps nothing but sessions, which are revoked: the deletion is done at once
  local code = assert(core.random_state(24)):gsub("[^%w]", "")
  sessions():set("deletion:" .. code, ngx.time(), DELETION_TTL)
  log(ngx.WARN, "data deletion: user ", data.user_id, ", confirmation ", code)
  return json_answer(200, instagram.deletion_response(public_base .. "/data-deletion/status?id=" .. code, code))
end

function M.deletion_status()
  protect()
  local code = ngx.var.arg_id
  local done = code and #code <= 64 and code:match("^%w+$") and sessions():get("deletion:" .. code)
  if not done then
    return page(404, "Data deletion", "<p>There is no deletion request with this confirmation code.</p>")
  end
  return page(200, "Data deletion", '<p>Request <code id="code">' .. html_escape(code)
    .. '</code>: <strong id="status">completed</strong> on ' .. html_escape(os.date("!%Y-%m-%d %H:%M UTC", done))
    .. ".</p><p>This site kept only your login session, and it has been deleted.</p>")
end

-- A page restored from the back/forward cache (Back after Log out) shows what the server said
-- then: reload it, so it shows what the server says now. (Chromium keeps even no-store pages
-- there, and ignores Clear-Site-Data for it.)
local SCRIPT = 'addEventListener("pageshow", function (e) { if (e.persisted) location.reload(); });\n'

function M.script()
  protect()
  ngx.header["Content-Type"] = "text/javascript; charset=utf-8"
  ngx.print(SCRIPT)
end

function M.not_found()
  protect()
  return page(404, "Not found", '<p><a href="/">Start page</a></p>')
end

-- Runs a handler; a Lua error becomes a plain 500 page, and its message goes to the log without
-- the request line (nginx would otherwise log it with the callback's code).
function M.run(name)
  local ok, err = xpcall(M[name], debug.traceback)
  if not ok then
    log(ngx.ERR, name, ": ", tostring(err))
    if ngx.headers_sent then return ngx.exit(ngx.ERROR) end
    protect()
    return page(500, "Something went wrong", '<p>Please try again. <a href="/">Start page</a></p>')
  end
end

return M

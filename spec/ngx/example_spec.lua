-- examples/openresty (the login app) in a real nginx against the fake Instagram: the browser's
-- part is played here with lua-socket, the server's part runs on cosockets inside nginx.
-- spec/browser/example_browser.py (make test-browser) drives the same app in Chromium.
local Fake = require "spec.support.fake"
local Nginx = require "spec.support.nginx"
local core = require "instagram.core"
local cjson = require "cjson"

local APP_ID, SECRET = "990602627938098", "a1b2c3d4e5f60718293a4b5c6d7e8f90" -- the fake's instagram_login app
local COOKIE_SECRET = string.rep("k", 40)
local USER_ID = "27640875392278831" -- biz, the user that app's logins authorize

-- socket.http joins repeated Set-Cookie headers with ", "; our cookie values and attributes
-- hold no commas, so split there and keep name=value of each
local function cookies(headers)
  local out = {}
  for one in (headers["set-cookie"] or ""):gmatch("[^,]+") do
    local name, value = one:match("^%s*([^=;]+)=([^;]*)")
    if name then out[name] = { value = value, raw = one } end
  end
  return out
end

local function assert_cookie_flags(c, path)
  assert.matches("; HttpOnly", c.raw, 1, true)
  assert.matches("; Secure", c.raw, 1, true)
  assert.matches("; SameSite=Lax", c.raw, 1, true)
  assert.matches("; Path=" .. path .. ";", c.raw .. ";", 1, true)
end

-- every answer of the app: never cached, never a Referer
local function assert_private(headers)
  assert.equal("no-store", headers["cache-control"])
  assert.equal("no-referrer", headers["referrer-policy"])
end

-- Meta's signed_request: base64url(HMAC-SHA256(secret, payload)) "." base64url(payload)
local function signed_request(payload, secret)
  local body = core.base64url_encode(cjson.encode(payload))
  local mac = core.hmac_sha256_hex(secret, body):gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
  return core.base64url_encode(mac) .. "." .. body
end

local function start_app(f, env)
  local root = Nginx.repo_root()
  local template = assert(Nginx.read_file(root .. "/examples/openresty/nginx.conf"))
  local all = {
    IG_APP_ID = APP_ID, IG_APP_SECRET = SECRET, IG_REDIRECT_URI = "https://localhost/auth/",
    IG_COOKIE_SECRET = COOKIE_SECRET, IG_TIMEOUT = "1", IG_WEBHOOK_VERIFY_TOKEN = "example-verify-token",
    -- nginx verifies names, not IP SANs: the fake as "localhost"
    IG_ENDPOINT_BASE = (f.https:gsub("127%.0%.0%.1", "localhost")),
  }
  for k, v in pairs(env or {}) do all[k] = v end
  return Nginx.launch(template, { ROOT = root, CA_FILE = f.ca_file, RESOLVER = "127.0.0.1" }, all,
    { name = "example" })
end

describe("examples/openresty login app #nginx", function()
  local f, server
  local seen -- codes, states, tokens and session ids met so far: none may reach a log

  setup(function()
    f = Fake.start({ quiet = true })
    local err
    server, err = start_app(f)
    if not server then
      f:stop()
      error(err, 0)
    end
    seen = { SECRET, COOKIE_SECRET }
  end)

  teardown(function()
    if server then server:stop() end
    if f then f:stop() end
  end)

  before_each(function() f:reset() end)

  -- the app's logs hold none of them (nginx appends the request line, and so the callback's
  -- code and state, to whatever is logged while /auth/ runs)
  after_each(function()
    for _, e in ipairs(f:log()) do
      for _, t in ipairs({ e.args or {}, e.form or {} }) do
        for _, key in ipairs({ "code", "state", "access_token" }) do
          if type(t[key]) == "string" then seen[#seen + 1] = t[key] end
        end
      end
    end
    -- the timer that writes a log line runs right after the request
    require("socket").sleep(0.05)
    local text = (Nginx.read_file(server.prefix .. "/error.log") or "") .. server:log_tail()
    for _, s in ipairs(seen) do
      assert.is_nil(text:find(s, 1, true), "a log holds a secret or code: " .. s:sub(1, 6) .. "...")
    end
    assert.is_nil(text:find("code=", 1, true))
  end)

  local function get(path, cookie)
    local status, headers, body = server:get(path, cookie and { cookie = cookie } or nil)
    assert_private(headers)
    return status, headers, body
  end

  local function post(path, form, cookie)
    local status, headers, body = Nginx.http("POST", server.base .. path, form,
      { ["content-type"] = "application/x-www-form-urlencoded", cookie = cookie }, 10)
    assert(status, headers)
    return status, headers, body
  end

  -- /login -> the state cookie, and the authorize URL's state
  local function start_login()
    local status, headers = get("/login")
    assert.equal(302, status)
    local location = headers.location
    assert.matches("^https://localhost:%d+/oauth/authorize%?", location)
    assert.matches("client_id=" .. APP_ID, location, 1, true)
    local state_cookie = cookies(headers).ig_state
    assert.is_table(state_cookie)
    assert_cookie_flags(state_cookie, "/auth/")
    seen[#seen + 1] = state_cookie.value
    return state_cookie.value, location
  end

  -- the whole approval at the fake (over its plain-http listener, as a browser would follow the
  -- redirect) -> the state cookie and the callback query
  local function login()
    local state, location = start_login()
    local status, headers = Nginx.http("GET", f.http .. location:match("^https://[^/]+(/.*)$"))
    assert.equal(302, status)
    local callback = headers.location:gsub("#.*$", "")
    assert.matches("^https://localhost/auth/%?code=", callback)
    return state, callback:match("%?(.*)$")
  end

  -- a finished login: the session cookie
  local function session()
    local state, query = login()
    local status, headers = get("/auth/?" .. query, "ig_state=" .. state)
    assert.equal(303, status, server:log_tail(5))
    local sid = cookies(headers).ig_sid.value
    seen[#seen + 1] = sid
    return "ig_sid=" .. sid, query
  end

  it("logs in: a long-lived token, then /me shows the picture, the username and a media grid", function()
    local state, query = login()
    local status, headers = get("/auth/?" .. query, "ig_state=" .. state)
    assert.equal(303, status, server:log_tail(5))
    assert.matches("/me$", headers.location)
    local jar = cookies(headers)
    assert.equal("", jar.ig_state.value) -- the state is single-use
    assert.matches("Max%-Age=0", jar.ig_state.raw)
    assert_cookie_flags(jar.ig_sid, "/")
    -- the session lasts as long as the long-lived token (60 days), not one hour
    assert.is_true(tonumber(jar.ig_sid.raw:match("Max%-Age=(%d+)")) > 30 * 24 * 3600)
    assert.equal(1, #f:log("/oauth/access_token"))
    local long = f:log("/access_token")
    assert.equal(1, #long)
    assert.equal("ig_exchange_token", long[1].args.grant_type)

    local body
    status, headers, body = get("/me", "ig_sid=" .. jar.ig_sid.value)
    seen[#seen + 1] = jar.ig_sid.value
    assert.equal(200, status)
    assert.matches('<strong id="username">biz</strong>', body, 1, true)
    assert.matches('id="avatar" alt="" src="https://cdn.example/biz/profile.jpg"', body, 1, true)
    local items = select(2, body:gsub("<li><a ", ""))
    assert.equal(7, items)
    assert.matches('<form method="post" action="/logout">', body, 1, true)
    assert.matches("script-src 'self'", headers["content-security-policy"], 1, true)
  end)

  it("takes signed webhook deliveries at /webhooks and shows their events on the account's page", function()
    -- Meta's verification GET (answered by the receiver as text/plain, not as one of the app's pages)
    local status, _, body = server:get("/webhooks?hub.mode=subscribe&hub.verify_token=example-verify-token"
      .. "&hub.challenge=1158201444")
    assert.equal(200, status)
    assert.equal("1158201444", body)
    local sent = f:send_webhook({ url = server.base .. "/webhooks", secret = SECRET,
      build = { account_id = "17841477965412210", serial = 7, comments = 2 } })
    assert.is_true(sent.deliveries[1].delivered)
    local forged = f:send_webhook({ url = server.base .. "/webhooks", secret = "not-the-app-secret",
      build = { account_id = "17841477965412210", serial = 8, comments = 1 } })
    assert.is_false(forged.deliveries[1].delivered)
    require("socket").sleep(0.2) -- events are stored from a timer, after the 200

    local state, query = login()
    local _, headers = get("/auth/?" .. query, "ig_state=" .. state)
    local sid = cookies(headers).ig_sid.value
    seen[#seen + 1] = sid
    status, _, body = get("/me", "ig_sid=" .. sid)
    assert.equal(200, status)
    assert.equal(2, select(2, body:gsub('class="webhook%-event"', "")))
    assert.truthy(body:find("&lt;b&gt;", 1, true)) -- the comments' markup comes out escaped
  end)

  it("shows the account that logged in on the public feed page, cached, with ETag and 304", function()
    local state, query = login()
    local _, headers = get("/auth/?" .. query, "ig_state=" .. state)
    seen[#seen + 1] = cookies(headers).ig_sid.value
    local status, _, body = server:get("/feed/")
    assert.equal(200, status)
    assert.equal(7, select(2, body:gsub("<img ", "")))
    local fetches = #f:log(function(e) return e.path:match("/media$") end)
    local h
    status, h, body = server:get("/feed.json")
    assert.equal(200, status)
    assert.equal(7, #require("cjson").decode(body).items)
    assert.matches("max%-age=%d+", h["cache-control"])
    status = server:get("/feed.json", { ["if-none-match"] = h.etag })
    assert.equal(304, status)
    -- served from the cache: no further media fetch
    assert.equal(fetches, #f:log(function(e) return e.path:match("/media$") end))
  end)

  it("sends a reload of the callback after a login that worked to /me, without a second exchange", function()
    local sid, query = session()
    local status, headers = get("/auth/?" .. query, sid)
    assert.equal(303, status)
    assert.matches("/me$", headers.location)
    assert.equal(1, #f:log("/oauth/access_token"))
  end)

  it("refuses a callback whose state cookie is missing, forged or for another login (400)", function()
    local state, query = login()
    local forged = state:gsub("%x$", function(c) return c == "0" and "1" or "0" end)
    local _, other = login()
    for _, case in ipairs({
      { nil, query }, { forged, query }, { state, other },
    }) do
      local status, headers, body = get("/auth/?" .. case[2], case[1] and "ig_state=" .. case[1] or nil)
      assert.equal(400, status)
      assert.matches("did not start here", body, 1, true)
      assert.is_nil(body:find("instagram:", 1, true))
      assert.is_nil(cookies(headers).ig_sid)
    end
    assert.equal(0, #f:log("/oauth/access_token"))
  end)

  it("answers 403 when the user cancels, without calling the token endpoint", function()
    local state = start_login()
    local status, _, body = get("/auth/?error=access_denied&error_reason=user_denied"
      .. "&error_description=The+user+denied+your+request&state=" .. state:match("^([^.]+)"),
      "ig_state=" .. state)
    assert.equal(403, status)
    assert.matches("You cancelled the login", body, 1, true)
    assert.equal(0, #f:log("/oauth/access_token"))
  end)

  it("answers 502 when Instagram reports its own failure on the redirect", function()
    local state = start_login()
    local status, _, body = get("/auth/?error=temporarily_unavailable&state=" .. state:match("^([^.]+)"),
      "ig_state=" .. state)
    assert.equal(502, status)
    assert.is_nil(body:find("cancelled", 1, true))
  end)

  it("does not let a stateless error callback cancel a pending login (400)", function()
    -- needs the library's parse_callback to check state before reporting denied (issue 8)
    local probe = require("instagram").new({ app_id = "1", redirect_uri = "https://localhost/" })
    local _, perr = probe:parse_callback({ error = "access_denied" }, "expected")
    if perr.kind ~= "state" then
      pending("parse_callback reports denied before it checks state: the library fix is not here yet")
      return
    end
    local state = start_login()
    local status, _, body = get("/auth/?error=access_denied&error_description=Forged", "ig_state=" .. state)
    assert.equal(400, status)
    assert.is_nil(body:find("Forged", 1, true))
  end)

  it("answers 400 to a code already used, sending it once", function()
    local _, query = session()
    local state = start_login()
    local code = query:match("code=([^&]+)")
    local status, _, body = get("/auth/?code=" .. code .. "&state=" .. state:match("^([^.]+)"),
      "ig_state=" .. state)
    assert.equal(400, status)
    assert.matches("already used or has expired", body, 1, true)
    assert.is_nil(body:find("OAuthException", 1, true))
    assert.equal(2, #f:log("/oauth/access_token"))
  end)

  it("answers 502 when the token endpoint fails and 504 when it does not answer in time", function()
    for _, case in ipairs({
      { { status = 500 }, 502 }, { { mode = "html_500" }, 502 }, { { mode = "stall", seconds = 3 }, 504 },
    }) do
      f:fault("/oauth/access_token", case[1])
      local state, query = login()
      local status, headers, body = get("/auth/?" .. query, "ig_state=" .. state)
      assert.equal(case[2], status)
      assert.matches("Instagram", body, 1, true)
      for _, leak in ipairs({ "instagram:", "localhost:", "127.0.0.1", tostring(f.ports.https) }) do
        assert.is_nil(body:find(leak, 1, true), leak)
      end
      assert.is_nil(cookies(headers).ig_sid)
    end
    -- the reasons are in the log, without the request line
    require("socket").sleep(0.05)
    local log = Nginx.read_file(server.prefix .. "/error.log")
    assert.matches("code exchange: instagram: timeout error", log, 1, true)
    assert.is_nil(log:match("code exchange: [^\n]*request: "))
  end)

  it("sends /me without a session to the start page, not to Instagram", function()
    local status, headers = get("/me")
    assert.equal(303, status)
    assert.matches("/$", headers.location)
    assert.equal(0, #f:log())
  end)

  it("answers 502 on /me when Graph fails, and keeps the session", function()
    local sid = session()
    f:fault("/me", { status = 503 })
    local status, headers = get("/me", sid)
    assert.equal(502, status)
    assert.is_nil(cookies(headers).ig_sid)
    f:clear_faults()
    assert.equal(200, (get("/me", sid)))
  end)

  it("logs out on a POST with the CSRF token of the page, and only then", function()
    local sid = session()
    local _, _, body = get("/me", sid)
    local csrf = body:match('name="csrf" value="(%x+)"')
    assert.is_string(csrf)
    assert.equal(405, (get("/logout", sid)))
    local status = post("/logout", "csrf=" .. string.rep("0", #csrf), sid)
    assert.equal(400, status)
    assert.equal(200, (get("/me", sid)))
    local headers
    status, headers = post("/logout", "csrf=" .. csrf, sid)
    assert.equal(303, status)
    assert_private(headers)
    assert.matches("/$", headers.location)
    assert.equal('"cache"', headers["clear-site-data"])
    assert.matches("Max%-Age=0", cookies(headers).ig_sid.raw)
    status, headers = get("/me", sid)
    assert.equal(303, status)
    assert.matches("/$", headers.location)
  end)

  it("answers Meta's deauthorize callback: verified, and the user's sessions end", function()
    local sid = session()
    local status = post("/deauthorize", "signed_request="
      .. signed_request({ algorithm = "HMAC-SHA256", user_id = USER_ID }, "not the app secret"))
    assert.equal(400, status)
    assert.equal(405, (get("/deauthorize")))
    assert.equal(200, (get("/me", sid)))
    status = post("/deauthorize", "signed_request="
      .. signed_request({ algorithm = "HMAC-SHA256", user_id = USER_ID, issued_at = os.time() }, SECRET))
    assert.equal(200, status)
    assert.equal(303, (get("/me", sid)))
  end)

  it("keeps a login made right after the user's sessions were revoked (same second)", function()
    -- the browser run's last case logged in again at once after a data deletion, and the new
    -- session was taken for one of the revoked ones: revocation must end only older sessions
    local old = session()
    assert.equal(200, (post("/deauthorize", "signed_request="
      .. signed_request({ algorithm = "HMAC-SHA256", user_id = USER_ID, issued_at = os.time() }, SECRET))))
    for _ = 1, 3 do
      local sid = session()
      assert.equal(200, (get("/me", sid)))
    end
    assert.equal(303, (get("/me", old)))
  end)

  it("answers Meta's data-deletion callback with a status URL and a confirmation code", function()
    local sid = session()
    local status, headers, body = post("/data-deletion", "signed_request="
      .. signed_request({ algorithm = "HMAC-SHA256", user_id = USER_ID }, SECRET))
    assert.equal(200, status)
    assert.matches("^application/json", headers["content-type"])
    local answer = cjson.decode(body)
    assert.matches("^%w+$", answer.confirmation_code)
    assert.equal("https://localhost/data-deletion/status?id=" .. answer.confirmation_code, answer.url)
    assert.equal(303, (get("/me", sid)))
    local page
    status, headers, page = get("/data-deletion/status?id=" .. answer.confirmation_code)
    assert.equal(200, status)
    assert.matches("^text/html", headers["content-type"])
    assert.matches('<strong id="status">completed</strong>', page, 1, true)
    assert.equal(404, (get("/data-deletion/status?id=nosuchcode")))
    assert.equal(400, (post("/data-deletion", "signed_request=garbage")))
  end)

  it("refuses to start with a configuration that cannot work", function()
    for _, case in ipairs({
      { { IG_REDIRECT_URI = "http://localhost/auth/" }, "redirect_uri must be an https:// URL" },
      { { IG_API = "graph" }, "api must be" },
      { { IG_TIMEOUT = "soon" }, "IG_TIMEOUT must be" },
      { { IG_COOKIE_SECRET = "short" }, "IG_COOKIE_SECRET must be at least 32 bytes" },
    }) do
      local bad, err = start_app(f, case[1])
      if bad then bad:stop() end
      assert.is_nil(bad)
      assert.matches(case[2], err, 1, true)
    end
  end)
end)

-- examples/openresty (the login app) in a real nginx against the fake Instagram: the browser's
-- part is played here with lua-socket, the server's part runs on cosockets inside nginx.
local Fake = require "spec.support.fake"
local Nginx = require "spec.support.nginx"

local APP_ID, SECRET = "684477648739411", "eb8c7a1b2c3d4e5f60718293a4b5c6d7"

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

describe("examples/openresty login app #nginx", function()
  local f, server

  setup(function()
    f = Fake.start({ quiet = true })
    local ok, err = pcall(function()
      local root = Nginx.repo_root()
      local template = assert(Nginx.read_file(root .. "/examples/openresty/nginx.conf"))
      server = Nginx.start(template, {
        ROOT = root, CA_FILE = f.ca_file, RESOLVER = "127.0.0.1",
      }, {
        IG_APP_ID = APP_ID, IG_APP_SECRET = SECRET, IG_REDIRECT_URI = "https://localhost/auth/",
        IG_API = "basic_display", IG_COOKIE_SECRET = string.rep("k", 40),
        -- nginx verifies names, not IP SANs: the fake as "localhost"
        IG_ENDPOINT_BASE = (f.https:gsub("127%.0%.0%.1", "localhost")),
      })
    end)
    if not ok then
      f:stop()
      error(err, 0)
    end
  end)

  teardown(function()
    if server then server:stop() end
    if f then f:stop() end
  end)

  before_each(function() f:reset() end)

  -- /login, then the fake's authorize page (over its plain-http listener, as a browser would
  -- follow the redirect) -> the state cookie and the callback query
  local function login()
    local status, headers = server:get("/login")
    assert.equal(302, status)
    local location = headers.location
    assert.matches("^https://localhost:%d+/oauth/authorize%?", location)
    assert.matches("client_id=" .. APP_ID, location, 1, true)
    local state_cookie = cookies(headers).ig_state
    assert.is_table(state_cookie)
    assert.matches("HttpOnly", state_cookie.raw)
    assert.matches("Secure", state_cookie.raw)
    assert.matches("Path=/auth/", state_cookie.raw)
    local http = require "socket.http"
    local ok, fstatus, fheaders = http.request({
      url = f.http .. location:match("^https://[^/]+(/.*)$"), redirect = false,
    })
    assert(ok)
    assert.equal(302, fstatus)
    local callback = fheaders.location:gsub("#.*$", "")
    assert.matches("^https://localhost/auth/%?code=", callback)
    return state_cookie.value, callback:match("%?(.*)$")
  end

  it("logs in: /login -> authorize -> /auth/ -> /me shows id and username", function()
    local state, query = login()
    local status, headers = server:get("/auth/?" .. query, { cookie = "ig_state=" .. state })
    assert.equal(302, status, server:log_tail())
    assert.matches("/me$", headers.location)
    assert.equal("no-referrer", headers["referrer-policy"])
    local jar = cookies(headers)
    assert.equal("", jar.ig_state.value) -- the state is single-use
    assert.matches("Max%-Age=0", jar.ig_state.raw)
    local sid = jar.ig_sid.value
    assert.matches("^[%w_%-]+$", sid)
    assert.matches("HttpOnly", jar.ig_sid.raw)
    assert.equal(1, #f:log("/oauth/access_token"))

    local body
    status, headers, body = server:get("/me", { cookie = "ig_sid=" .. sid })
    assert.equal(200, status)
    assert.matches('<code id="username">jayposiris</code>', body, 1, true)
    assert.matches('<code id="id">%d+</code>', body)
    assert.equal("no-store", headers["cache-control"])
  end)

  it("refuses a callback whose state cookie is missing, forged or for another login", function()
    local state, query = login()
    local forged = state:gsub("%x$", function(c) return c == "0" and "1" or "0" end)
    local _, other = login()
    for _, case in ipairs({
      { nil, query }, { forged, query }, { state, other },
    }) do
      local status, headers = server:get("/auth/?" .. case[2], case[1] and { cookie = "ig_state=" .. case[1] } or nil)
      assert.equal(400, status)
      assert.equal("no-referrer", headers["referrer-policy"])
    end
    assert.equal(0, #f:log("/oauth/access_token"))
  end)

  it("answers 403 when the user cancels, without calling the token endpoint", function()
    local state = login()
    local denied_state = state:match("^([^.]+)")
    local status, headers, body = server:get("/auth/?error=access_denied&error_reason=user_denied"
      .. "&error_description=The+user+denied+your+request&state=" .. denied_state, { cookie = "ig_state=" .. state })
    assert.equal(403, status)
    assert.equal("no-referrer", headers["referrer-policy"])
    assert.matches("cancelled", body)
    assert.equal(0, #f:log("/oauth/access_token"))
  end)

  it("sends /me without a session to /login", function()
    local status, headers = server:get("/me")
    assert.equal(302, status)
    assert.matches("/login$", headers.location)
  end)
end)

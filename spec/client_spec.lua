-- instagram.new, authorize_url and parse_callback: pure logic, no network.
local instagram = require "instagram"

local function config(extra)
  local c = {
    app_id = "684477648739411",
    app_secret = "SECRET_SENTINEL_5f3a",
    redirect_uri = "https://localhost/auth/",
    api = "basic_display",
  }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

local function args_of(url)
  return instagram.core.parse_query(url)
end

describe("instagram.new", function()
  it("makes a client with the profile's defaults", function()
    local ig = instagram.new(config())
    assert.equal("basic_display", ig.api)
    assert.equal("https://api.instagram.com/oauth/authorize", ig.endpoints.authorize)
    assert.equal("https://api.instagram.com/oauth/access_token", ig.endpoints.token)
    assert.equal("https://graph.instagram.com", ig.endpoints.graph)
    assert.equal("user_profile,user_media", ig.scope)
    local il = instagram.new(config({ api = "instagram_login" }))
    assert.equal("https://www.instagram.com/oauth/authorize", il.endpoints.authorize)
    assert.equal("instagram_business_basic", il.scope)
    local c = config()
    c.api = nil
    assert.equal("instagram_login", instagram.new(c).api)
  end)

  it("raises with its name on bad config", function()
    local cases = {
      { nil, "config must be a table" },
      { config({ app_id = "" }), "app_id must be a non%-empty string" },
      { config({ app_id = 123 }), "app_id must be a non%-empty string" },
      { config({ redirect_uri = "http://localhost/auth/" }), "redirect_uri must be an https://" },
      { config({ redirect_uri = "https://localhost/auth/#x" }), "without spaces or fragment" },
      { config({ api = "legacy" }), "api must be" },
      { config({ endpoints = { graph = "http://127.0.0.1:1" } }), "endpoints.graph must be an https://" },
      { config({ endpoints = { nope = "https://x" } }), "unknown endpoint" },
      { config({ graph_version = "21" }), "graph_version" },
      { config({ timeout = 0 }), "timeout must be a positive number" },
      { config({ timeout = "10" }), "timeout must be a positive number" },
      { config({ retries = -1 }), "retries must be an integer" },
      { config({ max_response_bytes = 0 }), "max_response_bytes" },
      -- options no transport can honour fail here, not at the first request
      { config({ timeout = 1e7 }), "timeout must be a positive number of seconds, at most 2147483" },
      { config({ timeout = 2147483.5 }), "timeout must be a positive number of seconds, at most 2147483" },
      { config({ connect_timeout = 1e7 }), "connect_timeout must be a positive number of seconds, at most 2147483" },
      { config({ timeout = 0 / 0 }), "timeout must be a positive number" },
      { config({ max_response_bytes = 2 ^ 31 + 1 }), "max_response_bytes must be an integer from 1 to 2147483648" },
      { config({ max_response_bytes = 1.5 }), "max_response_bytes must be an integer from 1 to 2147483648" },
      { config({ max_response_bytes = -1 }), "max_response_bytes must be an integer from 1 to 2147483648" },
      { config({ transport = "socket" }), "transport must be" },
      { config({ token_in = "cookie" }), "token_in must be" },
      { config({ user_agent = "x\r\nX-Injected: 1" }), "user_agent must not contain CR, LF or NUL" },
      { config({ app_secret = "a\0b" }), "app_secret must not contain CR, LF or NUL" },
      { config({ allow_http = "yes" }), "allow_http must be a boolean" },
      { config({ colour = "blue" }), "unknown option 'colour'" },
      { config({ app_secret = false }), "app_secret must be a non%-empty string" },
      { (function()
        local c = config({ appsecret_proof = true })
        c.app_secret = nil
        return c
      end)(), "appsecret_proof needs app_secret" },
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(instagram.new, case[1])
      assert.is_false(ok, case[2])
      assert.matches("^instagram%.new: ", err)
      assert.matches(case[2], err)
      assert.not_matches("SECRET_SENTINEL", err)
    end
  end)

  it("accepts the largest timeouts every transport can honour", function()
    local ig = instagram.new(config({ timeout = 2147483, connect_timeout = 2147483, max_response_bytes = 2 ^ 31 }))
    assert.equal(2147483, ig.timeout)
    assert.equal(2 ^ 31, ig.max_response_bytes)
  end)

  it("accepts plain http endpoints only with allow_http", function()
    local ig = instagram.new(config({ allow_http = true, endpoints = { graph = "http://127.0.0.1:9/" } }))
    assert.equal("http://127.0.0.1:9", ig.endpoints.graph)
  end)

  it("never shows the secret in tostring", function()
    local ig = instagram.new(config())
    assert.matches("^instagram%.client", tostring(ig))
    assert.not_matches("SECRET_SENTINEL", tostring(ig))
    for k, v in pairs(ig) do
      assert.not_matches("SECRET_SENTINEL", tostring(k) .. tostring(v))
    end
  end)
end)

describe("ig:authorize_url", function()
  local ig = instagram.new(config())

  it("builds the tutorial's Authorization Window URL with a fresh state", function()
    local url, state = ig:authorize_url()
    assert.matches("^https://api%.instagram%.com/oauth/authorize%?client_id=684477648739411&"
      .. "redirect_uri=https%%3A%%2F%%2Flocalhost%%2Fauth%%2F&scope=user_profile%%2Cuser_media&"
      .. "response_type=code&state=", url)
    local a = args_of(url)
    assert.equal(state, a.state)
    assert.equal("https://localhost/auth/", a.redirect_uri)
    assert.matches("^[%w_-]+$", state)
    assert.is_true(#state >= 22) -- >= 128 bits in base64url
  end)

  it("makes a different state every time", function()
    local seen = {}
    for _ = 1, 1000 do
      local _, state = ig:authorize_url()
      assert.is_nil(seen[state])
      seen[state] = true
    end
  end)

  it("takes scope, state and extra parameters, percent-encoded", function()
    local url, state = ig:authorize_url({ scope = { "user_profile" }, state = "a b&c=d",
      force_reauth = true, enable_fb_login = 0 })
    assert.equal("a b&c=d", state)
    assert.matches("state=a%%20b%%26c%%3Dd", url)
    local a = args_of(url)
    assert.equal("user_profile", a.scope)
    assert.equal("true", a.force_reauth)
    assert.equal("0", a.enable_fb_login)
  end)

  it("follows the client's fields when they change after a first URL (the fixed part is kept)", function()
    local c = instagram.new(config())
    local first = c:authorize_url({ state = "s1" })
    assert.equal("https://api.instagram.com/oauth/authorize?client_id=684477648739411&redirect_uri="
      .. "https%3A%2F%2Flocalhost%2Fauth%2F&scope=user_profile%2Cuser_media&response_type=code&state=s1", first)
    c.redirect_uri = "https://example.com/cb"
    c.scope = "user_profile"
    c.app_id = "42"
    c.endpoints.authorize = "https://auth.example/o"
    assert.equal("https://auth.example/o?client_id=42&redirect_uri=https%3A%2F%2Fexample.com%2Fcb&"
      .. "scope=user_profile&response_type=code&state=s%202", c:authorize_url({ state = "s 2" }))
    -- another scope for one call, then the client's again
    assert.matches("&scope=a%%2Cb&", c:authorize_url({ scope = { "a", "b" }, state = "x" }))
    assert.matches("&scope=user_profile&", c:authorize_url({ state = "x" }))
  end)

  it("raises on misuse", function()
    assert.has_error(function() ig:authorize_url("x") end, "ig:authorize_url: opts must be a table")
    assert.has_error(function() ig:authorize_url({ client_id = "1" }) end,
      "ig:authorize_url: opts.client_id cannot be overridden")
    assert.has_error(function() ig:authorize_url({ extra = {} }) end,
      "ig:authorize_url: opts.extra must be a string, number or boolean")
    assert.has_error(function() ig:authorize_url({ state = "" }) end,
      "ig:authorize_url: opts.state must be a non-empty string")
    assert.has_error(function() ig.authorize_url({}) end)
  end)
end)

describe("ig:parse_callback", function()
  local ig = instagram.new(config())
  local S = "st4te"

  it("takes the tutorial's redirect and drops the #_", function()
    assert.equal("AQDp3TtBQQ", ig:parse_callback("https://localhost/auth/?code=AQDp3TtBQQ&state=st4te#_", S))
    assert.equal("AQDp3TtBQQ", ig:parse_callback("code=AQDp3TtBQQ&state=st4te#_", S))
    assert.equal("AQDp3TtBQQ", ig:parse_callback("https://localhost/auth/?code=AQDp3TtBQQ%23_", false))
    assert.equal("AQDp3TtBQQ", ig:parse_callback({ code = "AQDp3TtBQQ#_", state = S }, S))
    assert.equal("AQDp3TtBQQ", ig:parse_callback({ code = "AQDp3TtBQQ%23_" }, false))
  end)

  it("cuts the code at the first #, drops one trailing %23_, and refuses controls after decoding", function()
    assert.equal("a", ig:parse_callback({ code = "a#b#c" }, false))
    assert.equal("a%23_", ig:parse_callback({ code = "a%23_%23_" }, false))
    assert.equal("a%23_x", ig:parse_callback({ code = "a%23_x" }, false))
    assert.equal("%23", ig:parse_callback({ code = "%23" }, false))
    local _, err = ig:parse_callback({ code = "%23_" }, false)
    assert.equal("callback", err.kind)
    for _, bad in ipairs({ "a\tb", "a\127", "a b", "\0" }) do
      _, err = ig:parse_callback({ code = bad }, false)
      assert.equal("callback", err.kind, bad)
      assert.matches("control characters", err.message, 1, true)
    end
    -- reserved but printable characters pass as they are
    assert.equal("a/b?c=d&e~f!", ig:parse_callback({ code = "a/b?c=d&e~f!" }, false))
  end)

  it("percent-decodes the code once", function()
    assert.equal("a%b", ig:parse_callback("?code=a%25b", false))
    assert.equal("a%25b", ig:parse_callback("?code=a%2525b", false))
    assert.equal("AQ-_x", ig:parse_callback("?code=AQ%2D_x", false))
  end)

  it("types a denied callback", function()
    local code, err = ig:parse_callback("https://localhost/auth/?error=access_denied&error_reason=user_denied"
      .. "&error_description=The+user+denied+your+request&state=st4te", S)
    assert.is_nil(code)
    assert.equal("denied", err.kind)
    assert.equal("user_denied", err.reason)
    assert.equal("The user denied your request", err.description)
  end)

  it("checks the state before it reports denied; a forged error callback never shows its text", function()
    local forged = "error=access_denied&error_reason=user_denied&error_description=Injected+text"
    for _, input in ipairs({ "?" .. forged, "?" .. forged .. "&state=other", "?" .. forged .. "&state=" }) do
      local code, err = ig:parse_callback(input, S)
      assert.is_nil(code, input)
      assert.equal("state", err.kind, input)
      assert.not_matches("Injected", tostring(err), 1, true)
      for _, v in pairs(err) do assert.not_matches("Injected", tostring(v), 1, true) end
    end
    local _, err = ig:parse_callback({ error = "access_denied", error_description = "Injected text" }, S)
    assert.equal("state", err.kind)
    -- with the check skipped (false), the error callback is reported as such
    _, err = ig:parse_callback("?" .. forged, false)
    assert.equal("denied", err.kind)
    assert.equal("user_denied", err.reason)
  end)

  it("checks the state, in every failing way", function()
    local cases = {
      { "?code=x", "state" },
      { "?code=x&state=", "state" },
      { "?code=x&state=other", "state" },
      { "?code=x&state=st4teX", "state" },
      { "?code=x&state=st4t", "state" },
    }
    for _, c in ipairs(cases) do
      local code, err = ig:parse_callback(c[1], S)
      assert.is_nil(code, c[1])
      assert.equal(c[2], err.kind, c[1])
    end
  end)

  it("rejects missing, empty, duplicated and over-long parameters", function()
    local cases = {
      "?state=st4te",
      "?code=&state=st4te",
      "?code=a&code=b&state=st4te",
      "?code=a&state=st4te&state=st4te",
      "?code=" .. string.rep("A", 5000) .. "&state=st4te",
      "?code=a%0D%0Ab&state=st4te",
      "?code=a%00b&state=st4te",
      "?code=a+b&state=st4te",
      string.rep("x", 20000),
    }
    for _, input in ipairs(cases) do
      local code, err = ig:parse_callback(input, S)
      assert.is_nil(code, input:sub(1, 40))
      assert.equal("callback", err.kind, input:sub(1, 40))
    end
    local _, err = ig:parse_callback({ code = { "a", "b" }, state = S }, S)
    assert.equal("callback", err.kind)
    -- ngx.req.get_uri_args() gives true for a bare key
    _, err = ig:parse_callback({ code = true, state = S }, S)
    assert.equal("callback", err.kind)
    assert.matches("empty", err.message)
    _, err = ig:parse_callback({ code = "c", state = true }, S)
    assert.equal("state", err.kind)
  end)

  it("raises when expected_state is forgotten or input has the wrong type", function()
    assert.has_error(function() ig:parse_callback("?code=x") end,
      "ig:parse_callback: expected_state must be the state string, or false to skip the check")
    assert.has_error(function() ig:parse_callback(42, false) end,
      "ig:parse_callback: input must be a URL, a query string or a table of query args")
    local _, err = ig:parse_callback({ code = 1 }, false)
    assert.equal("callback", err.kind)
  end)

  it("never puts the code into an error", function()
    local _, err = ig:parse_callback("?code=CODE_SENTINEL_77&state=bad", S)
    assert.not_matches("CODE_SENTINEL", tostring(err))
    _, err = ig:parse_callback("?error=access_denied&error_description=CODE_SENTINEL_77&code=CODE_SENTINEL_77", S)
    assert.not_matches("CODE_SENTINEL", tostring(err))
  end)
end)

describe("Graph request URLs", function()
  it("follow the client's graph base and version when they change between calls", function()
    local urls = {}
    local ig = instagram.new(config({
      transport = function(req)
        urls[#urls + 1] = req.url
        return { status = 200, body = '{"id":"1","username":"u"}' }
      end,
    }))
    assert(ig:me("TOKEN"))
    ig.graph_version = "v21.0"
    assert(ig:me("TOKEN", { "id" }))
    ig.endpoints.graph = "https://graph.example"
    assert(ig:user("TOKEN", "17841405793187219", "id,media_count"))
    assert(ig:me("TOK EN/+"))
    assert.same({
      "https://graph.instagram.com/me?fields=id%2Cusername&access_token=TOKEN",
      "https://graph.instagram.com/v21.0/me?fields=id&access_token=TOKEN",
      "https://graph.example/v21.0/17841405793187219?fields=id%2Cmedia_count&access_token=TOKEN",
      "https://graph.example/v21.0/me?fields=id%2Cusername&access_token=TOK%20EN%2F%2B",
    }, urls)
  end)
end)

describe("Graph requests on the wire", function()
  local function capture(extra)
    local reqs = {}
    local conf = {
      transport = function(req)
        reqs[#reqs + 1] = req
        return { status = 200, body = '{"id":"1","username":"u","success":true}' }
      end,
    }
    for k, v in pairs(extra or {}) do conf[k] = v end
    return instagram.new(config(conf)), reqs
  end

  it("put the sorted parameters, then the token, then the proof in the query of a GET", function()
    local ig, reqs = capture({ appsecret_proof = true })
    assert(ig:get("TOKEN", "me/media", { limit = 5, after = "c/d", fields = { "id", "caption" } }))
    assert.equal("https://graph.instagram.com/me/media?after=c%2Fd&fields=id%2Ccaption&limit=5&access_token=TOKEN"
      .. "&appsecret_proof=" .. instagram.core.hmac_sha256_hex("SECRET_SENTINEL_5f3a", "TOKEN"), reqs[1].url)
    assert.equal("GET", reqs[1].method)
    assert.same({ Accept = "application/json" }, reqs[1].headers)
  end)

  it("give a transport function headers of its own, which it may change without touching later requests", function()
    local seen = {}
    local ig = instagram.new(config({ transport = function(req)
      local h = {}
      for k, v in pairs(req.headers) do h[k] = v end
      seen[#seen + 1] = h
      req.headers.X_Mine = "changed"
      req.headers.Accept = nil
      return { status = 200, headers = {}, body = '{"id":"1","username":"u"}' }
    end }))
    for _ = 1, 3 do assert(ig:me("TOKEN")) end
    assert(ig:get("TOKEN", "me/media", { limit = 1 }))
    assert.equal(4, #seen)
    for i = 1, 4 do assert.same({ Accept = "application/json" }, seen[i]) end
  end)

  it("build a GET again whenever the token, path, fields, endpoint, version or timeouts change", function()
    local ig, reqs = capture()
    assert(ig:me("TOKEN"))
    assert(ig:me("TOKEN"))
    assert(ig:me("OTHER"))
    assert(ig:me("OTHER", { "id" }))
    assert(ig:user("OTHER", "17841405793187219"))
    ig.endpoints.graph = "https://graph.example.test"
    assert(ig:me("OTHER", { "id" }))
    ig.graph_version = "v99.0"
    assert(ig:me("OTHER", { "id" }))
    ig.timeout = 7
    assert(ig:me("OTHER", { "id" }))
    local urls = {}
    for i, r in ipairs(reqs) do urls[i] = r.url end
    assert.same({
      "https://graph.instagram.com/me?fields=id%2Cusername&access_token=TOKEN",
      "https://graph.instagram.com/me?fields=id%2Cusername&access_token=TOKEN",
      "https://graph.instagram.com/me?fields=id%2Cusername&access_token=OTHER",
      "https://graph.instagram.com/me?fields=id&access_token=OTHER",
      "https://graph.instagram.com/17841405793187219?fields=id%2Cusername&access_token=OTHER",
      "https://graph.example.test/me?fields=id&access_token=OTHER",
      "https://graph.example.test/v99.0/me?fields=id&access_token=OTHER",
      "https://graph.example.test/v99.0/me?fields=id&access_token=OTHER",
    }, urls)
    assert.equal(7, reqs[8].timeout)
    assert.are_not.equal(7, reqs[7].timeout)
  end)

  it("give a transport function a request of its own: what it changes never reaches the next one", function()
    local seen = {}
    local ig = instagram.new(config({ transport = function(req)
      seen[#seen + 1] = req.url
      req.url = "https://evil.test/"
      req.method = "POST"
      req.timeout = 0
      return { status = 200, headers = {}, body = '{"id":"1","username":"u"}' }
    end }))
    for _ = 1, 3 do assert(ig:me("TOKEN")) end
    for i = 1, 3 do
      assert.equal("https://graph.instagram.com/me?fields=id%2Cusername&access_token=TOKEN", seen[i])
    end
  end)

  it("send the token in a header with token_in = \"header\", and nothing in an empty query", function()
    local ig, reqs = capture({ token_in = "header" })
    assert(ig:get("TOKEN", "me"))
    assert(ig:me("TOKEN"))
    assert.equal("https://graph.instagram.com/me", reqs[1].url)
    assert.equal("https://graph.instagram.com/me?fields=id%2Cusername", reqs[2].url)
    assert.equal("Bearer TOKEN", reqs[2].headers.Authorization)
  end)

  it("put a write's parameters and token in a form body, none in the URL", function()
    local ig, reqs = capture()
    assert(ig:hide_comment("TOKEN", "17858893269000001", true))
    assert.equal("POST", reqs[1].method)
    assert.equal("https://graph.instagram.com/17858893269000001", reqs[1].url)
    assert.equal("hide=true&access_token=TOKEN", reqs[1].body)
    assert.equal("application/x-www-form-urlencoded", reqs[1].headers["Content-Type"])
  end)
end)

-- The tutorial's flow, method by method, over real HTTP and HTTPS against the fake Instagram.
local instagram = require "instagram"
local Fake = require "spec.support.fake"

local BD_APP, IL_APP = "684477648739411", "990602627938098"
local SECRET = "SECRET_SENTINEL_5f3a0000000000000"
local REDIRECT = "https://localhost/auth/"
local Clients = require "spec.support.client"
local NONE = Clients.NONE

describe("the tutorial flow against the fake Instagram", function()
  local fake

  setup(function()
    fake = Fake.start({ quiet = true })
  end)

  teardown(function()
    if fake then fake:stop() end
  end)

  before_each(function()
    fake:reset()
    fake:config({ apps = { [BD_APP] = { secret = SECRET }, [IL_APP] = { secret = SECRET } } })
  end)

  local function client(extra, scheme)
    return Clients.new(fake, { app_secret = SECRET, endpoints = fake:endpoints(scheme or "https"),
      allow_http = scheme == "http" or nil }, extra)
  end

  -- the browser's part: load the authorize URL, take the redirect
  local function visit(url)
    local s = instagram.core.session({ ca_file = fake.ca_file, allow_http = true, timeout = 5, connect_timeout = 5,
      max_response_bytes = 65536, user_agent = "spec-browser" })
    local res = assert(s:perform({ method = "GET", url = url }))
    s:close()
    return res
  end

  local function assert_no_secret(err, ...)
    local text = tostring(err) .. " " .. tostring(err.message) .. " " .. tostring(err.description)
    for _, s in ipairs({ SECRET, ... }) do
      assert.is_nil(text:find(s, 1, true), "secret leaked into: " .. text)
    end
  end

  for _, scheme in ipairs({ "https", "http" }) do
    it("runs Steps 4-6 end to end over " .. scheme, function()
      local ig = client(nil, scheme)
      local url, state = ig:authorize_url()
      local res = visit(url)
      assert.equal(302, res.status)
      assert.matches("#_$", res.headers.location)
      local code = assert(ig:parse_callback(res.headers.location, state))
      assert.not_matches("#", code)
      local token = assert(ig:exchange_code(code))
      assert.equal("17841405793187219", token.user_id)
      assert.is_string(token.access_token)
      assert.is_number(token.issued_at)
      local me = assert(ig:me(token))
      assert.same({ id = "17841405793187219", username = "jayposiris" }, me)
      local user = assert(ig:user(token.access_token, token.user_id, "id,username"))
      assert.same(me, user)
      ig:close()
    end)
  end

  it("sends the code exchange as one form-urlencoded POST with the secret only in the body", function()
    local ig = client()
    local code = fake:issue_code(BD_APP)
    assert(ig:exchange_code(code))
    local posts = fake:log("/oauth/access_token")
    assert.equal(1, #posts)
    local p = posts[1]
    assert.equal("POST", p.method)
    assert.matches("^application/x%-www%-form%-urlencoded", p.headers["content-type"])
    assert.equal("", p.query or "")
    assert.same({ client_id = BD_APP, client_secret = SECRET, grant_type = "authorization_code",
      redirect_uri = REDIRECT, code = code }, p.form)
    assert.matches("^lua%-instagram/", p.headers["user-agent"])
  end)

  describe("keeps user_id exact for every token-response shape", function()
    local shapes = {
      { app = BD_APP, api = "basic_display", shape = "basic", user_id = "17841405793187219" },
      { app = IL_APP, api = "instagram_login", shape = "flat_array", user_id = "27640875392278831",
        permissions = true },
      { app = IL_APP, api = "instagram_login", shape = "data_wrapper", user_id = "27640875392278831",
        permissions = true },
      { app = IL_APP, api = "instagram_login", shape = "flat_string", user_id = "27640875392278831" },
    }
    for _, s in ipairs(shapes) do
      it(s.shape, function()
        fake:config({ apps = { [s.app] = { shape = s.shape } } })
        local ig = client({ app_id = s.app, api = s.api })
        local token = assert(ig:exchange_code(fake:issue_code(s.app)))
        assert.equal(s.user_id, token.user_id)
        assert.equal("string", type(token.user_id))
        if s.permissions then
          assert.is_table(token.permissions)
          assert.equal("instagram_business_basic", token.permissions[1])
        end
        local cjson = require "cjson"
        assert.same(token, cjson.decode(cjson.encode(token)))
      end)
    end
  end)

  describe("validates token responses (SECURITY.md §4.5)", function()
    local function exchange_with(body)
      fake:fault("/oauth/access_token", { status = 200, body = body })
      return client():exchange_code("AQcode")
    end

    for _, case in ipairs({
      { "no access_token", '{"user_id":1}' },
      { "an empty access_token", '{"access_token":"","user_id":1}' },
      { "a numeric access_token", '{"access_token":123}' },
      { "expires_in false", '{"access_token":"t","expires_in":false}' },
      { "expires_in an object", '{"access_token":"t","expires_in":{}}' },
      { "expires_in zzz", '{"access_token":"t","expires_in":"zzz"}' },
      { "expires_in negative", '{"access_token":"t","expires_in":-1}' },
      { "expires_in fractional", '{"access_token":"t","expires_in":1.5}' },
      { "a user_id that is not an ID", '{"access_token":"t","user_id":[1]}' },
      { "an empty data array", '{"data":[]}' },
    }) do
      it("rejects " .. case[1] .. " as kind response", function()
        local token, err = exchange_with(case[2])
        assert.is_nil(token)
        assert.equal("response", err.kind)
        assert.equal(200, err.status)
      end)
    end

    it("accepts expires_in as a numeric string, null as unknown, and ignores unknown fields", function()
      local t = assert(exchange_with('{"access_token":"t","expires_in":"3600","token_type":"Bearer","x":{"y":1}}'))
      assert.equal(3600, t.expires_in)
      assert.equal(t.issued_at + 3600, t.expires_at)
      assert.equal("Bearer", t.token_type)
      local u = assert(exchange_with('{"access_token":"t","expires_in":null,"user_id":null}'))
      assert.is_nil(u.expires_in)
      assert.is_nil(u.expires_at)
      assert.is_nil(u.user_id)
    end)
  end)

  it("makes exactly one POST when the code exchange fails with a 500", function()
    fake:fault("/oauth/access_token", { status = 500 })
    local ig = client({ retries = 5 })
    local token, err = ig:exchange_code(fake:issue_code(BD_APP))
    assert.is_nil(token)
    assert.equal(500, err.status)
    assert.is_true(err.transient)
    assert.equal(1, #fake:log("/oauth/access_token"))
    assert_no_secret(err)
  end)

  it("reports a used code as an api error", function()
    local ig = client()
    local code = fake:issue_code(BD_APP)
    assert(ig:exchange_code(code))
    local token, err = ig:exchange_code(code)
    assert.is_nil(token)
    assert.equal("api", err.kind)
    assert.equal(400, err.status)
    assert.equal("OAuthException", err.type)
    assert.matches("already used", err.message)
    assert_no_secret(err, code)
  end)

  it("reports a redirect_uri that differs from the authorize one", function()
    local code = fake:issue_code(BD_APP)
    local ig = client({ redirect_uri = "https://localhost/auth" })
    local _, err = ig:exchange_code(code)
    assert.equal("api", err.kind)
    assert.matches("redirect_uri", err.message)
  end)

  it("reports a wrong app secret without showing it", function()
    local ig = client({ app_secret = "WRONG_SECRET_SENTINEL" })
    local _, err = ig:exchange_code(fake:issue_code(BD_APP))
    assert.equal("api", err.kind)
    assert_no_secret(err, "WRONG_SECRET_SENTINEL")
  end)

  it("types a user who denies the request", function()
    fake:config({ authorize_mode = "deny" })
    local ig = client()
    local url, state = ig:authorize_url()
    local res = visit(url)
    local code, err = ig:parse_callback(res.headers.location, state)
    assert.is_nil(code)
    assert.equal("denied", err.kind)
    assert.equal("user_denied", err.reason)
    assert.equal("The user denied your request", err.description)
  end)

  it("gets Instagram Login's user node with custom fields and a version prefix", function()
    local ig = client({ app_id = IL_APP, api = "instagram_login", graph_version = "v21.0" })
    local token = assert(ig:exchange_code(fake:issue_code(IL_APP)))
    local me = assert(ig:me(token, { "user_id", "username", "id" }))
    assert.equal("17841477965412210", me.user_id)
    assert.equal("biz", me.username)
    local calls = fake:log(function(r) return r.path:match("/me$") end)
    assert.equal("/v21.0/me", calls[#calls].path)
    assert.equal("user_id,username,id", calls[#calls].args.fields)
  end)

  it("gives counts as integers (Lua 5.4), and the code exchange's token numbers too", function()
    local ig = client({ app_id = IL_APP, api = "instagram_login" })
    local token = assert(ig:exchange_code(fake:issue_code(IL_APP)))
    local me = assert(ig:me(token, { "id", "media_count", "followers_count", "follows_count" }))
    local got = assert(ig:get(token, "me", { fields = "media_count,followers_count" }))
    for _, node in ipairs({ me, got }) do
      assert.equal(7, node.media_count)
      assert.equal(1234, node.followers_count)
      assert.equal("7", tostring(node.media_count))
      assert.equal("1234", tostring(node.followers_count))
    end
    assert.equal("56", tostring(me.follows_count))
    assert.not_matches("%.", tostring(token.issued_at))
  end)

  it("types a bad token as token_invalid and does not retry it", function()
    local ig = client()
    local me, err = ig:me("IGQVJnot-a-token")
    assert.is_nil(me)
    assert.equal("api", err.kind)
    assert.equal(190, err.code)
    assert.is_true(err.token_invalid)
    assert.equal(1, #fake:log(function(r) return r.path == "/me" end))
    assert_no_secret(err, "IGQVJnot-a-token")
  end)

  it("types an unknown field as api error 100", function()
    local ig = client()
    local token = fake:issue_token("jayposiris", { kind = "short" })
    local _, err = ig:me(token, { "id", "shoe_size" })
    assert.equal("api", err.kind)
    assert.equal(100, err.code)
    assert_no_secret(err, token)
  end)

  it("keeps the connection alive between calls, but gives the code exchange a fresh one", function()
    local ig = client()
    local token = fake:issue_token("jayposiris")
    assert(ig:me(token))
    assert(ig:me(token))
    local calls = fake:log("/me")
    assert.equal(calls[1].connection, calls[2].connection)
    assert.equal(2, calls[2].connection_requests)
    assert(ig:exchange_code(fake:issue_code(BD_APP)))
    local post = fake:log("/oauth/access_token")[1]
    assert.not_equal(calls[1].connection, post.connection)
    assert.equal(1, post.connection_requests)
  end)

  it("can carry the token in an Authorization header", function()
    local ig = client({ token_in = "header" })
    local token = fake:issue_token("jayposiris", { kind = "short" })
    assert(ig:me(token))
    local r = fake:log("/me")[1]
    assert.equal("Bearer " .. token, r.headers.authorization)
    assert.is_nil(r.args.access_token)
  end)

  it("retries a GET after 5xx and succeeds", function()
    fake:fault("/me", { status = 500, times = 2 })
    local ig = client()
    local me = assert(ig:me(fake:issue_token("jayposiris", { kind = "short" })))
    assert.equal("jayposiris", me.username)
    assert.equal(3, #fake:log("/me"))
  end)

  it("gives up after `retries` extra tries", function()
    fake:fault("/me", { status = 503 })
    local ig = client({ retries = 1 })
    local _, err = ig:me(fake:issue_token("jayposiris", { kind = "short" }))
    assert.equal(503, err.status)
    assert.equal(2, #fake:log("/me"))
  end)

  describe("transport errors", function()
    it("network: connection refused", function()
      local ig = client({ endpoints = { token = "https://127.0.0.1:1/oauth/access_token",
        graph = "https://127.0.0.1:1" }, retries = 0 })
      local _, err = ig:exchange_code("CODE_SENTINEL_1234")
      assert.equal("network", err.kind)
      assert.is_true(err.transient)
      assert_no_secret(err, "CODE_SENTINEL_1234")
      local _, err2 = ig:me("TOKEN_SENTINEL_1234")
      assert.equal("network", err2.kind)
      assert_no_secret(err2, "TOKEN_SENTINEL_1234")
    end)

    it("timeout: a server slower than `timeout`", function()
      fake:fault("/me", { delay = 3 })
      local ig = client({ timeout = 0.5, retries = 0 })
      local _, err = ig:me(fake:issue_token("jayposiris", { kind = "short" }))
      assert.equal("timeout", err.kind)
      assert.is_true(err.transient)
    end)

    it("tls: a server the CA bundle does not trust", function()
      local ig = client({ ca_file = NONE })
      local _, err = ig:exchange_code("CODE_SENTINEL_1234")
      assert.equal("tls", err.kind)
      assert_no_secret(err, "CODE_SENTINEL_1234")
      assert.equal(0, #fake:log("/oauth/access_token"))
    end)

    it("response: a body over max_response_bytes, with the status that came before it", function()
      local ig = client({ max_response_bytes = 20 })
      local _, err = ig:me(fake:issue_token("jayposiris", { kind = "short" }))
      assert.equal("response", err.kind)
      assert.equal(200, err.status)
      local batched = ig:batch({ { "me", fake:issue_token("jayposiris") } })[1]
      assert.equal("response", batched.err.kind)
      assert.equal(200, batched.err.status)
    end)

    it("http: a redirect is returned, never followed", function()
      fake:fault("/me", { status = 302, headers = { Location = fake.alt .. "/me" }, body = "" })
      local ig = client()
      local _, err = ig:me(fake:issue_token("jayposiris", { kind = "short" }))
      assert.equal("http", err.kind)
      assert.equal(302, err.status)
      assert.equal(0, #fake:log(function(r) return r.port == tonumber(fake.alt:match(":(%d+)$")) end))
    end)
  end)

  it("uses a transport function when given one", function()
    local seen
    local ig = client({ transport = function(req)
      seen = req
      return { status = 200, headers = { ["Content-Type"] = "application/json" },
        body = '{"id":17841405793187219,"username":"fn"}' }
    end })
    local me = assert(ig:me("tok"))
    assert.equal("17841405793187219", me.id)
    assert.equal("GET", seen.method)
    assert.matches("/me%?", seen.url)
    local failing = client({ transport = function() return nil, "boom" end, retries = 0 })
    local _, err = failing:me("tok")
    assert.equal("network", err.kind)
    assert.equal("boom", err.message)
  end)
end)

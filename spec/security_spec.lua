-- Secure by default, proved: TLS, https only, no redirects, no injection, and no secret in any error.
local instagram = require "instagram"
local Fake = require "spec.support.fake"
local Clients = require "spec.support.client"

local APP = "684477648739411"
local SECRET = "SECRET_SENTINEL_5f3a9e"
local TOKEN = "IGQVJ_TOKEN_SENTINEL_77c1"
local CODE = "AQ_CODE_SENTINEL_4b2d"

describe("security", function()
  local fake

  setup(function() fake = Fake.start({ quiet = true }) end)
  teardown(function() if fake then fake:stop() end end)
  before_each(function()
    fake:reset()
    fake:config({ apps = { [APP] = { secret = SECRET } } })
  end)

  local function client(extra)
    return Clients.new(fake, { app_secret = SECRET, timeout = 2, connect_timeout = 2 }, extra)
  end

  local function on(base)
    return { authorize = base .. "/oauth/authorize", token = base .. "/oauth/access_token", graph = base }
  end

  local function port_of(url) return tonumber(url:match(":(%d+)$")) end

  describe("TLS", function()
    it("(a) works against the test CA", function()
      local ig = client()
      assert(ig:me(fake:issue_token("jayposiris")))
    end)

    for _, case in ipairs({
      { "(b) an untrusted CA", "untrusted" },
      { "(c) a certificate for the wrong host name", "wrong_host" },
      { "(d) an expired certificate", "expired" },
    }) do
      it("fails with kind tls for " .. case[1] .. ", and sends nothing", function()
        local base = fake.tls[case[2]]
        local ig = client({ endpoints = on(base), retries = 3 })
        local _, err = ig:me(TOKEN)
        assert.equal("tls", err.kind)
        local _, err2 = ig:exchange_code(CODE)
        assert.equal("tls", err2.kind)
        assert.equal(0, #fake:log(function(r) return r.port == port_of(base) end))
        for _, e in ipairs({ err, err2 }) do
          assert.is_nil(tostring(e):find(TOKEN, 1, true))
          assert.is_nil(tostring(e):find(CODE, 1, true))
        end
      end)
    end

    it("has no option that turns verification off", function()
      for _, key in ipairs({ "ssl_verify", "verify", "insecure", "verify_peer", "ssl_verify_peer" }) do
        assert.has_error(function() client({ [key] = false }) end, "instagram.new: unknown option '" .. key .. "'")
      end
    end)
  end)

  describe("https only", function()
    it("refuses http:// endpoints unless allow_http", function()
      assert.has_error(function() client({ endpoints = on(fake.http) }) end)
      assert(client({ endpoints = on(fake.http), allow_http = true }):me(fake:issue_token("jayposiris")))
    end)

    it("refuses plain http in the C session too", function()
      local s = instagram.core.session({ allow_http = false, timeout = 2, connect_timeout = 2,
        max_response_bytes = 1000, user_agent = "spec" })
      local res, kind = s:perform({ method = "GET", url = fake.http .. "/me" })
      s:close()
      assert.is_nil(res)
      assert.equal("network", kind)
      assert.equal(0, #fake:log("/me"))
    end)

    for _, path in ipairs({ "/oauth/access_token", "/me" }) do
      it("returns a 3xx from " .. path .. " as kind http and sends nothing to its Location", function()
        fake:fault(path, { status = 307, headers = { Location = fake.alt .. path } })
        local ig = client()
        local _, err
        if path == "/me" then
          _, err = ig:me(TOKEN)
        else
          _, err = ig:exchange_code(CODE)
        end
        assert.equal("http", err.kind)
        assert.equal(307, err.status)
        assert.equal(0, #fake:log(function(r) return r.port == fake.ports.alt end))
      end)
    end
  end)

  describe("injection", function()
    it("raises on CR, LF or NUL in anything that reaches a header or URL", function()
      local ig = client()
      for _, bad in ipairs({ "a\r\nX-Evil: 1", "a\nb", "a\0b" }) do
        assert.has_error(function() ig:me(bad) end, "ig:me: token must not contain CR, LF or NUL")
        assert.has_error(function() ig:exchange_code(bad) end,
          "ig:exchange_code: code must not contain CR, LF or NUL")
        assert.has_error(function() ig:refresh_token(bad) end)
        assert.has_error(function() ig:authorize_url({ state = bad }) end)
        assert.has_error(function() client({ app_id = bad }) end)
        assert.has_error(function() client({ user_agent = bad }) end)
      end
      local s = instagram.core.session({ timeout = 1, connect_timeout = 1, max_response_bytes = 10, user_agent = "x" })
      assert.has_error(function()
        s:perform({ method = "GET", url = fake.https .. "/me", headers = { X = "a\r\nb" } })
      end)
      assert.has_error(function() s:perform({ method = "GET", url = fake.https .. "/me\r\n" }) end)
      s:close()
    end)

    it("checks every new token, also once the client keeps its last one unchecked", function()
      local ig = client()
      local token = fake:issue_token("jayposiris")
      for _ = 1, 2 do
        assert.equal("jayposiris", assert(ig:me(token)).username)
        assert.equal("jayposiris", assert(ig:me({ access_token = token })).username)
        for _, bad in ipairs({ token .. "\r\nX-Evil: 1", token .. "\0", token:sub(1, 10) .. "\n" }) do
          assert.has_error(function() ig:me(bad) end, "ig:me: token must not contain CR, LF or NUL")
          assert.has_error(function() ig:user({ access_token = bad }, "17841405793187219") end,
            "ig:user: token must not contain CR, LF or NUL")
        end
        assert.has_error(function() ig:me(nil) end, "ig:me: token must be an access-token string or a token table")
        assert.has_error(function() ig:me({}) end, "ig:me: token must be an access-token string or a token table")
      end
      -- a second token is sent as itself, percent-encoded, not as the first one
      local other = fake:issue_token("jayposiris")
      assert(ig:me(other))
      local log = fake:log("/me")
      assert.equal(other, log[#log].args.access_token)
      assert.equal(token, log[#log - 1].args.access_token)
    end)

    it("percent-encodes everything that reaches a URL", function()
      local ig = client()
      local token = fake:issue_token("jayposiris")
      local _, err = ig:me(token, { "id&access_token=" .. TOKEN })
      assert.equal(100, err.code)
      local r = fake:log("/me")[1]
      assert.equal("id&access_token=" .. TOKEN, r.args.fields)
      assert.equal(token, r.args.access_token)
    end)

    it("keeps IDs from steering the path", function()
      local ig = client()
      for _, bad in ipairs({ "../me", "me/media", "1?x=1", "1#x", "", "%2e%2e" }) do
        assert.has_error(function() ig:user(TOKEN, bad) end)
        assert.has_error(function() ig:children(TOKEN, bad) end)
      end
      assert.has_error(function() ig:get(TOKEN, "me/../../oauth/access_token") end)
    end)
  end)

  describe("no secret in any error", function()
    local function audit(label, err)
      assert.is_table(err, label .. ": expected an error")
      local texts = { tostring(err), tostring(err.message), tostring(err.description), tostring(err.reason) }
      for _, t in ipairs(texts) do
        for _, s in ipairs({ SECRET, TOKEN, CODE }) do
          assert.is_nil(t:find(s, 1, true), label .. ": a secret leaked into: " .. t)
        end
      end
    end

    local function raised(label, fn)
      local ok, msg = pcall(fn)
      assert.is_false(ok, label)
      for _, s in ipairs({ SECRET, TOKEN, CODE }) do
        assert.is_nil(tostring(msg):find(s, 1, true), label .. ": a secret leaked into: " .. tostring(msg))
      end
    end

    local cases = {
      { "used code", function(ig)
        local code = fake:issue_code(APP)
        ig:exchange_code(code)
        return select(2, ig:exchange_code(code))
      end },
      { "wrong secret", function()
        return select(2, client({ app_secret = SECRET .. "x" }):exchange_code(CODE))
      end },
      { "unknown code", function(ig) return select(2, ig:exchange_code(CODE)) end },
      { "token endpoint 500", function(ig)
        fake:fault("/oauth/access_token", { status = 500 })
        return select(2, ig:exchange_code(CODE))
      end },
      { "token endpoint echoes the body", function(ig)
        fake:fault("/oauth/access_token", { status = 400, body = '{"error_type":"OAuthException","code":400,'
          .. '"error_message":"bad client_secret=' .. SECRET .. ' code=' .. CODE .. '"}' })
        return select(2, ig:exchange_code(CODE))
      end },
      { "graph echoes the token", function(ig)
        fake:fault("/me", { status = 400, body = '{"error":{"message":"token ' .. TOKEN .. ' is bad","code":190}}' })
        return select(2, ig:me(TOKEN))
      end },
      { "unknown token", function(ig) return select(2, ig:me(TOKEN)) end },
      { "graph echoes the token to a client without app_secret", function()
        fake:fault("/me", { status = 400, body = '{"error":{"message":"token ' .. TOKEN .. ' is bad","code":190}}' })
        return select(2, client({ app_secret = Clients.NONE }):me(TOKEN))
      end },
      { "connection refused", function()
        return select(2, client({ endpoints = on("https://127.0.0.1:1"), retries = 0 }):exchange_code(CODE))
      end },
      { "timeout", function()
        fake:fault("/me", { delay = 2 })
        return select(2, client({ timeout = 0.3, retries = 0 }):me(TOKEN))
      end },
      { "tls", function()
        return select(2, client({ endpoints = on(fake.tls.untrusted) }):me(TOKEN))
      end },
      { "redirect", function(ig)
        fake:fault("/me", { status = 302, headers = { Location = fake.alt .. "/me?access_token=" .. TOKEN } })
        return select(2, ig:me(TOKEN))
      end },
      { "oversize", function()
        return select(2, client({ max_response_bytes = 10 }):me(fake:issue_token("jayposiris")))
      end },
      { "exchange_token wrong secret", function()
        return select(2, client({ app_secret = SECRET .. "y" }):exchange_token(fake:issue_token("jayposiris",
          { kind = "short" })))
      end },
      { "refresh unknown token", function(ig) return select(2, ig:refresh_token(TOKEN)) end },
      { "refresh_if_needed expired", function(ig)
        return select(2, ig:refresh_if_needed({ access_token = TOKEN, issued_at = 0, expires_at = 1 }))
      end },
      { "bad signed_request", function(ig)
        return select(2, ig:parse_signed_request("abc." .. SECRET))
      end },
      { "callback state mismatch", function(ig)
        return select(2, ig:parse_callback("?code=" .. CODE .. "&state=x", "y"))
      end },
      { "callback denied", function(ig)
        local input = "?error=access_denied&error_description=" .. CODE .. "&code=" .. CODE
        return select(2, ig:parse_callback(input, false))
      end },
      { "batch", function(ig)
        return ig:batch({ { "me", TOKEN } })[1].err
      end },
    }
    for _, case in ipairs(cases) do
      it("when: " .. case[1], function()
        audit(case[1], case[2](client()))
      end)
    end

    it("when misuse raises, and in tostring(client)", function()
      raised("new", function() instagram.new({ app_id = APP, app_secret = SECRET, redirect_uri = "http://x/" }) end)
      raised("me", function() client():me(TOKEN .. "\n") end)
      raised("exchange_code", function() client():exchange_code(CODE .. "\r") end)
      raised("media", function() client():media(TOKEN, { limit = -1 }) end)
      local ig = client()
      assert.is_nil(tostring(ig):find(SECRET, 1, true))
      for k, v in pairs(ig) do
        assert.is_nil((tostring(k) .. tostring(v)):find(SECRET, 1, true))
      end
    end)
  end)
end)

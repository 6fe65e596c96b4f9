-- Retry policy (backoff with full jitter, Retry-After) and the opt-in request options, against the fake.
local instagram = require "instagram"
local Fake = require "spec.support.fake"
local Clients = require "spec.support.client"

local APP, SECRET = "684477648739411", "eb8c7a1b2c3d4e5f60718293a4b5c6d7"

describe("retries and request options", function()
  local fake, sleeps

  setup(function() fake = Fake.start({ quiet = true }) end)
  teardown(function() if fake then fake:stop() end end)
  before_each(function()
    fake:reset()
    sleeps = {}
  end)

  local function client(extra)
    return Clients.new(fake, { sleep = function(s) sleeps[#sleeps + 1] = s end }, extra)
  end

  it("backs off with full jitter: each wait is within [0, 0.5 * 2^attempt]", function()
    for _ = 1, 20 do
      fake:reset()
      sleeps = {}
      fake:fault("/me", { status = 503, times = 3 })
      assert(client({ retries = 3 }):me(fake:issue_token("jayposiris")))
      assert.equal(4, #fake:log("/me"))
      assert.equal(3, #sleeps)
      for attempt, s in ipairs(sleeps) do
        assert.is_true(s >= 0 and s <= 0.5 * 2 ^ (attempt - 1), "wait " .. attempt .. ": " .. s)
      end
    end
  end)

  it("sleeps with the built-in sleep when the config gives none", function()
    fake:fault("/me", { status = 500, times = 1 })
    local ig = client({ sleep = Clients.NONE })
    assert(ig:me(fake:issue_token("jayposiris")))
    assert.equal(2, #fake:log("/me"))
  end)

  it("spreads the waits (jitter, not a fixed delay)", function()
    local distinct = {}
    for _ = 1, 10 do
      fake:reset()
      fake:fault("/me", { status = 500, times = 1 })
      sleeps = {}
      assert(client():me(fake:issue_token("jayposiris")))
      distinct[sleeps[1]] = true
    end
    local n = 0
    for _ in pairs(distinct) do n = n + 1 end
    assert.is_true(n > 1)
  end)

  it("waits at least Retry-After before retrying a transient 429", function()
    fake:fault("/me", { mode = "retry_after", retry_after = "2", times = 1 })
    assert(client():me(fake:issue_token("jayposiris")))
    assert.equal(1, #sleeps)
    assert.is_true(sleeps[1] >= 2)
  end)

  it("does not retry when Retry-After is longer than the backoff cap", function()
    fake:fault("/me", { mode = "retry_after", retry_after = "600" })
    local _, err = client():me(fake:issue_token("jayposiris"))
    assert.equal(600, err.retry_after)
    assert.equal(0, #sleeps)
    assert.equal(1, #fake:log("/me"))
  end)

  it("never retries or waits on the code exchange", function()
    fake:fault("/oauth/access_token", { status = 503 })
    local _, err = client({ retries = 5 }):exchange_code(fake:issue_code(APP))
    assert.is_true(err.transient)
    assert.equal(0, #sleeps)
    assert.equal(1, #fake:log("/oauth/access_token"))
  end)

  it("does not retry permanent errors", function()
    local _, err = client({ retries = 5 }):me("IGQVJunknown")
    assert.equal(190, err.code)
    assert.equal(0, #sleeps)
  end)

  it("adds appsecret_proof = hex(HMAC-SHA256(app_secret, token)) when asked", function()
    local token = fake:issue_token("jayposiris")
    assert(client({ appsecret_proof = true }):me(token))
    local r = fake:log("/me")[1]
    assert.equal(instagram.core.hmac_sha256_hex(SECRET, token), r.args.appsecret_proof)
    assert.matches("^%x+$", r.args.appsecret_proof)
    assert.equal(64, #r.args.appsecret_proof)
    assert(client():me(token))
    assert.is_nil(fake:log("/me")[2].args.appsecret_proof)
  end)

  it("keeps appsecret_proof out of errors", function()
    local _, err = client({ appsecret_proof = true }):me("IGQVJunknown")
    local proof = instagram.core.hmac_sha256_hex(SECRET, "IGQVJunknown")
    assert.is_nil(tostring(err):find(proof, 1, true))
  end)

  -- the same usual GET again goes a shorter way to libcurl (a kept request, no transport layers):
  -- it must mean and do what the first one does
  describe("the same GET again (the client's kept request)", function()
    it("is retried and backed off as the first one", function()
      local token = fake:issue_token("jayposiris")
      local ig = client({ retries = 3 })
      assert(ig:me(token))
      fake:fault("/me", { status = 503, times = 2 })
      local user = assert(ig:me(token))
      assert.equal("17841405793187219", user.id)
      assert.equal(4, #fake:log("/me"))
      assert.equal(2, #sleeps)
      fake:fault("/me", { status = 503, times = 9 })
      local _, err = ig:me(token)
      assert.equal(2, err.code)
      assert.equal(4, err.attempts)
      assert.is_true(err.transient)
      assert.equal(8, #fake:log("/me"))
    end)

    it("gives the same typed error, scrubbed of the token", function()
      local token = fake:issue_token("jayposiris")
      local ig = client({ retries = 0 })
      assert(ig:me(token))
      fake:fault("/me", { status = 401, times = 1 })
      local value, err = ig:me(token)
      assert.is_nil(value)
      assert.equal("api", err.kind)
      assert.equal(190, err.code)
      assert.is_true(err.token_invalid)
      assert.equal(1, err.attempts)
      assert.is_nil(tostring(err):find(token, 1, true))
      fake:fault("/me", { status = 200, body = "[1,2]", times = 1 })
      value, err = ig:me(token)
      assert.is_nil(value)
      assert.equal("response", err.kind)
      assert(ig:me(token))
    end)

    it("gives exact IDs, the user of a data envelope and the usage headers, as the first one", function()
      local token = fake:issue_token("jayposiris")
      local ig = client({ retries = 0 })
      assert(ig:me(token))
      assert(ig:me(token)) -- kept, then prepared: what follows takes the short way
      fake:fault("/me", { status = 200, times = 1, body = '{"data":[{"id":17841405793187219,"username":"jayposiris"}]}',
        headers = { ["X-App-Usage"] = '{"call_count":42,"total_cputime":3,"total_time":4}' } })
      local user = assert(ig:me(token))
      assert.same({ id = "17841405793187219", username = "jayposiris" }, user)
      assert.equal(42, ig:usage().app.call_count)
      assert.equal(3, #fake:log("/me"))
      -- ig:user takes it as ig:me does, for its node
      local id = "17841405793187219"
      assert(ig:user(token, id))
      fake:fault("/" .. id, { status = 200, times = 1, body = '{"id":17841405793187219,"username":"x"}',
        headers = { ["X-App-Usage"] = '{"call_count":43,"total_cputime":3,"total_time":4}' } })
      assert.same({ id = id, username = "x" }, assert(ig:user(token, id)))
      assert.equal(43, ig:usage().app.call_count)
      -- other fields or a token table (not the short way) give the same user too
      assert.equal(id, assert(ig:me(token, "id")).id)
      assert.equal(id, assert(ig:me({ access_token = token })).id)
      assert.equal(id, assert(ig:me(token)).id)
      assert.equal(6, #fake:log("/me"))
    end)

    it("follows token_in and appsecret_proof when they change after it", function()
      local token = fake:issue_token("jayposiris")
      local ig = client({ retries = 0 })
      assert(ig:me(token))
      ig.token_in = "header"
      assert(ig:me(token))
      ig.token_in, ig.appsecret_proof = "query", true
      assert(ig:me(token))
      ig.appsecret_proof = false
      assert(ig:me(token))
      local log = fake:log("/me")
      assert.equal(4, #log)
      assert.equal(token, log[1].args.access_token)
      assert.is_nil(log[2].args.access_token)
      assert.equal("Bearer " .. token, log[2].headers.authorization)
      assert.equal(token, log[3].args.access_token)
      assert.equal(instagram.core.hmac_sha256_hex(SECRET, token), log[3].args.appsecret_proof)
      assert.equal(token, log[4].args.access_token)
      assert.is_nil(log[4].args.appsecret_proof)
    end)

    it("is prepared again for a new libcurl session, and for a new token", function()
      local token, other = fake:issue_token("jayposiris"), fake:issue_token("jayposiris")
      local ig = client({ retries = 0 })
      assert(ig:me(token))
      assert(ig:me(token))
      ig:close() -- the next call makes a new session: the old one's prepared request is not taken
      assert(ig:me(token))
      assert(ig:me(token))
      assert(ig:me(other))
      assert(ig:me(other))
      local log = fake:log("/me")
      assert.equal(6, #log)
      for i = 1, 4 do assert.equal(token, log[i].args.access_token) end
      for i = 5, 6 do assert.equal(other, log[i].args.access_token) end
    end)

    it("goes to the batch driver inside ig:batch: the calls run at once", function()
      local token = fake:issue_token("jayposiris")
      local ig = client({ retries = 0 })
      -- kept (one call before), then kept and prepared for the libcurl session (two calls before)
      for _, calls_before in ipairs({ 1, 2 }) do
        for _ = 1, calls_before do assert(ig:me(token)) end
        fake:clear_log()
        fake:fault("/me", { delay = 0.3, times = 4 })
        local results = ig:batch({ { "me", token }, { "me", token }, { "me", token }, { "me", token } },
          { concurrency = 4 })
        for i = 1, 4 do assert.is_true(results[i].ok, "call " .. i) end
        -- every request started before any finished (sequential requests would each start after one)
        local log = fake:log("/me")
        assert.equal(4, #log)
        local first_finished = math.huge
        for _, r in ipairs(log) do first_finished = math.min(first_finished, r.finished) end
        for _, r in ipairs(log) do assert.is_true(r.started < first_finished, calls_before .. " before") end
        ig:close() -- the next round keeps and prepares from the start
      end
    end)
  end)
end)

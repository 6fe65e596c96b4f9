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
end)
